"""`trading-orders serve` refuses what it cannot serve in one line and an exit status, before start-up work."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import SCRIPTS, ServiceFactory
from tests.support.service_process import LOOPBACK, free_port
from tests.worked_example import PROFILE

ORDER = {"STRATEGY": "STRATEGY_D", "INSTRUMENT": "ACC", "POSITION": "BUY"}


@pytest.fixture
def settings(tmp_path: Path) -> dict[str, str]:
    """A service's settings over directories of this test's own."""
    profile = tmp_path / "profile.json"
    profile.write_text('{"U1": {"Strategy1": ["ACC"]}}')
    return {
        "TRADING_ORDERS_DATA_DIR": str(tmp_path / "data"),
        "TRADING_ORDERS_PROFILE_PATH": str(profile),
        "TRADING_ORDERS_LOG_DIR": str(tmp_path / "logs"),
    }


def serve(*args: str, settings: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`trading-orders serve` with ``args``, run to its end (a refusal never serves)."""
    return subprocess.run(
        [sys.executable, "-m", "trading_orders", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **settings},
    )


@pytest.mark.parametrize("port", ["99999", "65536", "0", "-1", "8_080", "\u0668\u0660\u0668\u0660"])
def test_a_port_the_system_would_wrap_or_choose_is_refused_in_one_line(port: str, settings: dict[str, str]) -> None:
    refused = serve("--port", port, "--store", "memory", settings=settings)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.splitlines() == [
        f"trading-orders serve: error: argument --port: expected a port, a whole number 1-65535 in ASCII digits: "
        f"{port!r} (see trading-orders serve --help)"
    ]


@pytest.mark.parametrize("store", ["tinydb", "memory"])
def test_workers_on_a_store_of_one_process_are_refused_in_one_line(store: str, settings: dict[str, str]) -> None:
    refused = serve("--workers", "2", "--store", store, "--port", str(free_port()), settings=settings)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.splitlines() == [
        f"trading-orders serve: --workers 2 needs a store several processes share, sqlite or postgres; "
        f"the {store} store is one process's"
    ]
    assert not Path(settings["TRADING_ORDERS_DATA_DIR"]).exists()


