"""Concurrency and the rules over real HTTP: racing BUYs, and a random stream checked against the rules."""

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
import requests

from tests.e2e.conftest import ServiceFactory
from trading_orders.domain.model import Order, PositionScope, Side
from trading_orders.domain.portfolio import Portfolio
from trading_orders.domain.profile import Profile

PROFILE = {
    "U1": {"S1": ["ACC", "INFY", "TCS"], "S2": ["ACC", "ITC"]},
    "U2": {"S1": ["ACC", "INFY", "TCS"]},
    "U3": {"S2": ["ACC", "ITC"], "S3": ["TCS"]},
}
UNIVERSES = {"S1": ["ACC", "INFY", "TCS"], "S2": ["ACC", "ITC"], "S3": ["TCS"]}


def random_order(rng: random.Random) -> dict[str, str]:
    strategy = rng.choice(sorted(UNIVERSES))
    return {
        "STRATEGY": strategy,
        "INSTRUMENT": rng.choice(UNIVERSES[strategy]),
        "POSITION": rng.choice(["BUY", "SELL"]),
    }


def listed_positions(base_url: str) -> set[tuple[str, str, str, str]]:
    positions = requests.get(f"{base_url}/positions", timeout=5).json()["positions"]
    keys = [(p["user"], p["strategy"], p["instrument"]) for p in positions]
    assert len(keys) == len(set(keys)), "two open positions for one key"
    return {(p["user"], p["strategy"], p["instrument"], p["order_id"]) for p in positions}


def test_fifty_concurrent_buys_for_one_key_give_exactly_one_accepted(service_factory: ServiceFactory) -> None:
    with service_factory({"U1": {"S1": ["ACC"]}}) as service:
        body = {"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "BUY"}
        barrier = threading.Barrier(50)

        def buy(_: int) -> str:
            barrier.wait()
            answer = requests.post(f"{service.base_url}/create_order", json=body, timeout=30)
            answer.raise_for_status()
            return str(answer.json()["RESPONSE"])

        with ThreadPoolExecutor(max_workers=50) as pool:
            answers = list(pool.map(buy, range(50)))
        assert answers.count("ACCEPTED") == 1 and answers.count("REJECTED") == 49
        assert len(listed_positions(service.base_url)) == 1


@pytest.mark.parametrize("store", ["tinydb", "memory", "sqlite", "postgres"])
def test_a_random_stream_gets_the_decisions_the_rules_give(
    service_factory: ServiceFactory, store: str, request: pytest.FixtureRequest
) -> None:
    rng = random.Random(7)
    database = {"database_url": request.getfixturevalue("postgres_url")()} if store == "postgres" else {}
    with service_factory(PROFILE, store=store, **database) as service:
        answers = [
            requests.post(f"{service.base_url}/create_order", json=random_order(rng), timeout=5).json()
            for _ in range(200)
        ]
    # The oracle: the pure rules, fed the same orders in the same sequence.
    portfolio, profile = Portfolio(PositionScope.STRATEGY), Profile(PROFILE)
    for answer in answers:
        order = Order(answer["strategy"], answer["instrument"], Side(answer["position"]))
        expected = portfolio.decide(order, profile, answer["order_id"], datetime.fromisoformat(answer["received_at"]))
        portfolio.apply(expected)
        assert answer["RESPONSE"] == expected.status.value
        assert [(d["user"], d["reason"]) for d in answer["decisions"]] == [
            (d.user, d.reason.value if d.reason else None) for d in expected.decisions
        ]
    assert {a["RESPONSE"] for a in answers} == {"ACCEPTED", "REJECTED"}
