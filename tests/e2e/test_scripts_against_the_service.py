"""The brief's scripts against a running service: our producer, and the original's assumptions."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, SCRIPTS, ServiceFactory
from tests.worked_example import PROFILE


def test_the_producer_prints_each_order_and_a_summary(service_factory: ServiceFactory, tmp_path: Path) -> None:
    profile = tmp_path / "user_profile.json"
    with service_factory(PROFILE) as service:
        result = subprocess.run(
            [sys.executable, "Order_Producer.py", "--count", "12", "--interval", "0", "--seed", "3",
             "--profile", str(profile), "--url", f"{service.base_url}/create_order"],
            cwd=SCRIPTS, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len([line for line in lines if " -> ACCEPTED " in line or " -> REJECTED " in line]) == 12
    accepted = sum(" -> ACCEPTED " in line for line in lines)
    assert lines[-1] == f"sent 12: {accepted} accepted, {12 - accepted} rejected, 0 errors"


def test_the_producer_counts_errors_when_no_service_answers(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "Order_Producer.py", "--count", "2", "--interval", "0", "--url", "http://127.0.0.1:9/create_order"],
        cwd=SCRIPTS, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "sent 2: 0 accepted, 0 rejected, 2 errors"


@pytest.mark.parametrize(
    ("command", "cwd"),
    [(["Order_Producer.py"], SCRIPTS), (["-m", "trading_orders", "produce"], ROOT)],
    ids=["Order_Producer.py", "trading-orders produce"],
)
def test_ctrl_c_stops_the_producer_with_a_one_line_summary_and_status_130(
    service_factory: ServiceFactory, tmp_path: Path, command: list[str], cwd: Path
) -> None:
    profile = tmp_path / "user_profile.json"
    with service_factory(PROFILE) as service:
        producer = subprocess.Popen(
            [sys.executable, *command, "--count", "1000", "--interval", "0.05", "--seed", "3",
             "--profile", str(profile), "--url", f"{service.base_url}/create_order"],
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert producer.stdout is not None
        answered = [producer.stdout.readline() for _ in range(3)]
        assert all(" -> " in line for line in answered), answered
        producer.send_signal(signal.SIGINT)
        stdout, stderr = producer.communicate(timeout=30)
    assert producer.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    (summary,) = stderr.splitlines()
    assert summary.startswith("interrupted after ") and " of 1000 orders: " in summary, summary
    assert " accepted, " in summary and " rejected, " in summary and " errors, " in summary, summary
    printed = len(answered) + len(stdout.splitlines())
    sent = int(summary.removeprefix("interrupted after ").split()[0])
    assert printed <= sent <= printed + 1


def test_what_the_briefs_original_producer_relies_on_holds_from_scripts(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    # The original producer is not ours to copy in; this runs, from Scripts/, each
    # thing it does: import logInfo from Logs, read ../Jsons/raw_details.json, post
    # the brief's body with requests, read response.json()["RESPONSE"].
    original_steps = (
        "import json, random, sys, requests\n"
        "from Logs import logInfo\n"
        "details = json.load(open('../Jsons/raw_details.json'))\n"
        "for _ in range(5):\n"
        "    order = {'STRATEGY': random.choice(details['STRATEGIES']),\n"
        "             'INSTRUMENT': random.choice(details['INSTRUMENTS']),\n"
        "             'POSITION': random.choice(['BUY', 'SELL'])}\n"
        "    response = requests.post(sys.argv[1], json=order)\n"
        "    logInfo(f'{order} {response.json()[\"RESPONSE\"]}')\n"
        "    print(response.json()['RESPONSE'])\n"
    )
    with service_factory(PROFILE) as service:
        result = subprocess.run(
            [sys.executable, "-c", original_steps, f"{service.base_url}/create_order"],
            cwd=SCRIPTS, capture_output=True, text=True, timeout=60,
            env={**os.environ, "TRADING_ORDERS_LOG_DIR": str(tmp_path / "logs")},
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) <= {"ACCEPTED", "REJECTED"} and len(result.stdout.split()) == 5
    assert "RESPONSE" not in result.stderr
    assert (tmp_path / "logs" / "trading_orders.log").read_text().count("'STRATEGY'") == 5
