"""POST /create_order has a short path and the FastAPI route; over real HTTP both answer the same contract."""

import json
import re
from pathlib import Path
from typing import Any

import requests

from tests.e2e.conftest import ServiceFactory

PROFILE = {"U1": {"S1": ["ACC", "INFY"]}, "U2": {"S1": ["ACC"]}}
BUY_ACC = {"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "BUY"}

# The short path reads exactly this media type; any other spelling of JSON goes to the FastAPI route.
SHORT = {"Content-Type": "application/json"}
ROUTE = {"Content-Type": "application/json; charset=utf-8"}


def post(base_url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(f"{base_url}/create_order", data=body, headers=headers, timeout=30)


def test_an_order_answers_alike_on_either_path(service_factory: ServiceFactory, data_dir: Path) -> None:
    with service_factory(PROFILE) as service:
        short = post(service.base_url, json.dumps(BUY_ACC).encode(), {**SHORT, "Idempotency-Key": "a"})
        route = post(service.base_url, json.dumps({**BUY_ACC, "INSTRUMENT": "INFY"}).encode(), ROUTE)
        assert short.status_code == route.status_code == 200
        assert short.headers["content-type"] == route.headers["content-type"] == "application/json"
        assert short.json().keys() == route.json().keys()
        assert [(d["user"], d["status"]) for d in short.json()["decisions"]] == [("U1", "ACCEPTED"), ("U2", "ACCEPTED")]
        assert [(d["user"], d["status"]) for d in route.json()["decisions"]] == [("U1", "ACCEPTED"), ("U2", "REJECTED")]
        # The retry of the short path's order, sent through the route, finds the same entry.
        retry = post(service.base_url, json.dumps(BUY_ACC).encode(), {**ROUTE, "Idempotency-Key": "a"})
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert retry.content == short.content
        lines = (data_dir / "order_log.jsonl").read_text().splitlines()
        assert [json.loads(line)["sequence"] for line in lines] == [1, 2]


def test_what_the_short_path_cannot_read_gets_the_routes_answer(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        missing = post(service.base_url, b'{"STRATEGY": "S1", "POSITION": "BUY"}', SHORT)
        assert missing.status_code == 422 and missing.json()["message"] == "INSTRUMENT: Field required"
        not_json = post(service.base_url, b'{"STRATEGY": "S1",', SHORT)
        assert not_json.status_code == 422 and not_json.json()["message"].startswith("body: invalid JSON")
        bad_key = post(service.base_url, json.dumps(BUY_ACC).encode(), {**SHORT, "Idempotency-Key": "caf\u00e9"})
        assert bad_key.status_code == 422 and "Idempotency-Key" in bad_key.json()["message"]
        form = post(service.base_url, b"STRATEGY=S1", {"Content-Type": "application/x-www-form-urlencoded"})
        assert form.status_code == 415
        # None of them was recorded.
        assert requests.get(f"{service.base_url}/orders", timeout=5).json()["orders"] == []


def test_a_retried_key_with_another_order_is_refused_on_the_short_path(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        post(service.base_url, json.dumps(BUY_ACC).encode(), {**SHORT, "Idempotency-Key": "k"})
        other = post(
            service.base_url, json.dumps({**BUY_ACC, "INSTRUMENT": "INFY"}).encode(), {**SHORT, "Idempotency-Key": "k"}
        )
        assert other.status_code == 422
        problem = other.json()
        assert problem["type"] == "https://trading-orders.invalid/problems/idempotency-key-reused"
        assert problem["errors"][0]["type"] == "idempotency_key_reused"


# POST /create_order as the OpenAPI schema described it when the issue 23 work began
# (commit e0a22c0): the operation and every schema it refers to, directly or not.
DOCUMENTED = Path(__file__).with_name("create_order_openapi.json")


def create_order_fragment(schema: dict[str, Any]) -> dict[str, Any]:
    """The operation of POST /create_order in ``schema`` and the component schemas it reaches."""
    operation = schema["paths"]["/create_order"]
    components = schema["components"]["schemas"]
    reached: dict[str, Any] = {}
    waiting = [operation]
    while waiting:
        text = json.dumps(waiting.pop())
        for name in re.findall(r'"#/components/schemas/([^"]+)"', text):
            if name not in reached:
                reached[name] = components[name]
                waiting.append(components[name])
    return {"paths": {"/create_order": operation}, "components": {"schemas": reached}}


def test_the_openapi_schema_documents_create_order_as_before(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        schema = requests.get(f"{service.base_url}/openapi.json", timeout=10).json()
    assert create_order_fragment(schema) == json.loads(DOCUMENTED.read_text())
