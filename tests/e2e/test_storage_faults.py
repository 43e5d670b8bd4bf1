"""A store that cannot read its order log answers 503 problems, never 500, and ends a stream cleanly.

Two faults, as issue 24 met them: the log's file unreadable (chmod 000 under
a service that cannot override permissions), and a line damaged inside the
part of the log the index covers (so start-up does not check it again).
"""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from tests.e2e.conftest import ServiceFactory
from tests.support.event_stream import EventStreamReader, StreamEvent
from tests.support.problem_answers import OURS, assert_problem
from tests.support.service_process import ServiceProcess

PROFILE = {"U1": {"S1": ["ACC", "INFY"]}}
# Root reads a file of mode 000 anyway; without these two capabilities it is refused, as any other user would be.
WITHOUT_PERMISSION_OVERRIDE = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--")
# Printed by uvicorn when a streamed answer broke off mid-way: what the issue saw.
BROKEN_STREAM = "ASGI callable returned without completing response"


def place(base_url: str, n: int, key: str | None = None) -> requests.Response:
    body = {"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "BUY" if n % 2 == 1 else "SELL"}
    headers = {"Idempotency-Key": key} if key is not None else {}
    return requests.post(f"{base_url}/create_order", json=body, headers=headers, timeout=10)


def place_orders(base_url: str, count: int) -> list[str]:
    """Place ``count`` orders with keys k1, k2, ...; their order ids, by sequence from 1."""
    ids = []
    for n in range(1, count + 1):
        answer = place(base_url, n, f"k{n}")
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["order_id"])
    return ids


def stream_until_it_ends(base_url: str, after: int) -> list[StreamEvent]:
    reader = EventStreamReader(base_url, {"after": after})
    try:
        events = []
        while (event := reader.next_event()) is not None:
            events.append(event)
        return events
    finally:
        reader.close()


def pages(base_url: str, limit: int) -> tuple[list[int], requests.Response]:
    """Page GET /orders until a page is refused or the log ends: the sequences read, and the last answer."""
    read: list[int] = []
    params = {"limit": str(limit)}
    while True:
        answer = requests.get(f"{base_url}/orders", params=params, timeout=10)
        if answer.status_code != 200:
            return read, answer
        body: dict[str, Any] = answer.json()
        read += [order["sequence"] for order in body["orders"]]
        if body["next_cursor"] is None:
            return read, answer
        params["cursor"] = body["next_cursor"]


def assert_no_broken_answer(service: ServiceProcess) -> None:
    output = service.output()
    assert BROKEN_STREAM not in output and "Traceback" not in output, output[-3000:]


def test_an_unreadable_order_log_answers_503_problems_says_so_on_health_and_heals(
    service_factory: ServiceFactory, data_dir: Path
) -> None:
    with service_factory(PROFILE, wrapper=WITHOUT_PERMISSION_OVERRIDE) as service:
        url = service.base_url
        (order_id,) = place_orders(url, 1)
        log_file = data_dir / "order_log.jsonl"
        log_file.chmod(0)
        try:
            retried = place(url, 1, "k1")
            assert "the store is unavailable" in str(assert_problem(retried, 503, OURS + "store-unavailable")["detail"])
            for path in ("/orders", f"/orders/{order_id}", "/users/U1"):
                assert_problem(requests.get(f"{url}{path}", timeout=10), 503, OURS + "store-unavailable")
            (resume,) = stream_until_it_ends(url, 0)
            assert (resume.event, resume.id) == ("resume", "0"), resume
            assert resume.json() == {"after": 0, "reason": "the order log cannot be read now; retry shortly"}
            health = requests.get(f"{url}/health", timeout=10)
            assert health.status_code == 503
            assert health.json() == {
                "status": "unavailable",
                "store_reachable": False,
                "last_sequence": 1,
                "open_positions": 1,
            }
        finally:
            log_file.chmod(0o644)
        assert requests.get(f"{url}/health", timeout=10).status_code == 200
        replayed = place(url, 1, "k1")
        assert replayed.status_code == 200 and replayed.headers["Idempotent-Replayed"] == "true"
        assert replayed.json()["order_id"] == order_id
        assert [o["sequence"] for o in requests.get(f"{url}/orders", timeout=10).json()["orders"]] == [1]
        assert_no_broken_answer(service)


