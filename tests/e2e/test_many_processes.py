"""Several worker processes on one SQL store behave as one service: no double position, no lost sell."""

import random
import threading

import pytest
import requests

from tests.e2e.conftest import ServiceFactory
from tests.support.service_process import all_pages

PROFILE = {"U1": {"S1": ["ACC", "INFY"]}, "U2": {"S1": ["ACC", "INFY"]}, "U3": {"S1": ["ACC"]}}


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_four_workers_racing_on_hot_keys_equal_a_sequential_replay(
    service_factory: ServiceFactory, store: str, request: pytest.FixtureRequest
) -> None:
    database = {"database_url": request.getfixturevalue("postgres_url")()} if store == "postgres" else {}
    with service_factory(PROFILE, workers=4, store=store, **database) as service:
        url = f"{service.base_url}/create_order"

        def client(seed: int) -> None:
            rng = random.Random(seed)
            with requests.Session() as session:
                for _ in range(30):
                    body = {
                        "STRATEGY": "S1",
                        "INSTRUMENT": rng.choice(["ACC", "INFY"]),
                        "POSITION": rng.choice(["BUY", "SELL"]),
                    }
                    # A fresh connection now and then, so requests spread over the workers.
                    answer = (session if rng.random() < 0.5 else requests).post(url, json=body, timeout=30)
                    assert answer.status_code == 200, answer.text

        threads = [threading.Thread(target=client, args=(seed,)) for seed in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        log = all_pages(service.base_url, "orders")
        assert [entry["sequence"] for entry in log] == list(range(1, 16 * 30 + 1))
        open_by_key: dict[tuple[str, str], str] = {}
        expected_trades = []
        for entry in log:
            for decision in entry["decisions"]:
                key = (decision["user"], entry["instrument"])
                if decision["status"] != "ACCEPTED":
                    continue
                if entry["position"] == "BUY":
                    assert key not in open_by_key, f"{key} opened twice"
                    open_by_key[key] = entry["order_id"]
                else:
                    expected_trades.append((*key, open_by_key.pop(key), entry["order_id"]))
        positions = requests.get(f"{service.base_url}/positions", timeout=10).json()["positions"]
        assert {((p["user"], p["instrument"]), p["order_id"]) for p in positions} == set(open_by_key.items())
        trades = [
            (t["user"], t["instrument"], t["buy_order_id"], t["sell_order_id"])
            for t in all_pages(service.base_url, "trades")
        ]
        assert trades == expected_trades
        assert len(expected_trades) > 20, "the race must actually close positions"
        # Four processes served the orders: each worker logs its own start.
        assert service.output().count(f"trading_orders.bootstrap: starting: store {store}") == 4
