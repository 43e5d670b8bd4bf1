"""The service's life around its orders: graceful shutdown, and a profile that changed between runs."""

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import ServiceFactory

PROFILE = {"U1": {"S1": ["ACC", "INFY", "TCS", "ITC"]}, "U2": {"S1": ["ACC", "INFY"]}}


@pytest.mark.parametrize(
    ("entry", "exit_status"),
    # uvicorn itself, once drained, re-raises SIGTERM on its process (so its
    # status reads "killed by SIGTERM"); our serve command takes it as the
    # planned stop and exits 0.
    [("serve", 0), ("uvicorn", -signal.SIGTERM)],
)
def test_sigterm_finishes_the_orders_in_flight_and_flushes(
    service_factory: ServiceFactory, data_dir: Path, entry: str, exit_status: int
) -> None:
    service = service_factory(PROFILE, entry=entry).start()
    answered: list[dict[str, Any]] = []
    stop = threading.Event()

    def client(number: int) -> None:
        sides = ["BUY", "SELL"]
        with requests.Session() as session:
            for count in range(10_000):
                if stop.is_set():
                    return
                body = {
                    "STRATEGY": "S1",
                    "INSTRUMENT": ["ACC", "INFY", "TCS", "ITC"][number],
                    "POSITION": sides[count % 2],
                }
                try:
                    answer = session.post(f"{service.base_url}/create_order", json=body, timeout=10)
                except requests.RequestException:
                    return  # the service has stopped listening
                assert answer.status_code == 200, answer.text
                answered.append(answer.json())

    clients = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in clients:
        thread.start()
    time.sleep(0.7)
    status = service.stop()
    stop.set()
    for thread in clients:
        thread.join()

    assert status == exit_status
    assert "stopped" in service.output()
    log = [json.loads(line) for line in (data_dir / "order_log.jsonl").read_text().splitlines()]
    assert len(answered) > 20
    assert {e["order_id"] for e in log} == {a["order_id"] for a in answered}, "every order decided was answered"
    stored = json.loads((data_dir / "positions.json").read_text())
    assert stored["meta"]["1"]["applied_sequence"] == log[-1]["sequence"], "the position store was flushed"


def test_positions_of_a_strategy_dropped_from_the_profile_are_kept_listed_and_logged(
    service_factory: ServiceFactory,
) -> None:
    with service_factory(PROFILE) as service:
        body = {"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "BUY"}
        requests.post(f"{service.base_url}/create_order", json=body, timeout=5).raise_for_status()
    # U2 no longer runs S1.
    changed = {"U1": PROFILE["U1"], "U2": {"S2": ["ACC"]}}
    with service_factory(changed) as restarted:
        positions = requests.get(f"{restarted.base_url}/positions", params={"user": "U2"}, timeout=5).json()
        assert [(p["strategy"], p["instrument"]) for p in positions["positions"]] == [("S1", "ACC")]
        warned = [line for line in restarted.output().splitlines() if "no longer gives their users" in line]
        assert len(warned) == 1 and "1 open position belongs" in warned[0] and "(U2 S1: 1)" in warned[0]
        sell = {"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "SELL"}
        closed_for = requests.post(f"{restarted.base_url}/create_order", json=sell, timeout=5).json()["decisions"]
        assert [d["user"] for d in closed_for] == ["U1"], "only users who run S1 now can close through it"


# Only the order log, the source of truth: positions.json and order_index.sqlite3 are derived
# from it and rebuilt when damaged (tests/e2e/test_damaged_files.py).
@pytest.mark.parametrize(
    ("file_name", "damage", "says"),
    [
        (
            "order_log.jsonl",
            b"not an order\n",
            "order_log.jsonl: line 1 (byte 0), sequence 1, is not a valid order-log entry",
        )
    ],
)
def test_a_damaged_order_log_stops_start_up_in_one_line_and_is_left_as_it_was(
    service_factory: ServiceFactory, data_dir: Path, file_name: str, damage: bytes, says: str
) -> None:
    with service_factory(PROFILE) as service:
        body = {"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "BUY"}
        requests.post(f"{service.base_url}/create_order", json=body, timeout=5).raise_for_status()
    damaged = data_dir / file_name
    damaged.write_bytes(damage + damaged.read_bytes())
    refused = service_factory(PROFILE)
    with pytest.raises(RuntimeError, match="exited with 1"):
        refused.start()
    lines = [line for line in refused.output().splitlines() if "cannot start" in line]
    assert len(lines) == 1 and says in lines[0]
    assert "restore it from a backup" in lines[0], "the line says how to recover"
    assert "Traceback" not in refused.output()
    assert damaged.read_bytes().startswith(damage), "a damaged file is never overwritten"
