"""What a client could exhaust is bounded: followers of GET /events, and guesses at the API key."""

import http.client
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


KEY = "the-right-key-for-exhaustion-tests"


def _get_from(source: str, port: int, path: str, headers: dict[str, str]) -> int:
    """The status GET ``path`` answers a client connecting from the loopback address ``source``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        connection.request("GET", path, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_wrong_keys_past_the_limit_answer_429_but_the_right_key_always_passes(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE, api_key=KEY, wrong_key_limit="3") as service:
        url = service.base_url
        wrong = {"X-API-Key": "a-guess"}
        for _ in range(2):
            assert requests.get(f"{url}/positions", headers=wrong, timeout=5).status_code == 401
        # The desk's session counts the same guesses: the third is the last the limit allows.
        session = requests.post(f"{url}/desk/session", json={"api_key": "another-guess"}, timeout=5)
        assert_problem(session, 401, OURS + "desk-key")
        for answer in (
            requests.get(f"{url}/positions", headers=wrong, timeout=5),
            requests.post(f"{url}/create_order", json=BUY, headers=wrong, timeout=5),
            requests.get(f"{url}/health", headers=wrong, timeout=5),
            requests.post(f"{url}/desk/session", json={"api_key": "a-third-guess"}, timeout=5),
        ):
            problem = assert_problem(answer, 429, OURS + "too-many-wrong-keys")
            wait = int(answer.headers["Retry-After"])
            assert 1 <= wait <= 60
            assert problem["detail"] == f"too many wrong API keys from this address; retry in {wait} s"
        # The right key from the same address is neither delayed nor refused.
        right = {"X-API-Key": KEY}
        placed = requests.post(f"{url}/create_order", json=BUY, headers=right, timeout=5)
        assert placed.status_code == 200 and placed.json()["RESPONSE"] == "ACCEPTED"
        assert requests.get(f"{url}/positions", headers=right, timeout=5).status_code == 200
        opened = requests.post(f"{url}/desk/session", json={"api_key": KEY}, timeout=5)
        assert opened.status_code == 200 and "trading_orders_desk=" in opened.headers["Set-Cookie"]
        # A missing key is no guess; another address has its own count.
        assert requests.get(f"{url}/positions", timeout=5).status_code == 401
        assert _get_from("127.0.0.2", service.port, "/positions", wrong) == 401
        assert _get_from("127.0.0.1", service.port, "/positions", wrong) == 429
