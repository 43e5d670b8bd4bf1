"""What a client could exhaust is bounded: followers of GET /events, and guesses at the API key."""

import time

import requests

from tests.e2e.conftest import ServiceFactory
from tests.support.event_stream import EventStreamReader
from tests.support.problem_answers import OURS, assert_problem

PROFILE = {"U1": {"S1": ["ACC"]}}
BUY = {"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "BUY"}


def _follow_once_a_place_is_free(base_url: str, within_seconds: float = 10.0) -> EventStreamReader:
    """A new follower, once the service has seen a closed one's connection end and freed its place."""
    # The service frees the place when the closed connection's end reaches it;
    # until then a new follower is refused, which is what the cap promises.
    deadline = time.monotonic() + within_seconds
    while True:
        try:
            return EventStreamReader(base_url)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_a_follower_past_the_most_gets_a_503_problem_while_orders_and_health_still_answer(
    service_factory: ServiceFactory,
) -> None:
    with service_factory(PROFILE, events_max_followers="3") as service:
        followers = [EventStreamReader(service.base_url) for _ in range(3)]
        refused = requests.get(f"{service.base_url}/events", stream=True, timeout=5)
        problem = assert_problem(refused, 503, OURS + "too-many-followers")
        assert refused.headers["Retry-After"] == "5"
        assert problem["detail"] == "3 followers already follow the order log, the most this service takes; retry later"
        # The cap leaves room: new connections still place orders, read and check health.
        placed = requests.post(f"{service.base_url}/create_order", json=BUY, timeout=5)
        assert placed.status_code == 200 and placed.json()["RESPONSE"] == "ACCEPTED"
        assert requests.get(f"{service.base_url}/health", timeout=5).json()["status"] == "ok"
        assert requests.get(f"{service.base_url}/desk", timeout=5).status_code == 200
        for follower in followers:
            assert [order["order_id"] for order in follower.orders(1)] == [placed.json()["order_id"]]
        followers.pop().close()
        followers.append(_follow_once_a_place_is_free(service.base_url))
        refused_again = requests.get(f"{service.base_url}/events", stream=True, timeout=5)
        assert_problem(refused_again, 503, OURS + "too-many-followers")
        for follower in followers:
            follower.close()
