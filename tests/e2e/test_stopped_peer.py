"""Issue 24, A: a second process stopped with SIGSTOP during a burst holds up its peer's orders at most their bound.

Two services on the same store (the SQLite data directory, or the PostgreSQL
database) take a burst of orders; one of them is stopped with SIGSTOP in the
middle of it, holding whatever it held then: SQLite's writer flock, or
advisory locks in an open PostgreSQL transaction. The live one must answer
each order within its bound, 200 or 503 store-busy with Retry-After; once the
stopped one is continued and has answered its own clients, the log holds
exactly the orders answered 200 by either: none refused is recorded later,
none accepted is lost.
"""

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from tests.e2e.conftest import ServiceFactory
from tests.support.service_process import ServiceProcess, all_pages
from trading_orders.adapters.storage.sql.sqlite import WRITER_LOCK_FILE

# Seconds of load each: scheduled first (tests/conftest.py).
pytestmark = pytest.mark.slow

INSTRUMENTS = ["ACC", "INFY", "TCS", "WIPRO", "SBIN", "ITC"]
PROFILE = {"U1": {"S1": INSTRUMENTS, "S2": INSTRUMENTS}}
STORE_BUSY = "https://trading-orders.invalid/problems/store-busy"
BOUND_SECONDS = 2.0
# Far above the bound: an answer later than bound + this is a wait without a bound.
SLACK_SECONDS = 15.0
# The stopped peer's clients wait for it to be continued: long enough for the whole test.
PATIENT_SECONDS = 120.0
CLIENTS_PER_SERVICE = 4
STOPPED_NAME = "trading-orders-stopped-peer"


@dataclass
class Answers:
    """What one service answered: the order ids of its 200s, and every status."""

    accepted: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def send_until(service: ServiceProcess, stop: threading.Event, answers: Answers, timeout: float, seed: int) -> None:
    """Send orders to ``service`` one after another until ``stop`` is set; every one must be answered."""
    choose = random.Random(seed)
    while not stop.is_set():
        body = {
            "STRATEGY": choose.choice(["S1", "S2"]),
            "INSTRUMENT": choose.choice(INSTRUMENTS),
            "POSITION": choose.choice(["BUY", "SELL"]),
        }
        answer = requests.post(f"{service.base_url}/create_order", json=body, timeout=timeout)
        assert answer.status_code in (200, 503), answer.text
        if answer.status_code == 503:
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["type"] == STORE_BUSY, answer.text
            assert int(answer.headers["Retry-After"]) >= 1
        with answers.lock:
            answers.statuses.append(answer.status_code)
            if answer.status_code == 200:
                answers.accepted.append(answer.json()["order_id"])


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_peer_stopped_during_a_burst_holds_up_the_live_process_at_most_the_bound_and_loses_nothing(
    service_factory: ServiceFactory, store: str, request: pytest.FixtureRequest, data_dir: Path
) -> None:
    settings = {"store": store, "lock_wait_seconds": f"{BOUND_SECONDS:g}"}
    stopped_settings = dict(settings)
    if store == "postgres":
        new_database: Callable[[], str] = request.getfixturevalue("postgres_url")
        url = new_database()
        settings["database_url"] = url
        # Named, so that a third session can see which locks the stopped process's transactions hold.
        stopped_settings["database_url"] = f"{url}?application_name={STOPPED_NAME}"
    live = service_factory(PROFILE, **settings).start()
    stopped = service_factory(**stopped_settings).start()
    holding: Callable[[], bool] = (
        (lambda: _holds_writer_lock(stopped.pid, data_dir))
        if store == "sqlite"
        else (lambda: _holds_advisory_locks(settings["database_url"]))
    )
    live_answers, stopped_answers = Answers(), Answers()
    stop_live, stop_stopped = threading.Event(), threading.Event()
    with ThreadPoolExecutor(2 * CLIENTS_PER_SERVICE) as clients:
        # The live service's clients fail the test (a timeout) on any answer later than its bound allows.
        to_live = [
            clients.submit(send_until, live, stop_live, live_answers, BOUND_SECONDS + SLACK_SECONDS, seed)
            for seed in range(CLIENTS_PER_SERVICE)
        ]
        to_stopped = [
            clients.submit(send_until, stopped, stop_stopped, stopped_answers, PATIENT_SECONDS, 100 + seed)
            for seed in range(CLIENTS_PER_SERVICE)
        ]
        try:
            _until(
                lambda: len(stopped_answers.accepted) >= 20 and len(live_answers.accepted) >= 20, to_live + to_stopped
            )
            _stop_holding(stopped, holding)
            with live_answers.lock:
                before_stop = len(live_answers.statuses)
            # Three bounds: long enough for every order that found a lock held by the stopped one to be refused.
            threading.Event().wait(3 * BOUND_SECONDS)
            stop_live.set()
            for client in to_live:
                client.result()  # every order sent to the live service was answered, within its bound
            with live_answers.lock:
                during_stop = live_answers.statuses[before_stop:]
            # Answered while the peer was stopped: 200 on what the peer did not hold, else store-busy.
            assert during_stop, "the live service answered nothing while its peer was stopped"
        finally:
            stop_live.set()
            os.kill(stopped.pid, signal.SIGCONT)
            stop_stopped.set()
        for client in to_stopped:
            client.result()  # the stopped one's clients were answered once it went on
    recorded = [order["order_id"] for order in all_pages(live.base_url, "orders")]
    assert len(recorded) == len(set(recorded))
    # Exactly the orders answered 200, by either: none answered 503 was recorded, none answered 200 lost.
    assert sorted(recorded) == sorted(live_answers.accepted + stopped_answers.accepted)
    # Both processes still take orders.
    for service in (live, stopped):
        assert _send_one(service).status_code == 200


