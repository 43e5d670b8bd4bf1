"""Controls with two service processes on one SQL store, over real HTTP: one desk, whichever process is asked.

Each test keeps to a strategy and users of its own, so the tests share one pair of processes per store.
"""

import json
import threading
from collections.abc import Iterator
from datetime import datetime

import pytest
import requests

from tests.e2e.conftest import SCRIPTS
from tests.e2e.test_controls_http import order, reasons
from tests.support.postgres_server import ThrowawayPostgres
from tests.support.service_process import ServiceProcess, all_pages

INSTRUMENTS = [f"I{n}" for n in range(12)]
PROFILE = {
    "Ann": {"ALPHA": INSTRUMENTS},
    "Bob": {"ALPHA": INSTRUMENTS},
    "Cid": {"BETA": INSTRUMENTS},
    "Dan": {"BETA": INSTRUMENTS},
    "Eve": {"GAMMA": INSTRUMENTS},
}
Pair = tuple[ServiceProcess, ServiceProcess]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Two services over the same data: each its own process and port, as two workers behind one address."""
    directory = tmp_path_factory.mktemp(f"controls-{request.param}")
    (directory / "profile.json").write_text(json.dumps(PROFILE))
    settings = {
        "TRADING_ORDERS_STORE": request.param,
        "TRADING_ORDERS_DATA_DIR": str(directory / "data"),
        "TRADING_ORDERS_PROFILE_PATH": str(directory / "profile.json"),
        "TRADING_ORDERS_LOG_DIR": str(directory / "logs"),
    }
    if request.param == "postgres":
        server: ThrowawayPostgres = request.getfixturevalue("postgres_server")
        settings["TRADING_ORDERS_DATABASE_URL"] = server.new_database()
    with (
        ServiceProcess(SCRIPTS, settings, directory / "first.out", forked=True) as first,
        ServiceProcess(SCRIPTS, settings, directory / "second.out", forked=True) as second,
    ):
        yield first, second


def sequence_of(service: ServiceProcess, answer: dict[str, object]) -> int:
    logged = requests.get(f"{service.base_url}/orders/{answer['order_id']}", timeout=60).json()
    return int(logged["sequence"])


def test_a_halt_through_one_process_governs_the_next_order_through_the_other(pair: Pair) -> None:
    first, second = pair
    before = order(second.base_url, "I1", "BUY")
    assert reasons(before) == {"Ann": None, "Bob": None}
    halted = requests.put(f"{first.base_url}/controls/state", json={"user": "Bob", "state": "HALTED"}, timeout=60)
    assert halted.status_code == 200, halted.text
    during = order(second.base_url, "I2", "BUY")
    assert reasons(during) == {"Ann": None, "Bob": "TRADING_HALTED"}
    listed = requests.get(f"{second.base_url}/controls", timeout=60).json()["states"]
    assert [(s["user"], s["state"]) for s in listed] == [("Bob", "HALTED")]
    resumed = requests.put(f"{second.base_url}/controls/state", json={"user": "Bob", "state": "ACTIVE"}, timeout=60)
    assert resumed.status_code == 200, resumed.text
    after = order(first.base_url, "I3", "BUY")
    assert reasons(after) == {"Ann": None, "Bob": None}
    # One sequence for orders and changes: each change lies between the orders sent around it.
    assert sequence_of(first, before) < halted.json()["sequence"] < sequence_of(first, during)
    assert sequence_of(first, during) < resumed.json()["sequence"] < sequence_of(second, after)


def test_concurrent_buys_through_both_processes_never_pass_a_position_limit(pair: Pair) -> None:
    first, second = pair
    limit = {"user": "Cid", "max_open_positions": 3, "reason": "risk"}
    assert requests.put(f"{first.base_url}/controls/limits", json=limit, timeout=60).status_code == 200
    threads = [
        threading.Thread(target=order, args=((first if n % 2 else second).base_url, instrument, "BUY", "BETA"))
        for n, instrument in enumerate(INSTRUMENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    held = requests.get(f"{first.base_url}/positions", params={"user": "Cid"}, timeout=60).json()["positions"]
    assert len(held) == 3
    dan = requests.get(f"{second.base_url}/positions", params={"user": "Dan"}, timeout=60).json()["positions"]
    assert len(dan) == len(INSTRUMENTS), "a user with no limit is not held back"


def test_a_rate_limit_holds_across_both_processes_under_a_burst_from_several_clients(pair: Pair) -> None:
    first, second = pair
    per_second, burst = 10.0, 4
    rate = {"strategy": "GAMMA", "max_orders_per_second": per_second, "burst": burst}
    assert requests.put(f"{first.base_url}/controls/limits", json=rate, timeout=60).status_code == 200

    def client(service: ServiceProcess) -> None:
        with requests.Session() as session:
            for n in range(15):
                body = {"STRATEGY": "GAMMA", "INSTRUMENT": INSTRUMENTS[n % 12], "POSITION": "SELL"}
                assert session.post(f"{service.base_url}/create_order", json=body, timeout=60).status_code == 200

    clients = [threading.Thread(target=client, args=(first if n % 2 else second,)) for n in range(6)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    orders = [o for o in all_pages(first.base_url, "orders") if o["strategy"] == "GAMMA"]
    assert len(orders) == 90
    admitted = [o for o in orders if o["reason"] != "RATE_LIMITED"]
    refused = [o for o in orders if o["reason"] == "RATE_LIMITED"]
    assert refused and all(o["decisions"] == [] for o in refused)
    times = sorted(datetime.fromisoformat(o["received_at"]) for o in orders)
    elapsed = (times[-1] - times[0]).total_seconds()
    # One bucket for both processes: a bucket each would admit up to twice this.
    assert len(admitted) <= burst + per_second * elapsed + 1, (len(admitted), elapsed)
