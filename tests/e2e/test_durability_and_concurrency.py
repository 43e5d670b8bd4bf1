"""Crashes and concurrency over real HTTP: kill -9 mid-stream, racing BUYs, the rules on a random stream."""

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

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


def read_order_log(data_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (data_dir / "order_log.jsonl").read_text().splitlines()]


def replay(log: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """Open positions (user, strategy, instrument, order_id) implied by the log, computed by hand."""
    open_by_key: dict[tuple[str, str, str], str] = {}
    for entry in log:
        for decision in entry["decisions"]:
            if decision["status"] != "ACCEPTED":
                continue
            key = (decision["user"], entry["strategy"], entry["instrument"])
            if entry["position"] == "BUY":
                assert key not in open_by_key, f"order {entry['order_id']} opens {key} twice"
                open_by_key[key] = entry["order_id"]
            else:
                assert open_by_key.pop(key, None) is not None, f"order {entry['order_id']} sells {key} unheld"
    return {(*key, order_id) for key, order_id in open_by_key.items()}


def listed_positions(base_url: str) -> set[tuple[str, str, str, str]]:
    positions = requests.get(f"{base_url}/positions", timeout=5).json()["positions"]
    keys = [(p["user"], p["strategy"], p["instrument"]) for p in positions]
    assert len(keys) == len(set(keys)), "two open positions for one key"
    return {(p["user"], p["strategy"], p["instrument"], p["order_id"]) for p in positions}


def test_kill_9_mid_stream_loses_no_acknowledged_order(service_factory: ServiceFactory, data_dir: Path) -> None:
    rng = random.Random(20261124)
    acknowledged: dict[str, dict[str, Any]] = {}
    for cycle in range(3):
        service = service_factory(PROFILE).start()
        stop = threading.Event()

        def client(seed: int, stop: threading.Event = stop, url: str = f"{service.base_url}/create_order") -> None:
            client_rng = random.Random(seed)
            with requests.Session() as session:
                while not stop.is_set():
                    try:
                        answer = session.post(url, json=random_order(client_rng), timeout=5)
                    except requests.RequestException:
                        return  # the server died mid-request: that order is unanswered
                    if answer.status_code == 200:
                        acknowledged[answer.json()["order_id"]] = answer.json()

        threads = [threading.Thread(target=client, args=(rng.random(),)) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.5, 1.5))
        service.kill()
        stop.set()
        for thread in threads:
            thread.join()

        restarted = service_factory(PROFILE).start()
        log = read_order_log(data_dir)
        assert [e["sequence"] for e in log] == list(range(1, len(log) + 1))
        by_id = {e["order_id"]: e for e in log}
        for order_id, answer in acknowledged.items():
            entry = by_id.get(order_id)
            assert entry is not None, f"cycle {cycle}: acknowledged order {order_id} is not in the log"
            assert (entry["status"], entry["decisions"]) == (answer["RESPONSE"], answer["decisions"])
        assert listed_positions(restarted.base_url) == replay(log)
        restarted.kill()
    assert len(acknowledged) > 30, "the stream was too short to mean anything"


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


def test_a_random_stream_gets_the_decisions_the_rules_give(service_factory: ServiceFactory) -> None:
    rng = random.Random(7)
    with service_factory(PROFILE) as service:
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
