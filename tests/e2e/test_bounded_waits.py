"""Issue 24, A: no order waits without a bound on another process, and one refused at its bound is never recorded.

Each test holds what the service waits for from a real second process (a
child holding the SQLite writer's flock) or a real second PostgreSQL session
(an advisory lock held in an open transaction), with a short bound configured.
"""

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import requests

from tests.e2e.conftest import ServiceFactory
from tests.support.service_process import all_pages
from trading_orders.adapters.storage.sql.batches import order_locks
from trading_orders.adapters.storage.sql.postgres import SEQUENCE_LOCK, lock_id
from trading_orders.adapters.storage.sql.sqlite import WRITER_LOCK_FILE
from trading_orders.domain.model import PositionScope

PROFILE = {"U1": {"S1": ["ACC", "INFY"]}}
STORE_BUSY = "https://trading-orders.invalid/problems/store-busy"
# Far above any bound these tests configure: an answer later than bound + this is a wait without a bound.
SLACK_SECONDS = 15.0

# A second process: takes the flock on argv[1], says so, and holds it until killed.
_HOLD_FLOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(600)
"""


@contextmanager
def writer_lock_held_elsewhere(data_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the SQLite writer's flock of ``data_dir`` until killed (at the latest, on exit)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_FLOCK, str(data_dir / WRITER_LOCK_FILE)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


@contextmanager
def advisory_lock_held_elsewhere(url: str, lock: int) -> Iterator[psycopg.Connection[Any]]:
    """A second PostgreSQL session holding advisory lock ``lock`` in an open transaction, until the block ends."""
    with psycopg.connect(url) as session:
        session.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
        try:
            yield session
        finally:
            session.rollback()


def position_lock(instrument: str) -> int:
    """The advisory lock an order of S1 on ``instrument`` takes, under the default position scope."""
    (name,) = order_locks(PositionScope.STRATEGY, "S1", instrument, None)
    return lock_id(name)


def send(base_url: str, instrument: str, timeout: float) -> requests.Response:
    body = {"STRATEGY": "S1", "INSTRUMENT": instrument, "POSITION": "BUY"}
    return requests.post(f"{base_url}/create_order", json=body, timeout=timeout)


def assert_refused_at_its_bound(answer: requests.Response, bound: float) -> None:
    """503 store-busy, with Retry-After, naming the bound it waited."""
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert int(answer.headers["Retry-After"]) >= 1
    problem = answer.json()
    assert problem["type"] == STORE_BUSY and problem["status"] == 503
    assert f"for {bound:g} s" in problem["detail"] and "not recorded" in problem["detail"]


def await_health(base_url: str, status: int) -> dict[str, Any]:
    """Ask /health until it answers ``status``, for at most SLACK_SECONDS; its body."""
    answers: list[int] = []
    for _ in range(int(SLACK_SECONDS / 0.2)):
        answer = requests.get(f"{base_url}/health", timeout=SLACK_SECONDS)
        answers.append(answer.status_code)
        if answer.status_code == status:
            body: dict[str, Any] = answer.json()
            return body
        threading.Event().wait(0.2)
    raise AssertionError(f"/health never answered {status}: {answers[-5:]}")


def test_sqlite_an_order_whose_writer_lock_another_process_holds_is_refused_at_the_bound_and_never_recorded(
    service_factory: ServiceFactory, data_dir: Path
) -> None:
    with service_factory(PROFILE, store="sqlite", lock_wait_seconds="1") as service:
        with writer_lock_held_elsewhere(data_dir), ThreadPoolExecutor(3) as clients:
            # Three at once: the two behind the first wait for their turn, and that wait is bounded too.
            sent = [clients.submit(send, service.base_url, name, 1 + SLACK_SECONDS) for name in ("ACC", "INFY", "ACC")]
            for refused in sent:
                assert_refused_at_its_bound(refused.result(), 1)
            # /health says the service cannot take orders, and why, while the lock stays held.
            health = await_health(service.base_url, 503)
            assert health["status"] == "unavailable" and health["store_reachable"] is False
            assert "lock another process holds" in health["reason"]
        # Freed: the refused order stays unrecorded, and the next one goes through.
        assert await_health(service.base_url, 200) == {
            "status": "ok",
            "store_reachable": True,
            "last_sequence": 0,
            "open_positions": 0,
        }
        assert all_pages(service.base_url, "orders") == []
        assert send(service.base_url, "ACC", timeout=SLACK_SECONDS).status_code == 200
        assert [order["instrument"] for order in all_pages(service.base_url, "orders")] == ["ACC"]


def test_sqlite_a_service_told_to_stop_while_an_order_waits_for_the_lock_stops_within_the_bound(
    service_factory: ServiceFactory, data_dir: Path
) -> None:
    bound = 3.0
    service = service_factory(PROFILE, store="sqlite", lock_wait_seconds=f"{bound:g}").start()
    with writer_lock_held_elsewhere(data_dir), ThreadPoolExecutor(1) as client:
        waiting = client.submit(send, service.base_url, "ACC", bound + SLACK_SECONDS)
        # Time for the request to reach the service, well inside its bound: SIGTERM comes while it waits.
        threading.Event().wait(1.0)
        # stop() waits this long for the exit, then kills: a kill reads as -SIGKILL, not -SIGTERM.
        status = service.stop(timeout=bound + SLACK_SECONDS)
        assert status == -signal.SIGTERM, f"the service did not stop by itself: {service.output()[-2000:]}"
        # Drained: the order in flight was answered before the process went.
        assert_refused_at_its_bound(waiting.result(), bound)


def test_postgres_a_locked_key_is_refused_at_the_bound_while_other_instruments_go_ahead(
    service_factory: ServiceFactory, postgres_url: Any
) -> None:
    url = postgres_url()
    bound = 10.0
    with service_factory(PROFILE, store="postgres", database_url=url, lock_wait_seconds=f"{bound:g}") as service:
        with advisory_lock_held_elsewhere(url, position_lock("ACC")), ThreadPoolExecutor(1) as client:
            stuck: Future[requests.Response] = client.submit(send, service.base_url, "ACC", bound + SLACK_SECONDS)
            threading.Event().wait(0.3)
            # Sent after the stuck one, on the same process: answered while that one still waits.
            other = send(service.base_url, "INFY", timeout=bound)
            assert other.status_code == 200, other.text
            assert not stuck.done(), "ACC's lock is held by another session: it must still be waiting"
            assert_refused_at_its_bound(stuck.result(), bound)
            # One key held elsewhere is no reason to refuse orders: the others are taken.
            assert await_health(service.base_url, 200)["status"] == "ok"
        # Released: the refused order is not in the log; the key takes orders again.
        assert [order["instrument"] for order in all_pages(service.base_url, "orders")] == ["INFY"]
        assert send(service.base_url, "ACC", timeout=SLACK_SECONDS).status_code == 200


def test_postgres_a_sequence_lock_held_elsewhere_refuses_orders_at_the_bound_and_health_says_so(
    service_factory: ServiceFactory, postgres_url: Any
) -> None:
    url = postgres_url()
    with service_factory(PROFILE, store="postgres", database_url=url, lock_wait_seconds="1") as service:
        with advisory_lock_held_elsewhere(url, SEQUENCE_LOCK):
            assert_refused_at_its_bound(send(service.base_url, "ACC", timeout=1 + SLACK_SECONDS), 1)
            health = await_health(service.base_url, 503)
            assert health["status"] == "unavailable" and "lock another process holds" in health["reason"]
        assert await_health(service.base_url, 200)["status"] == "ok"
        assert all_pages(service.base_url, "orders") == []
        assert send(service.base_url, "ACC", timeout=SLACK_SECONDS).status_code == 200
        assert [order["instrument"] for order in all_pages(service.base_url, "orders")] == ["ACC"]
