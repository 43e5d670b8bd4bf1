"""Controls with two service processes on one SQL store, over real HTTP: one desk, whichever process is asked."""

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime

import pytest
import requests

from tests.e2e.conftest import ServiceFactory
from tests.support.service_process import ServiceProcess, all_pages

INSTRUMENTS = [f"I{n}" for n in range(12)]
PROFILE = {"Ann": {"ALPHA": INSTRUMENTS}, "Bob": {"ALPHA": INSTRUMENTS}}

pytestmark = pytest.mark.parametrize("store", ["sqlite", "postgres"])


@contextmanager
def two_processes(
    service_factory: ServiceFactory, store: str, request: pytest.FixtureRequest
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """Two services over the same data: each its own process and port, as two workers behind one address."""
    database = {"database_url": request.getfixturevalue("postgres_url")()} if store == "postgres" else {}
    with ExitStack() as stack:
        first = stack.enter_context(service_factory(PROFILE, store=store, **database))
        second = stack.enter_context(service_factory(PROFILE, store=store, **database))
        yield first, second


def order(service: ServiceProcess, instrument: str, side: str = "BUY") -> dict[str, object]:
    body = {"STRATEGY": "ALPHA", "INSTRUMENT": instrument, "POSITION": side}
    answer = requests.post(f"{service.base_url}/create_order", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


def reasons(answer: dict[str, object]) -> dict[str, object]:
    decisions = answer["decisions"]
    assert isinstance(decisions, list)
    return {d["user"]: d["reason"] for d in decisions}


def test_a_halt_through_one_process_governs_the_next_order_through_the_other(
    service_factory: ServiceFactory, store: str, request: pytest.FixtureRequest
) -> None:
    with two_processes(service_factory, store, request) as (first, second):
        assert reasons(order(second, "I1")) == {"Ann": None, "Bob": None}
        halted = requests.put(f"{first.base_url}/controls/state", json={"user": "Bob", "state": "HALTED"}, timeout=60)
        assert halted.status_code == 200, halted.text
        assert reasons(order(second, "I2")) == {"Ann": None, "Bob": "TRADING_HALTED"}
        listed = requests.get(f"{second.base_url}/controls", timeout=60).json()["states"]
        assert [(s["user"], s["state"]) for s in listed] == [("Bob", "HALTED")]
        resumed = requests.put(f"{second.base_url}/controls/state", json={"user": "Bob", "state": "ACTIVE"}, timeout=60)
        assert resumed.status_code == 200, resumed.text
        assert reasons(order(first, "I3")) == {"Ann": None, "Bob": None}
        sequences = [e["sequence"] for e in all_pages(first.base_url, "orders")]
        # Orders and the two changes share one sequence without gaps: the orders list skips the changes.
        assert sorted(sequences) == [1, 3, 5]


def test_concurrent_buys_through_both_processes_never_pass_a_position_limit(
    service_factory: ServiceFactory, store: str, request: pytest.FixtureRequest
) -> None:
    with two_processes(service_factory, store, request) as (first, second):
        limit = {"user": "Ann", "max_open_positions": 3, "reason": "risk"}
        assert requests.put(f"{first.base_url}/controls/limits", json=limit, timeout=60).status_code == 200
        threads = [
            threading.Thread(target=order, args=(first if n % 2 else second, instrument))
            for n, instrument in enumerate(INSTRUMENTS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        held = requests.get(f"{first.base_url}/positions", params={"user": "Ann"}, timeout=60).json()["positions"]
        assert len(held) == 3
        bob = requests.get(f"{second.base_url}/positions", params={"user": "Bob"}, timeout=60).json()["positions"]
        assert len(bob) == len(INSTRUMENTS), "a user with no limit is not held back"


def test_a_rate_limit_holds_across_both_processes_under_a_burst_from_several_clients(
    service_factory: ServiceFactory, store: str, request: pytest.FixtureRequest
) -> None:
    per_second, burst = 10.0, 4
    with two_processes(service_factory, store, request) as (first, second):
        rate = {"strategy": "ALPHA", "max_orders_per_second": per_second, "burst": burst}
        assert requests.put(f"{first.base_url}/controls/limits", json=rate, timeout=60).status_code == 200

        def client(service: ServiceProcess) -> None:
            with requests.Session() as session:
                for n in range(15):
                    body = {"STRATEGY": "ALPHA", "INSTRUMENT": INSTRUMENTS[n % 12], "POSITION": "SELL"}
                    assert session.post(f"{service.base_url}/create_order", json=body, timeout=60).status_code == 200

        clients = [threading.Thread(target=client, args=(first if n % 2 else second,)) for n in range(6)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        orders = all_pages(first.base_url, "orders")
        assert len(orders) == 90
        admitted = [o for o in orders if o["reason"] != "RATE_LIMITED"]
        refused = [o for o in orders if o["reason"] == "RATE_LIMITED"]
        assert refused and all(o["decisions"] == [] for o in refused)
        times = sorted(datetime.fromisoformat(o["received_at"]) for o in orders)
        elapsed = (times[-1] - times[0]).total_seconds()
        # One bucket for both processes: a bucket each would admit up to twice this.
        assert len(admitted) <= burst + per_second * elapsed + 1, (len(admitted), elapsed)
