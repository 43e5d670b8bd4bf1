"""Headers a request may send once, sent twice, are refused with a 400 problem naming the header, on every path."""

import json
from collections.abc import Iterator

import pytest
import requests

from tests.e2e.conftest import module_service
from tests.support.problem_answers import OURS
from tests.support.raw_http import send
from tests.support.service_process import ServiceProcess

KEY = "desk-key-for-single-headers"
ORDER = json.dumps({"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "BUY"}).encode()
PATHS = [
    ("POST", "/create_order"),
    ("GET", "/positions"),
    ("GET", "/health"),
    ("GET", "/desk"),
    ("POST", "/admin/reload-profile"),
    ("GET", "/no/such/path"),
]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    # With an API key: a repeated X-API-Key is refused before the key guard reads either.
    with module_service(tmp_path_factory, "single-headers", {"U1": {"S1": ["ACC"]}}, api_key=KEY) as running:
        yield running


def _logged_orders(service: ServiceProcess) -> int:
    return len(requests.get(f"{service.base_url}/orders", headers={"X-API-Key": KEY}, timeout=5).json()["orders"])


@pytest.mark.parametrize(("method", "path"), PATHS)
@pytest.mark.parametrize(
    ("repeated", "named"),
    [
        ([("Content-Type", "application/json"), ("Content-Type", "application/json")], "Content-Type"),
        ([("Content-Type", "text/plain"), ("content-type", "application/json")], "Content-Type"),
        ([("Idempotency-Key", "a"), ("IDEMPOTENCY-KEY", "b")], "Idempotency-Key"),
        ([("Idempotency-Key", "a"), ("Idempotency-Key", "a")], "Idempotency-Key"),
        # Both right: still two keys, so neither is taken.
        ([("X-API-Key", KEY), ("x-api-key", KEY)], "X-API-Key"),
        ([("X-API-Key", "guess"), ("X-API-Key", KEY)], "X-API-Key"),
        ([("Last-Event-ID", "1"), ("last-event-id", "2")], "Last-Event-ID"),
    ],
)
def test_a_header_sent_twice_is_refused_naming_it(
    service: ServiceProcess, method: str, path: str, repeated: list[tuple[str, str]], named: str
) -> None:
    headers = [("X-API-Key", KEY), *repeated] if named != "X-API-Key" else repeated
    if named != "Content-Type":
        headers.append(("Content-Type", "application/json"))
    logged = _logged_orders(service)
    answer = send(service.port, method, path, headers, ORDER if method == "POST" else b"")
    assert answer.status == 400, answer.body
    assert _logged_orders(service) == logged
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["type"] == OURS + "repeated-header"
    assert problem["header"] == named
    assert problem["detail"] == f"{named}: sent more than once; send it once"


def test_two_content_lengths_never_reach_the_service(service: ServiceProcess) -> None:
    # uvicorn's HTTP parser refuses them first, in plain text (docs/api.md, "Errors").
    length = ("Content-Length", str(len(ORDER)))
    headers = [("X-API-Key", KEY), ("Content-Type", "application/json"), length, length]
    logged = _logged_orders(service)
    answer = send(service.port, "POST", "/create_order", headers, ORDER)
    assert answer.status == 400
    assert _logged_orders(service) == logged


def test_each_header_sent_once_is_served(service: ServiceProcess) -> None:
    headers = [("X-API-Key", KEY), ("Content-Type", "application/json"), ("Idempotency-Key", "once")]
    answer = send(service.port, "POST", "/create_order", headers, ORDER)
    assert answer.status == 200, answer.body


def test_two_last_event_ids_on_the_stream_are_refused_not_one_of_them_followed(service: ServiceProcess) -> None:
    # Both beyond the log: whichever one a reader took, the stream would answer 409, not 400.
    headers = [("X-API-Key", KEY), ("Last-Event-ID", "998"), ("Last-Event-ID", "999")]
    answer = send(service.port, "GET", "/events", headers)
    assert answer.status == 400, answer.body
    problem = answer.json()
    assert (problem["type"], problem["header"]) == (OURS + "repeated-header", "Last-Event-ID")


def test_cookies_sent_in_several_headers_are_read_together(service: ServiceProcess) -> None:
    # HTTP/2 may split one Cookie header into several (RFC 9113, 8.2.3): not refused, and the session is found in any.
    desk = requests.post(f"{service.base_url}/desk/session", json={"api_key": KEY}, timeout=5)
    session = f"trading_orders_desk={desk.cookies['trading_orders_desk']}"
    headers = [("Cookie", session), ("Cookie", "theme=dark")]
    assert send(service.port, "GET", "/positions", headers).status == 200
    asked = send(service.port, "GET", "/desk/session", headers).json()
    assert asked["active"] is True and asked["expires_at"] is not None