def test_a_port_in_use_is_said_in_one_line_before_any_start_up_work(settings: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind((LOOPBACK, free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        refused = serve("--port", str(port), settings=settings)
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.splitlines() == [
        f"trading-orders: cannot start: cannot listen on {LOOPBACK}:{port}: Address already in use"
    ]
    assert not Path(settings["TRADING_ORDERS_DATA_DIR"]).exists()


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    """A file where a directory is expected."""
    path = tmp_path / "not-a-directory"
    path.write_text("")
    return path


@pytest.mark.parametrize(
    ("setting", "directory", "why"),
    [
        ("DATA_DIR", "a file", "data directory {} (TRADING_ORDERS_DATA_DIR) is a file, not a directory"),
        ("DATA_DIR", "/proc/sys", "data directory {} (TRADING_ORDERS_DATA_DIR) cannot be written: "),
        ("DATA_DIR", "under a file", "data directory {} (TRADING_ORDERS_DATA_DIR) cannot be created: Not a directory"),
        ("LOG_DIR", "a file", "log directory {} (TRADING_ORDERS_LOG_DIR) is a file, not a directory"),
    ],
)
@pytest.mark.parametrize("store", ["tinydb", "sqlite"])
def test_a_directory_the_service_cannot_write_in_is_named_in_one_line(
    settings: dict[str, str], a_file: Path, setting: str, directory: str, why: str, store: str
) -> None:
    path = {"a file": a_file, "under a file": a_file / "data"}.get(directory, Path(directory))
    settings = {**settings, f"TRADING_ORDERS_{setting}": str(path), "TRADING_ORDERS_STORE": store}
    refused = serve("--port", str(free_port()), settings=settings)
    assert refused.returncode == 1, refused.stderr
    last = refused.stderr.splitlines()[-1]
    assert f"cannot start: {why.format(path)}" in last, refused.stderr
    assert "Traceback" not in refused.stderr


def test_two_workers_on_sqlite_serve_from_two_processes_and_stop_with_0(service_factory: ServiceFactory) -> None:
    service = service_factory(PROFILE, entry="serve", workers=2, store="sqlite")
    # Each worker is a new interpreter that imports the service anew: on a busy machine that takes a while.
    # Started once: `with service` would start a second one (the fixture kills it if the test fails).
    service.start(timeout=60)
    # /health answers once one worker is up; the other may still be importing. Stopped then, it
    # would stop before it served (and say nothing of finishing), so the test waits for both.
    deadline = time.monotonic() + 60
    while service.output().count("Application startup complete.") < 2:
        assert time.monotonic() < deadline, service.output()
        time.sleep(0.05)
    for _ in range(20):
        # A connection each, so that both processes may take some.
        answer = requests.post(
            f"{service.base_url}/create_order", json=ORDER, headers={"Connection": "close"}, timeout=10
        )
        assert answer.status_code == 200, answer.text
    sequences = [order["sequence"] for order in requests.get(f"{service.base_url}/orders", timeout=5).json()["orders"]]
    assert sorted(sequences) == list(range(1, 21))
    assert service.stop() == 0
    output = service.output()
    assert len(set(re.findall(r"Finished server process \[(\d+)\]", output))) == 2, output
    assert f"listening on http://{LOOPBACK}:{service.port} with 2 worker processes" in output


def test_a_mistyped_setting_is_named_once_with_the_closest_one(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE, entry="serve", stoer="sqlite") as service:
        pass
    warnings = [line for line in service.output().splitlines() if "is not a setting" in line]
    assert len(warnings) == 1, service.output()
    assert "WARNING" in warnings[0]
    assert warnings[0].endswith(
        "TRADING_ORDERS_STOER is not a setting and is ignored; did you mean TRADING_ORDERS_STORE?"
    )


@pytest.mark.parametrize(
    ("command", "stop", "status", "said"),
    [
        (["-m", "trading_orders", "serve"], signal.SIGINT, 130, "start-up interrupted (Ctrl-C); nothing was served"),
        # The brief's route: uvicorn, which would only note a signal until start-up had finished.
        (["-m", "uvicorn", "Order_Handler:app"], signal.SIGTERM, 143, "start-up stopped (SIGTERM); nothing was served"),
    ],
)
def test_an_unreachable_database_is_awaited_in_one_line_and_a_signal_ends_the_wait(
    settings: dict[str, str], tmp_path: Path, command: list[str], stop: signal.Signals, status: int, said: str
) -> None:
    output = tmp_path / "serve.out"
    # Nothing listens there: a PostgreSQL server that is down.
    closed_port = free_port()
    url = f"postgresql://desk:secret@{LOOPBACK}:{closed_port}/orders"
    environment = {**os.environ, **settings, "TRADING_ORDERS_STORE": "postgres", "TRADING_ORDERS_DATABASE_URL": url}
    with open(output, "w") as written:
        process = subprocess.Popen(
            [sys.executable, *command, "--port", str(free_port())],
            cwd=SCRIPTS,
            stdout=written,
            stderr=subprocess.STDOUT,
            env=environment,
            # As at a terminal: a worker of pytest-xdist may ignore SIGINT, which a child would inherit.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        waiting = f"waiting up to 30 s for PostgreSQL database orders at {LOOPBACK}:{closed_port} as desk"
        deadline = time.monotonic() + 30
        while waiting not in output.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(stop)
        ended = process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines = output.read_text().splitlines()
    assert ended == status, lines
    assert len([line for line in lines if waiting in line]) == 1, lines
    assert not [line for line in lines if "psycopg.pool" in line or "Traceback" in line], lines
    assert lines[-1].endswith(said), lines
    assert "secret" not in output.read_text()
