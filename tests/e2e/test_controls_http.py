"""Operator controls over real HTTP: set, listed, deciding the next orders, streamed, and kept across kill -9."""

import json
from collections.abc import Iterator, Mapping

import pytest
import requests

from tests.e2e.conftest import ServiceFactory, module_service
from tests.support.service_process import ServiceProcess

PROFILE = {"Ann": {"ALPHA": ["INFY", "ACC"]}, "Bob": {"ALPHA": ["INFY", "ACC"], "BETA": ["ACC"]}}


def order(base_url: str, instrument: str, side: str, strategy: str = "ALPHA") -> dict[str, object]:
    body = {"STRATEGY": strategy, "INSTRUMENT": instrument, "POSITION": side}
    answer = requests.post(f"{base_url}/create_order", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


def reasons(answer: dict[str, object]) -> dict[str, object]:
    decisions = answer["decisions"]
    assert isinstance(decisions, list)
    return {d["user"]: d["reason"] for d in decisions}


def change(
    base_url: str, path: str, body: Mapping[str, object], method: str = "PUT", **headers: str
) -> requests.Response:
    return requests.request(method, f"{base_url}{path}", json=body, headers=headers, timeout=30)


@pytest.mark.parametrize("store", ["tinydb", "sqlite"])
def test_a_halt_decides_the_next_order_and_with_a_limit_survives_kill_9(
    service_factory: ServiceFactory, store: str
) -> None:
    service = service_factory(PROFILE, store=store).start()
    assert reasons(order(service.base_url, "INFY", "BUY")) == {"Ann": None, "Bob": None}
    halted = change(service.base_url, "/controls/state", {"user": "Ann", "state": "HALTED", "reason": "margin call"})
    assert halted.status_code == 200, halted.text
    body = halted.json()
    assert (body["action"], body["user"], body["before"], body["after"], body["sequence"]) == (
        "state",
        "Ann",
        "ACTIVE",
        "HALTED",
        2,
    )
    assert body["operator"] == "loopback"
    assert reasons(order(service.base_url, "ACC", "BUY")) == {"Ann": "TRADING_HALTED", "Bob": None}
    metrics = requests.get(f"{service.base_url}/metrics", timeout=30).text
    assert 'trading_orders_control_scopes{state="HALTED"} 1.0' in metrics
    assert 'trading_orders_decisions_total{reason="TRADING_HALTED",status="REJECTED"} 1.0' in metrics
    limited = change(service.base_url, "/controls/limits", {"user": "Bob", "max_open_positions": 2})
    assert limited.status_code == 200, limited.text
    service.kill()
    service.start(same_port=True)
    listed = requests.get(f"{service.base_url}/controls", timeout=30).json()
    assert [(s["user"], s["strategy"], s["state"], s["reason"], s["sequence"]) for s in listed["states"]] == [
        ("Ann", None, "HALTED", "margin call", 2)
    ]
    assert [(limit["user"], limit["max_open_positions"]) for limit in listed["limits"]] == [("Bob", 2)]
    assert reasons(order(service.base_url, "INFY", "SELL")) == {"Ann": "TRADING_HALTED", "Bob": None}


def test_flatten_closes_positions_with_trades_and_the_stream_carries_each_change(
    service_factory: ServiceFactory,
) -> None:
    service = service_factory(PROFILE).start()
    order(service.base_url, "INFY", "BUY")
    flattened = change(
        service.base_url, "/controls/flatten", {"user": "Bob", "state": "REDUCING", "reason": "desk"}, "POST"
    )
    assert flattened.status_code == 200, flattened.text
    assert [(p["user"], p["instrument"]) for p in flattened.json()["closed"]] == [("Bob", "INFY")]
    positions = requests.get(f"{service.base_url}/positions", timeout=30).json()["positions"]
    assert [p["user"] for p in positions] == ["Ann"]
    trades = requests.get(f"{service.base_url}/trades", timeout=30).json()["trades"]
    assert [(t["user"], t["sell_order_id"]) for t in trades] == [("Bob", flattened.json()["id"])]
    assert reasons(order(service.base_url, "ACC", "BUY")) == {"Ann": None, "Bob": "REDUCE_ONLY"}
    with requests.get(f"{service.base_url}/events", params={"after": 0}, stream=True, timeout=30) as stream:
        events: list[tuple[str, dict[str, object]]] = []
        kind = ""
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind in ("order", "control"):
                events.append((kind, json.loads(line.removeprefix("data: "))))
            if len(events) == 3:
                break
    assert [kind for kind, _ in events] == ["order", "control", "order"]
    assert events[1][1]["action"] == "flatten" and events[1][1]["sequence"] == 2


def test_limits_are_set_listed_and_removed(service_factory: ServiceFactory) -> None:
    service = service_factory(PROFILE).start()
    limit = change(service.base_url, "/controls/limits", {"user": "Bob", "max_open_positions": 1})
    rate = change(service.base_url, "/controls/limits", {"strategy": "BETA", "max_orders_per_second": 5, "burst": 2})
    assert (limit.status_code, rate.status_code) == (200, 200), (limit.text, rate.text)
    assert reasons(order(service.base_url, "INFY", "BUY")) == {"Ann": None, "Bob": None}
    assert reasons(order(service.base_url, "ACC", "BUY")) == {"Ann": None, "Bob": "POSITION_LIMIT"}
    listed = requests.get(f"{service.base_url}/controls", timeout=30).json()["limits"]
    assert [(entry["user"], entry["strategy"], entry["max_open_positions"], entry["burst"]) for entry in listed] == [
        ("Bob", None, 1, None),
        (None, "BETA", None, 2),
    ]
    removed = change(service.base_url, "/controls/limits", {"user": "Bob", "max_open_positions": None})
    assert removed.json()["before"] == 1 and removed.json()["after"] is None
    assert [
        entry["strategy"] for entry in requests.get(f"{service.base_url}/controls", timeout=30).json()["limits"]
    ] == ["BETA"]


@pytest.fixture(scope="module")
def unchanged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One service for the refused control requests: each must leave it as it was."""
    with module_service(tmp_path_factory, "controls-refused", PROFILE) as running:
        yield running


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/controls/state", {"user": "Anne", "state": "HALTED"}, 422, "'Anne'"),
        ("/controls/state", {"user": "Ann", "state": "PAUSED"}, 422, "state"),
        ("/controls/state", {"user": "Ann", "state": "HALTED", "reson": "typo"}, 422, "reson"),
        ("/controls/limits", {"strategy": "ALPHA", "max_open_positions": 3}, 422, "give user"),
        ("/controls/limits", {"strategy": "ALPHA", "max_orders_per_second": 5}, 422, "burst"),
        ("/controls/limits", {"user": "Ann"}, 422, "exactly one"),
    ],
)
def test_a_bad_control_request_is_refused_naming_what_is_wrong(
    unchanged: ServiceProcess, path: str, body: dict[str, object], status: int, says: str
) -> None:
    service = unchanged
    refused = change(service.base_url, path, body)
    assert refused.status_code == status
    assert refused.headers["content-type"] == "application/problem+json"
    assert says in refused.text
    assert requests.get(f"{service.base_url}/controls", timeout=30).json() == {"states": [], "limits": []}


def test_with_an_api_key_a_change_needs_it_and_is_recorded_under_its_digest(service_factory: ServiceFactory) -> None:
    service = service_factory(PROFILE, api_key="s3cret-key-for-tests").start()
    body: dict[str, object] = {"strategy": "ALPHA", "state": "HALTED", "reason": "feed"}
    assert change(service.base_url, "/controls/state", body).status_code == 401
    made = change(service.base_url, "/controls/state", body, **{"X-API-Key": "s3cret-key-for-tests"})
    assert made.status_code == 200, made.text
    assert made.json()["operator"].startswith("api-key-")
    assert "s3cret" not in made.text


def test_the_desk_session_changes_a_control_only_with_its_change_token(service_factory: ServiceFactory) -> None:
    key = "desk-key-for-controls"
    service = service_factory(PROFILE, api_key=key).start()
    desk = requests.Session()
    opened = desk.post(f"{service.base_url}/desk/session", json={"api_key": key}, timeout=30)
    assert opened.status_code == 200, opened.text
    token = opened.json()["change_token"]
    assert token and desk.get(f"{service.base_url}/desk/session", timeout=30).json()["change_token"] == token
    body = {"user": "Ann", "state": "HALTED", "reason": "from the desk"}
    url = f"{service.base_url}/controls/state"
    # The cookie alone is what any page's request would carry: refused, and nothing recorded.
    assert desk.put(url, json=body, timeout=30).status_code == 401
    altered = token[:-1] + ("1" if token.endswith("0") else "0")
    assert desk.put(url, json=body, headers={"X-Desk-Token": altered}, timeout=30).status_code == 401
    # The token without the cookie is no session's.
    assert requests.put(url, json=body, headers={"X-Desk-Token": token}, timeout=30).status_code == 401
    assert requests.get(f"{service.base_url}/controls", headers={"X-API-Key": key}, timeout=30).json()["states"] == []
    made = desk.put(url, json=body, headers={"X-Desk-Token": token}, timeout=30)
    assert made.status_code == 200, made.text
    assert made.json()["operator"].startswith("api-key-")
    # A session never opens /admin or an order, token or not.
    reload = desk.post(f"{service.base_url}/admin/reload-profile", json={}, headers={"X-Desk-Token": token}, timeout=30)
    assert reload.status_code == 401


def test_with_no_api_key_a_change_from_another_machine_is_refused(unchanged: ServiceProcess) -> None:
    # uvicorn takes the client's address from X-Forwarded-For when a proxy on this machine sends it.
    body = {"user": "Ann", "state": "HALTED", "reason": "from afar"}
    remote = change(unchanged.base_url, "/controls/state", body, **{"X-Forwarded-For": "203.0.113.7"})
    assert remote.status_code == 403, remote.text
    assert remote.json()["type"].endswith("/control-forbidden")
    assert "TRADING_ORDERS_API_KEY" in remote.json()["detail"]
    assert requests.get(f"{unchanged.base_url}/controls", timeout=30).json() == {"states": [], "limits": []}
