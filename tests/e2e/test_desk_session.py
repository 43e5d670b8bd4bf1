"""The desk's session cookie over real HTTP: it opens the reads and the stream, never an order or /admin."""

import json
from pathlib import Path

import requests

from tests.e2e.conftest import ServiceFactory
from tests.support.event_stream import EventStreamReader
from tests.support.problem_answers import OURS, assert_problem

PROFILE = {"U1": {"S1": ["ACC", "INFY"]}}
BUY_ACC = {"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "BUY"}
KEY = "desk-key-42"


def open_session(base_url: str, api_key: str) -> requests.Session:
    client = requests.Session()
    answer = client.post(f"{base_url}/desk/session", json={"api_key": api_key}, timeout=5)
    assert answer.status_code == 200, answer.text
    return client


def test_the_right_key_sets_a_strict_http_only_cookie_and_a_wrong_one_sets_nothing(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    with service_factory(PROFILE, api_key=KEY) as service:
        url = f"{service.base_url}/desk/session"
        wrong = requests.post(url, json={"api_key": "guess"}, timeout=5)
        assert_problem(wrong, 401, OURS + "desk-key")
        assert "set-cookie" not in wrong.headers
        # A form or a text/plain fetch is what another site's page can send without asking: refused.
        as_text = requests.post(
            url, data=json.dumps({"api_key": KEY}), headers={"Content-Type": "text/plain"}, timeout=5
        )
        assert as_text.status_code == 415 and "set-cookie" not in as_text.headers
        garbled = requests.post(
            url, data=b'{"api_key": "\x80"}', headers={"Content-Type": "application/json"}, timeout=5
        )
        assert garbled.status_code == 400 and "set-cookie" not in garbled.headers
        assert requests.get(url, timeout=5).json() == {
            "key_required": True,
            "active": False,
            "expires_at": None,
            "change_token": None,
        }

        right = requests.post(url, json={"api_key": KEY}, timeout=5)
        assert right.status_code == 200
        assert (right.json()["key_required"], right.json()["active"]) == (True, True)
        cookie = right.headers["set-cookie"]
        assert cookie.startswith("trading_orders_desk=")
        assert {"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=14400"} <= {p.strip() for p in cookie.split(";")}
        assert "Secure" not in cookie, "plain http: a Secure cookie would never come back"
        assert KEY not in cookie
    logged = service.output() + "".join(p.read_text() for p in (tmp_path / "logs").glob("*"))
    assert "wrong API key" in logged
    assert KEY not in logged and "guess" not in logged


def test_the_cookie_opens_the_reads_and_the_stream_but_never_an_order_or_admin(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE, api_key=KEY) as service:
        base = service.base_url
        placed = requests.post(f"{base}/create_order", json=BUY_ACC, headers={"X-API-Key": KEY}, timeout=5).json()
        desk = open_session(base, KEY)
        assert desk.get(f"{base}/orders", timeout=5).json()["orders"][0]["order_id"] == placed["order_id"]
        assert desk.get(f"{base}/positions", timeout=5).json()["positions"][0]["instrument"] == "ACC"
        assert desk.get(f"{base}/health", timeout=5).json()["last_sequence"] == 1
        assert desk.get(f"{base}/desk/session", timeout=5).json()["active"] is True
        cookie = f"trading_orders_desk={desk.cookies['trading_orders_desk']}"
        stream = EventStreamReader(base, {"after": 0}, headers={"Cookie": cookie})
        try:
            assert stream.orders(1)[0]["order_id"] == placed["order_id"]
        finally:
            stream.close()

        order = desk.post(f"{base}/create_order", json=BUY_ACC, timeout=5)
        assert order.status_code == 401
        reload = desk.post(f"{base}/admin/reload-profile", json={}, timeout=5)
        assert reload.status_code == 401
        # A wrong header is not rescued by a good cookie.
        assert desk.get(f"{base}/orders", headers={"X-API-Key": "guess"}, timeout=5).status_code == 401
        assert len(requests.get(f"{base}/orders", headers={"X-API-Key": KEY}, timeout=5).json()["orders"]) == 1

        logged_out = desk.delete(f"{base}/desk/session", timeout=5)
        assert logged_out.json()["active"] is False and "Max-Age=0" in logged_out.headers["set-cookie"]
        assert desk.get(f"{base}/orders", timeout=5).status_code == 401


def test_a_session_outlives_a_restart_but_not_a_change_of_api_key(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE, api_key=KEY) as service:
        desk = open_session(service.base_url, KEY)
    with service_factory(PROFILE, api_key=KEY) as service:
        assert desk.get(f"{service.base_url}/orders", timeout=5).status_code == 200
    with service_factory(PROFILE, api_key="the-next-key") as service:
        assert desk.get(f"{service.base_url}/orders", timeout=5).status_code == 401
        assert desk.get(f"{service.base_url}/desk/session", timeout=5).json()["active"] is False


def test_without_an_api_key_the_desk_needs_no_session_and_sets_none(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        url = f"{service.base_url}/desk/session"
        assert requests.get(url, timeout=5).json() == {
            "key_required": False,
            "active": True,
            "expires_at": None,
            "change_token": None,
        }
        answer = requests.post(url, json={"api_key": "anything"}, timeout=5)
        assert answer.status_code == 200 and "set-cookie" not in answer.headers


def test_the_page_and_its_assets_load_without_the_key_and_allow_nothing_from_elsewhere(
    service_factory: ServiceFactory,
) -> None:
    with service_factory(PROFILE, api_key=KEY) as service:
        page = requests.get(f"{service.base_url}/desk", timeout=5)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "script-src 'self'" in policy
        for asset in ("desk.js", "desk.css", "favicon.svg"):
            assert requests.get(f"{service.base_url}/desk/static/{asset}", timeout=5).status_code == 200
        unknown = requests.get(f"{service.base_url}/desk/static/index.html", timeout=5)
        assert assert_problem(unknown, 404, "about:blank")["detail"] == "the desk has no asset named 'index.html'"
        assert requests.get(f"{service.base_url}/desk/static/..%2Fdesk_session.py", timeout=5).status_code == 404
        # Nothing on the page names another host.
        for text in (page.text, requests.get(f"{service.base_url}/desk/static/desk.js", timeout=5).text):
            assert "http://" not in text and "https://" not in text and "//cdn" not in text