def _stop_holding(service: ServiceProcess, holding: Callable[[], bool]) -> None:
    """SIGSTOP ``service`` at a moment it holds what its peer needs (a precondition, not a retry of the test)."""
    for _ in range(50):
        os.kill(service.pid, signal.SIGSTOP)
        if holding():
            return
        os.kill(service.pid, signal.SIGCONT)
        threading.Event().wait(0.05)
    raise AssertionError("the peer was never caught holding a lock in 50 stops")


def _holds_writer_lock(pid: int, data_dir: Path) -> bool:
    """Whether process ``pid`` holds the SQLite writer lock's flock in ``data_dir`` (the kernel's /proc/locks says)."""
    inode = os.stat(data_dir / WRITER_LOCK_FILE).st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        # e.g. "1: FLOCK  ADVISORY  WRITE 4711 00:2f:1234 0 EOF"; a waiter's line has "->" after the number.
        if "->" in fields or fields[1] != "FLOCK":
            continue
        if int(fields[4]) == pid and int(fields[5].rsplit(":", 1)[1]) == inode:
            return True
    return False


def _holds_advisory_locks(url: str) -> bool:
    """Whether a session of the stopped service holds an advisory lock (in an open transaction: they are xact locks)."""
    with psycopg.connect(url, autocommit=True) as session:
        row = session.execute(
            "SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid) "
            "WHERE locktype = 'advisory' AND granted AND application_name = %s",
            (STOPPED_NAME,),
        ).fetchone()
    return row is not None and row[0] > 0


def _until(condition: Callable[[], bool], clients: list[Any]) -> None:
    """Wait until ``condition`` holds, failing at once if a client failed; at most SLACK_SECONDS."""
    deadline = time.monotonic() + SLACK_SECONDS * 2
    while not condition():
        for client in clients:
            if client.done():
                client.result()
        assert time.monotonic() < deadline, "the burst never got going"
        threading.Event().wait(0.05)


def _send_one(service: ServiceProcess) -> requests.Response:
    body = {"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "BUY"}
    return requests.post(f"{service.base_url}/create_order", json=body, timeout=SLACK_SECONDS)
