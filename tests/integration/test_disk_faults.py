"""Disk faults under a real uvicorn: a full disk answers 503, keeps nothing half-written, and heals.

Also what is not the disk's fault: a committer or checkpoint thread that
fails unexpectedly is noticed (/health 503, orders 503 at once) and runs
again, with nothing recorded lost or doubled.
"""

import builtins
import errno
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from dependency_injector import providers

from tests.support.threaded_server import ThreadedServer
from trading_orders.adapters.storage.tinydb_store.backoff import Backoff
from trading_orders.bootstrap import build_container, create_app
from trading_orders.settings import Settings

PROFILE = {"U1": {"S1": ["ACC", "INFY", "TCS"]}}


class DiskFault:
    """Makes the OS calls that write one data file fail with ENOSPC, the way a full disk does."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, file_name: str, write_error: int = errno.ENOSPC) -> None:
        self.active = False
        self.fsync_failures = 0
        self._file_name = file_name
        real_write, real_replace, real_fsync = os.write, os.replace, os.fsync

        def write(fd: int, data: bytes) -> int:
            if self.active and os.readlink(f"/proc/self/fd/{fd}").endswith(self._file_name):
                real_write(fd, data[: len(data) // 2])  # half the line lands, then the disk refuses the rest
                raise OSError(write_error, os.strerror(write_error))
            return real_write(fd, data)

        def fsync(fd: int) -> None:
            # The write went to the page cache; the disk refuses it on the way down.
            if self.fsync_failures and os.readlink(f"/proc/self/fd/{fd}").endswith(self._file_name):
                self.fsync_failures -= 1
                raise OSError(errno.EIO, "Input/output error")
            real_fsync(fd)

        def replace(source: str | Path, target: str | Path) -> None:
            if self.active and str(target).endswith(self._file_name):
                raise OSError(errno.ENOSPC, "No space left on device")
            real_replace(source, target)

        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "fsync", fsync)


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """Start the real app under uvicorn in a thread on a free loopback port; returns its URL.

    ``restarts`` replaces the store's pauses before a retry or a restart.
    """
    servers: list[ThreadedServer] = []

    def start(restarts: Backoff | None = None) -> str:
        (tmp_path / "profile.json").write_text(json.dumps(PROFILE))
        monkeypatch.setenv("TRADING_ORDERS_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("TRADING_ORDERS_PROFILE_PATH", str(tmp_path / "profile.json"))
        monkeypatch.setenv("TRADING_ORDERS_LOG_DIR", str(tmp_path / "logs"))
        monkeypatch.setenv("TRADING_ORDERS_SNAPSHOT_EVERY_ORDERS", "1")
        settings = Settings.from_environment(tmp_path)
        container = build_container(settings)
        if restarts is not None:
            container.restarts.override(providers.Object(restarts))
        server = ThreadedServer(create_app(settings, container))
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()


def buy(url: str, instrument: str, side: str = "BUY") -> requests.Response:
    body = {"STRATEGY": "S1", "INSTRUMENT": instrument, "POSITION": side}
    return requests.post(f"{url}/create_order", json=body, timeout=10)


def held(url: str) -> list[str]:
    return [p["instrument"] for p in requests.get(f"{url}/positions", timeout=5).json()["positions"]]


def test_a_full_disk_under_the_order_log_answers_503_and_keeps_nothing(
    serve: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url = serve()
    assert buy(url, "ACC").status_code == 200
    log_file = tmp_path / "data" / "order_log.jsonl"
    before = log_file.read_bytes()
    fault = DiskFault(monkeypatch, "order_log.jsonl")
    fault.active = True
    refused = buy(url, "INFY")
    assert refused.status_code == 503
    detail = refused.json()["detail"]
    assert detail.startswith(
        "the order was not recorded: the store is unavailable; retry with the same Idempotency-Key"
    )
    # The file and the OS error are the operator's: in the log, under the incident the client was given.
    assert str(tmp_path) not in refused.text and "No space left" not in refused.text
    incident = re.fullmatch(r".* \(incident ([0-9a-f]{12})\)", detail)
    assert incident is not None, detail
    logged = [r.getMessage() for r in caplog.records if f"incident {incident.group(1)}" in r.getMessage()]
    assert len(logged) == 1 and f"cannot append to {log_file}: No space left on device" in logged[0], logged
    assert log_file.read_bytes() == before, "the half-written line was cut back"
    assert held(url) == ["ACC"]
    fault.active = False
    retried = buy(url, "INFY")
    assert retried.status_code == 200 and retried.json()["RESPONSE"] == "ACCEPTED"
    assert [json.loads(line)["sequence"] for line in log_file.read_text().splitlines()] == [1, 2]
    assert held(url) == ["ACC", "INFY"]


def test_a_failed_fsync_of_the_order_log_answers_503_drops_the_order_and_heals(
    serve: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = serve()
    assert buy(url, "ACC").status_code == 200
    log_file = tmp_path / "data" / "order_log.jsonl"
    before = log_file.read_bytes()
    fault = DiskFault(monkeypatch, "order_log.jsonl")
    fault.fsync_failures = 1
    refused = buy(url, "INFY")
    assert refused.status_code == 503
    assert refused.json()["detail"].startswith("the order was not recorded: the store is unavailable")
    assert "Input/output error" not in refused.text
    assert log_file.read_bytes() == before, "the line the disk did not vouch for was cut back"
    assert held(url) == ["ACC"], "and its position was never opened"
    retried = buy(url, "INFY")
    assert retried.status_code == 200 and retried.json()["RESPONSE"] == "ACCEPTED"
    assert [json.loads(line)["sequence"] for line in log_file.read_text().splitlines()] == [1, 2]
    assert held(url) == ["ACC", "INFY"]


def snapshot_sequence(positions_file: Path, wanted: int) -> int:
    """The sequence the snapshot on disk applied, once it reaches ``wanted`` or after 10 s."""
    deadline = time.monotonic() + 10
    while True:
        applied: int = (
            json.loads(positions_file.read_bytes())["meta"]["1"]["applied_sequence"] if positions_file.exists() else 0
        )
        if applied >= wanted or time.monotonic() > deadline:
            return applied
        time.sleep(0.02)


def test_a_full_disk_under_the_snapshot_still_answers_from_the_log_and_heals(
    serve: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = serve()
    assert buy(url, "ACC").status_code == 200
    positions_file = tmp_path / "data" / "positions.json"
    assert snapshot_sequence(positions_file, 1) == 1
    before = positions_file.read_bytes()
    fault = DiskFault(monkeypatch, "positions.json")
    fault.active = True
    # The order log took the order, so it happened: the answer stands.
    answer = buy(url, "INFY")
    assert answer.status_code == 200 and answer.json()["RESPONSE"] == "ACCEPTED"
    time.sleep(0.3)  # a checkpoint ran, and failed
    assert positions_file.read_bytes() == before, "the snapshot was left whole, one order behind"
    assert not list(positions_file.parent.glob(".positions.json.*.tmp")), "no temporary file left behind"
    fault.active = False
    assert buy(url, "TCS").status_code == 200
    assert snapshot_sequence(positions_file, 3) == 3
    stored = json.loads(positions_file.read_bytes())
    assert sorted(p["instrument"] for p in stored["positions"].values()) == ["ACC", "INFY", "TCS"]


def test_a_failed_rebuild_after_a_failed_fsync_says_unhealthy_and_heals_without_a_restart(
    serve: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = serve()
    assert buy(url, "ACC").status_code == 200
    fault = DiskFault(monkeypatch, "order_log.jsonl")
    reads_fail = True
    real_open = builtins.open

    def failing_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        # The rebuild reads the log back; the disk refuses that too, for a while.
        if reads_fail and str(file).endswith("order_log.jsonl"):
            raise OSError(errno.EIO, "Input/output error")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", failing_open)
    fault.fsync_failures = 1
    assert buy(url, "INFY").status_code == 503
    health = requests.get(f"{url}/health", timeout=5)
    assert health.status_code == 503 and health.json()["status"] == "unavailable", health.json()
    refused = buy(url, "TCS")
    assert refused.status_code == 503 and refused.json()["detail"].startswith("the order was not recorded")
    reads_fail = False
    deadline = time.monotonic() + 10
    while requests.get(f"{url}/health", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "the store did not heal once the disk did"
        time.sleep(0.05)
    assert buy(url, "TCS").json()["RESPONSE"] == "ACCEPTED"
    assert held(url) == ["ACC", "TCS"]


def health(url: str) -> int:
    return requests.get(f"{url}/health", timeout=5).status_code


def await_health(url: str, wanted: int, seconds: float = 10) -> None:
    """Poll /health until it answers ``wanted``; fails after ``seconds``."""
    deadline = time.monotonic() + seconds
    while health(url) != wanted:
        assert time.monotonic() < deadline, f"/health did not answer {wanted} within {seconds}s"
        time.sleep(0.01)


def logged(tmp_path: Path) -> list[tuple[int, str, str]]:
    """(sequence, instrument, side) of every line of the order log."""
    lines = [json.loads(line) for line in (tmp_path / "data" / "order_log.jsonl").read_text().splitlines()]
    return [(line["sequence"], line["instrument"], line["position"]) for line in lines]


def test_a_failed_fsync_then_a_trade_log_that_fails_the_rebuild_says_503_and_heals_without_a_restart(
    serve: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = serve()
    assert buy(url, "ACC").json()["RESPONSE"] == "ACCEPTED"
    trade_disk = DiskFault(monkeypatch, "trades.jsonl", write_error=errno.EIO)
    trade_disk.active = True
    # The SELL is in the order log, so it stands; its trades wait in memory.
    assert buy(url, "ACC", "SELL").json()["RESPONSE"] == "ACCEPTED"
    order_disk = DiskFault(monkeypatch, "order_log.jsonl")
    order_disk.fsync_failures = 1
    # The failed fsync drops INFY; rebuilding replays the SELL, whose trades
    # the trade log still refuses: no positions, and a healer retrying.
    assert buy(url, "INFY").status_code == 503
    assert health(url) == 503
    refused = buy(url, "TCS")
    # Why (the positions are being rebuilt) goes to the log; the body says only what to do.
    assert refused.status_code == 503 and "the store is unavailable" in refused.json()["detail"], refused.json()
    time.sleep(0.5)  # several retries fail meanwhile
    assert health(url) == 503, "still broken: still unhealthy"
    trade_disk.active = False
    await_health(url, 200)
    assert buy(url, "TCS").json()["RESPONSE"] == "ACCEPTED"
    assert logged(tmp_path) == [(1, "ACC", "BUY"), (2, "ACC", "SELL"), (3, "TCS", "BUY")], "acknowledged, once each"
    trades = [json.loads(line) for line in (tmp_path / "data" / "trades.jsonl").read_text().splitlines()]
    assert [t["sequence"] for t in trades] == [2], "the SELL's trades, written once"
    assert held(url) == ["TCS"]


def test_a_committer_that_fails_unexpectedly_answers_503_at_once_says_so_and_serves_again(
    serve: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = serve(Backoff(first=1.5, longest=1.5))
    assert buy(url, "ACC").json()["RESPONSE"] == "ACCEPTED"
    real_fsync = os.fsync
    broken = {"on": True}

    def fsync(fd: int) -> None:
        # A bug in the committer, as the suspected race between its threads
        # would raise; every flush meets it (a checkpoint's too) until the
        # order is answered, so no flush can make INFY durable meanwhile.
        if broken["on"] and os.readlink(f"/proc/self/fd/{fd}").endswith("order_log.jsonl"):
            raise IndexError("pop from an empty deque")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    started = time.monotonic()
    refused = buy(url, "INFY")
    broken["on"] = False
    assert refused.status_code == 503 and "the store is unavailable" in refused.json()["detail"], refused.json()
    assert health(url) == 503, "the committer is recovering: no order can be taken"
    during = buy(url, "TCS")
    # Restarting the committer, or rebuilding after the roll-back it made
    # (the fault met that too): either way the store says why, and when.
    assert during.status_code == 503 and "the store is unavailable" in during.json()["detail"], during.json()
    assert time.monotonic() - started < 1.5, "answered at once, not after the restart"
    await_health(url, 200)
    assert buy(url, "TCS").json()["RESPONSE"] == "ACCEPTED"
    assert logged(tmp_path) == [(1, "ACC", "BUY"), (2, "TCS", "BUY")]
    assert held(url) == ["ACC", "TCS"]


def test_a_checkpoint_thread_that_fails_unexpectedly_says_503_refuses_orders_and_runs_again(
    serve: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = serve(Backoff(first=1.5, longest=1.5))
    assert buy(url, "ACC").json()["RESPONSE"] == "ACCEPTED"
    positions_file = tmp_path / "data" / "positions.json"
    assert snapshot_sequence(positions_file, 1) == 1
    real_replace = os.replace
    broken = {"on": True}

    def replace(source: str | Path, target: str | Path) -> None:
        if broken["on"] and str(target).endswith("positions.json"):
            raise IndexError("list index out of range")  # a bug, not a disk that refuses
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    # Durable before the checkpoint runs, so it stands.
    assert buy(url, "INFY").json()["RESPONSE"] == "ACCEPTED"
    await_health(url, 503, seconds=5)
    refused = buy(url, "TCS")
    assert refused.status_code == 503 and "the store is unavailable" in refused.json()["detail"], refused.json()
    broken["on"] = False
    await_health(url, 200)
    assert buy(url, "TCS").json()["RESPONSE"] == "ACCEPTED"
    assert snapshot_sequence(positions_file, 3) == 3, "the restarted thread checkpoints again"
    assert logged(tmp_path) == [(1, "ACC", "BUY"), (2, "INFY", "BUY"), (3, "TCS", "BUY")]
    assert held(url) == ["ACC", "INFY", "TCS"]