def damage_line(log_file: Path, sequence: int) -> None:
    """Overwrite a few bytes inside the line of ``sequence``, keeping its length: the disk returned garbage."""
    lines = log_file.read_bytes().splitlines(keepends=True)
    line = lines[sequence - 1]
    lines[sequence - 1] = line[:12] + b"\x00\x00\x00\x00" + line[16:]
    log_file.write_bytes(b"".join(lines))


def test_a_damaged_line_the_index_covers_is_a_503_naming_its_sequence_on_reads_the_stream_and_verify(
    service_factory: ServiceFactory, data_dir: Path
) -> None:
    # A checkpoint after every order indexes each line, so the next start checks none of them again.
    service = service_factory(PROFILE, snapshot_every_orders="1")
    with service:
        ids = place_orders(service.base_url, 30)
    damage_line(data_dir / "order_log.jsonl", 10)
    with service:
        url = service.base_url
        read, refused = pages(url, 3)
        # Pages 1-7 hold 30..10: the seventh is the one that reaches sequence 10.
        assert read == list(range(30, 12, -1)), read
        problem = assert_problem(refused, 503, OURS + "damaged-log-entry")
        assert problem["sequence"] == 10
        assert str(problem["detail"]).startswith("order log entry 10 cannot be read: it is damaged on disk")
        for answer in (requests.get(f"{url}/orders/{ids[9]}", timeout=10), place(url, 10, "k10")):
            assert assert_problem(answer, 503, OURS + "damaged-log-entry")["sequence"] == 10

        *orders, resume = stream_until_it_ends(url, 0)
        assert [event.id for event in orders if event.event == "order"] == [str(n) for n in range(1, 10)]
        assert (resume.event, resume.id, resume.json()["after"]) == ("resume", "9", 9)
        assert "order log entry 10 cannot be read" in resume.json()["reason"]
        # A follower that chooses to skip the damaged entry resumes after it.
        skipping = EventStreamReader(url, {"after": 10})
        try:
            assert [order["sequence"] for order in skipping.orders(20)] == list(range(11, 31))
        finally:
            skipping.close()
        assert "order-log entry 10 cannot be read" in service.output()
        assert_no_broken_answer(service)
    verified = subprocess.run(
        [sys.executable, "-m", "trading_orders", "verify", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 2
    assert "line 10 (byte" in verified.stderr and "sequence 10, is not a valid order-log entry" in verified.stderr


def test_a_damaged_row_of_a_sqlite_store_is_a_503_naming_its_sequence_and_ends_a_stream_cleanly(
    service_factory: ServiceFactory, data_dir: Path
) -> None:
    with service_factory(PROFILE, store="sqlite") as service:
        url = service.base_url
        ids = place_orders(url, 6)
        with sqlite3.connect(data_dir / "trading_orders.sqlite3") as database:
            database.execute("UPDATE orders SET entry = ? WHERE sequence = 4", (json.dumps({"sequence": 4}),))
        refused = requests.get(f"{url}/orders", timeout=10)
        assert assert_problem(refused, 503, OURS + "damaged-log-entry")["sequence"] == 4
        for answer in (requests.get(f"{url}/orders/{ids[3]}", timeout=10), place(url, 4, "k4")):
            assert assert_problem(answer, 503, OURS + "damaged-log-entry")["sequence"] == 4
        *orders, resume = stream_until_it_ends(url, 0)
        assert [event.id for event in orders if event.event == "order"] == ["1", "2", "3"]
        assert (resume.event, resume.json()["after"]) == ("resume", 3)
        assert_no_broken_answer(service)
