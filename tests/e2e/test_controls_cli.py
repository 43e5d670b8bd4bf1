"""The control commands as real subprocesses against a real service: halt, limit, flatten, resume, controls, follow."""

import json
import signal
import subprocess
import sys
import threading

import requests

from tests.e2e.conftest import ServiceFactory
from tests.e2e.test_command_line import cli, imports_of

PROFILE = {"Ann": {"ALPHA": ["INFY", "ACC"]}, "Bob": {"ALPHA": ["INFY", "ACC"]}}


def buy(base_url: str, instrument: str) -> list[str | None]:
    """Each user's reason for a BUY of ``instrument`` (None: accepted)."""
    body = {"STRATEGY": "ALPHA", "INSTRUMENT": instrument, "POSITION": "BUY"}
    answer = requests.post(f"{base_url}/create_order", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return [d["reason"] for d in answer.json()["decisions"]]


def followed_lines(url: tuple[str, str], count: int) -> list[str]:
    """The first ``count`` lines `follow --after 0` prints; it is stopped with Ctrl-C once it printed them."""
    follower = subprocess.Popen(
        [sys.executable, "-m", "trading_orders", "follow", "--after", "0", *url], stdout=subprocess.PIPE, text=True
    )
    # A follower that prints fewer lines is killed, and the test sees what it printed.
    watchdog = threading.Timer(60, follower.kill)
    watchdog.start()
    try:
        assert follower.stdout is not None
        lines = [follower.stdout.readline().rstrip("\n") for _ in range(count)]
        follower.send_signal(signal.SIGINT)
        follower.communicate(timeout=30)
    finally:
        watchdog.cancel()
    return lines


def test_each_control_command_records_its_change_and_says_what_it_did(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        url = ("--url", service.base_url)
        buy(service.base_url, "INFY")
        halted = cli("halt", "--user", "Ann", "--reason", "margin call", *url)
        assert halted.returncode == 0, halted.stderr
        assert halted.stdout.startswith("#2 user Ann: ACTIVE -> HALTED (margin call), by cli at ")
        limited = cli("limit", "--user", "Bob", "--max-open-positions", "1", *url)
        assert limited.stdout.startswith("#3 user Bob: limit none -> 1 open position(s), by cli"), limited.stderr
        rate = cli("limit", "--strategy", "ALPHA", "--max-orders-per-second", "50", "--burst", "5", *url)
        assert "#4 strategy ALPHA: limit none -> 50 orders/s, burst 5" in rate.stdout, rate.stderr
        assert buy(service.base_url, "ACC") == ["TRADING_HALTED", "POSITION_LIMIT"]
        table = cli("controls", *url)
        assert table.returncode == 0, table.stderr
        assert "scopes not ACTIVE (1)" in table.stdout and "user Ann" in table.stdout
        assert "limits (2)" in table.stdout and "50 orders/s, burst 5" in table.stdout
        flattened = cli("flatten", "--user", "Bob", "--reduce", "--reason", "desk", "--json", *url)
        change = json.loads(flattened.stdout)
        assert (change["action"], change["after"], len(change["closed"])) == ("flatten", "REDUCING", 1)
        removed = cli("limit", "--user", "Bob", "--max-open-positions", "none", *url)
        assert "limit 1 open position(s) -> none" in removed.stdout, removed.stderr
        resumed = cli("resume", "--user", "Ann", *url)
        assert "user Ann: HALTED -> ACTIVE" in resumed.stdout
        listed = json.loads(cli("controls", "--json", *url).stdout)
        assert [(s["user"], s["state"]) for s in listed["states"]] == [("Bob", "REDUCING")]
        assert [limit["strategy"] for limit in listed["limits"]] == ["ALPHA"]
        printed = followed_lines(url, 8)
    # Two orders and six changes, in the log's sequence.
    assert [" CONTROL #" in line for line in printed] == [False, True, True, True, False, True, True, True]
    assert "CONTROL #2 user Ann: ACTIVE -> HALTED (margin call), by cli" in printed[1]


def test_a_refused_change_says_why_in_one_line_and_changes_nothing(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE, api_key="k-controls") as service:
        url = ("--url", service.base_url)
        refused = cli("halt", "--user", "Ann", *url)
        assert refused.returncode == 1
        assert refused.stderr.strip().startswith("trading-orders halt: PUT /controls/state answered 401")
        unknown = cli("halt", "--user", "Anne", "--api-key", "k-controls", *url)
        assert unknown.returncode == 1 and "'Anne' is not in the profile" in unknown.stderr
        made = cli("reduce", "--strategy", "ALPHA", *url, settings={"api_key": "k-controls"})
        assert made.returncode == 0, made.stderr
        assert "by api-key-" in made.stdout
    usage = cli("limit", "--user", "Ann")
    assert usage.returncode == 2 and "one of the arguments" in usage.stderr


def test_the_control_commands_import_no_web_framework(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        runs = [
            imports_of("controls", "--url", service.base_url),
            imports_of("halt", "--strategy", "ALPHA", "--url", service.base_url),
            imports_of("limit", "--help"),
        ]
    assert [answer["imported"] for _, answer in runs] == [[], [], []]
    assert [answer["status"] for _, answer in runs] == [0, 0, 0]
