"""GET /events over real HTTP: in order, resumable with no gap and no duplicate, bounded, filtered, every store."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.e2e.conftest import ServiceFactory
from tests.support.event_stream import EventStreamReader, serving_pid, worker_pids
from tests.support.problem_answers import OURS, assert_problem

PROFILE = {"U1": {"S1": ["ACC", "INFY"], "S2": ["TCS"]}, "U2": {"S1": ["ACC"]}}


def place(base_url: str, strategy: str, instrument: str, side: str) -> dict[str, Any]:
    """POST one order and return its answer; fails the test on anything but 200."""
    body = {"STRATEGY": strategy, "INSTRUMENT": instrument, "POSITION": side}
    answer = requests.post(f"{base_url}/create_order", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    decided: dict[str, Any] = answer.json()
    return decided


def alternate(base_url: str, count: int) -> list[dict[str, Any]]:
    """``count`` orders: BUY, SELL, BUY, ... of ACC in S1."""
    return [place(base_url, "S1", "ACC", "BUY" if n % 2 == 0 else "SELL") for n in range(count)]


def test_orders_placed_while_connected_arrive_in_order_as_get_orders_shows_them(
    service_factory: ServiceFactory,
) -> None:
    with service_factory(PROFILE) as service:
        stream = EventStreamReader(service.base_url)
        placed = alternate(service.base_url, 6)
        received = stream.orders(6)
        assert [o["sequence"] for o in received] == [1, 2, 3, 4, 5, 6]
        assert [o["order_id"] for o in received] == [o["order_id"] for o in placed]
        for body in received:
            logged = requests.get(f"{service.base_url}/orders/{body['order_id']}", timeout=5).json()
            assert body == logged, "an event carries the order exactly as GET /orders/{id} shows it"
        stream.close()


def test_orders_this_process_records_reach_its_followers_without_waiting_for_a_poll(
    service_factory: ServiceFactory,
) -> None:
    # A minute between reads of the log: orders that arrive sooner were handed over on commit.
    with service_factory(PROFILE, events_poll_seconds="60") as service:
        stream = EventStreamReader(service.base_url)
        alternate(service.base_url, 1)
        assert [o["sequence"] for o in stream.orders(1)] == [1]
        for expected in (2, 3, 4):
            alternate(service.base_url, 1)
            assert [o["sequence"] for o in stream.orders(1, timeout=5)] == [expected]
        stream.close()


def test_a_reconnect_with_last_event_id_gets_exactly_the_later_orders(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        alternate(service.base_url, 5)
        first = EventStreamReader(service.base_url)
        assert [o["sequence"] for o in first.orders(3)] == [1, 2, 3]
        first.close()
        alternate(service.base_url, 2)
        # The header wins over ?after: a browser reconnects to the URL it first opened.
        again = EventStreamReader(service.base_url, params={"after": 0}, headers={"Last-Event-ID": "3"})
        assert [o["sequence"] for o in again.orders(4)] == [4, 5, 6, 7]
        alternate(service.base_url, 1)
        assert [o["sequence"] for o in again.orders(1)] == [8], "after the replay, live orders follow"
        again.close()
        by_query = EventStreamReader(service.base_url, {"after": 6})
        assert [o["sequence"] for o in by_query.orders(2)] == [7, 8]
        by_query.close()


def test_a_consumer_away_across_a_kill_and_restart_loses_and_repeats_nothing(
    service_factory: ServiceFactory,
) -> None:
    service = service_factory(PROFILE).start()
    stream = EventStreamReader(service.base_url)
    alternate(service.base_url, 4)
    seen = [o["sequence"] for o in stream.orders(4)]
    stream.close()
    alternate(service.base_url, 3)
    service.kill()
    service.start()
    alternate(service.base_url, 3)
    resumed = EventStreamReader(service.base_url, headers={"Last-Event-ID": str(seen[-1])})
    seen += [o["sequence"] for o in resumed.orders(6)]
    assert seen == list(range(1, 11))
    resumed.close()
    service.kill()


def test_a_resume_point_beyond_the_log_or_not_a_number_is_refused(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        alternate(service.base_url, 2)
        ahead = requests.get(f"{service.base_url}/events", params={"after": 3}, timeout=5)
        problem = assert_problem(ahead, 409, OURS + "resume-point-ahead")
        assert "beyond the order log's last, 2" in str(problem["detail"]) and problem["last_sequence"] == 2
        for value in ["-1", "²", "1.5", "x"]:
            answer = requests.get(f"{service.base_url}/events", headers={"Last-Event-ID": value}, timeout=5)
            assert answer.status_code == 422 and "Last-Event-ID" in answer.text, (value, answer.text)


def test_filters_keep_only_the_matching_orders(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        place(service.base_url, "S1", "ACC", "BUY")  # 1: U1, U2 accepted
        place(service.base_url, "S2", "TCS", "BUY")  # 2: U1 accepted
        place(service.base_url, "S1", "INFY", "BUY")  # 3: U1 accepted, U2 rejected (not in strategy)
        place(service.base_url, "S1", "ACC", "BUY")  # 4: both already hold it: REJECTED
        place(service.base_url, "S3", "ACC", "BUY")  # 5: unknown strategy: REJECTED
        cases: list[tuple[dict[str, str], list[int]]] = [
            ({"strategy": "S2"}, [2]),
            ({"instrument": "ACC"}, [1, 4, 5]),
            ({"user": "U2"}, [1, 3, 4]),
            ({"status": "REJECTED"}, [4, 5]),
            ({"strategy": "S1", "status": "ACCEPTED"}, [1, 3]),
        ]
        for params, expected in cases:
            stream = EventStreamReader(service.base_url, params)
            assert [o["sequence"] for o in stream.orders(len(expected))] == expected, params
            place(service.base_url, "S2", "TCS", "SELL")  # matches none of the filters but strategy S2
            if params == {"strategy": "S2"}:
                assert stream.orders(1)[0]["strategy"] == "S2"
            stream.close()


def test_a_consumer_that_falls_behind_is_cut_off_with_its_resume_point_and_orders_go_on(
    service_factory: ServiceFactory,
) -> None:
    # A buffer of 3 and a slow poll: a burst of orders overflows the follower.
    with service_factory(PROFILE, events_buffer="3", events_poll_seconds="0.5") as service:
        behind = EventStreamReader(service.base_url)
        calm = EventStreamReader(service.base_url, {"strategy": "S2"})
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda n: place(service.base_url, "S1", "ACC", ["BUY", "SELL"][n % 2]), range(40)))
        assert len(answers) == 40, "every order was answered while the follower lagged"
        got: list[int] = []
        while True:
            event = behind.next_event()
            assert event is not None, "the stream ends with a resume event, not silently"
            if event.event == "order":
                got.append(event.json()["sequence"])
                continue
            if event.event == "resume":
                resume = event.json()
                break
        assert behind.next_event() is None, "the stream ends after the resume event"
        assert got == list(range(1, len(got) + 1)) and resume["after"] == len(got) < 40
        assert "orders waited" in resume["reason"]
        again = EventStreamReader(service.base_url, {"after": resume["after"]})
        assert [o["sequence"] for o in again.orders(40 - len(got))] == list(range(len(got) + 1, 41))
        place(service.base_url, "S2", "TCS", "BUY")
        assert calm.orders(1)[0]["sequence"] == 41, "the other follower was not affected"
        for stream in (again, calm):
            stream.close()


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_with_two_workers_a_consumer_on_either_sees_every_order(
    service_factory: ServiceFactory, store: str, request: pytest.FixtureRequest
) -> None:
    database = {"database_url": request.getfixturevalue("postgres_url")()} if store == "postgres" else {}
    with service_factory(PROFILE, workers=2, store=store, **database) as service:
        # uvicorn's workers, and perhaps multiprocessing's resource tracker.
        workers = worker_pids(service.pid)
        # Connections spread over the workers as the kernel hands them out:
        # open streams until each worker serves at least one.
        streams: dict[int, EventStreamReader] = {}
        deadline = time.monotonic() + 20
        while len(streams) < 2 and time.monotonic() < deadline:
            stream = EventStreamReader(service.base_url)
            pid = serving_pid(service.port, stream.local_port, workers)
            if pid is not None and pid not in streams:
                streams[pid] = stream
            else:
                stream.close()
        assert len(streams) == 2, "no stream landed on one of the workers"

        def post_many(seed: int) -> None:
            for n in range(10):
                # A new connection for each order, so orders land on both workers too.
                place(service.base_url, "S1", ["ACC", "INFY"][(seed + n) % 2], ["BUY", "SELL"][n // 2 % 2])

        threads = [threading.Thread(target=post_many, args=(seed,)) for seed in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for pid, stream in streams.items():
            assert [o["sequence"] for o in stream.orders(40, timeout=20)] == list(range(1, 41)), pid
            stream.close()
