"""POST /create_order has one code path: over real HTTP, every request to it answers by one contract."""

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import ServiceFactory, module_service
from tests.support.problem_answers import OURS
from tests.support.raw_http import send
from tests.support.service_process import ServiceProcess

PROFILE = {"U1": {"S1": ["ACC", "INFY"]}, "U2": {"S1": ["ACC"]}}
BUY_ACC = {"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "BUY"}
HTTP_ADAPTER = Path(__file__).resolve().parents[2] / "src" / "trading_orders" / "adapters" / "http"

JSON = {"Content-Type": "application/json"}
JSON_UTF8 = {"Content-Type": "Application/JSON; charset=utf-8"}


def post(base_url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(f"{base_url}/create_order", data=body, headers=headers, timeout=30)


def test_one_function_of_the_http_adapter_places_orders() -> None:
    callers = []
    for source in sorted(HTTP_ADAPTER.rglob("*.py")):
        tree = ast.parse(source.read_text())
        for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
            calls = [n for n in ast.walk(function) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
            if any(call.func.attr == "place_order" for call in calls if isinstance(call.func, ast.Attribute)):
                callers.append(f"{source.name}:{function.name}")
    assert callers == ["order_ingress.py:__call__"]


def test_an_order_answers_alike_however_its_json_is_spelled(service_factory: ServiceFactory, data_dir: Path) -> None:
    with service_factory(PROFILE) as service:
        first = post(service.base_url, json.dumps(BUY_ACC).encode(), {**JSON, "Idempotency-Key": "a"})
        infy = post(service.base_url, json.dumps({**BUY_ACC, "INSTRUMENT": "INFY"}).encode(), JSON_UTF8)
        assert first.status_code == infy.status_code == 200
        assert first.headers["content-type"] == infy.headers["content-type"] == "application/json"
        assert first.json().keys() == infy.json().keys()
        assert [(d["user"], d["status"]) for d in first.json()["decisions"]] == [("U1", "ACCEPTED"), ("U2", "ACCEPTED")]
        assert [(d["user"], d["status"]) for d in infy.json()["decisions"]] == [("U1", "ACCEPTED"), ("U2", "REJECTED")]
        # The retry, spelled the other way, finds the same entry.
        retry = post(service.base_url, json.dumps(BUY_ACC).encode(), {**JSON_UTF8, "Idempotency-Key": "a"})
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert retry.content == first.content
        lines = (data_dir / "order_log.jsonl").read_text().splitlines()
        assert [json.loads(line)["sequence"] for line in lines] == [1, 2]


def test_what_is_not_an_order_is_refused_naming_the_problem_and_not_recorded(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        missing = post(service.base_url, b'{"STRATEGY": "S1", "POSITION": "BUY"}', JSON)
        assert missing.status_code == 422 and missing.json()["message"] == "INSTRUMENT: Field required"
        not_json = post(service.base_url, b'{"STRATEGY": "S1",', JSON)
        assert not_json.status_code == 422 and not_json.json()["message"].startswith("body: invalid JSON")
        bad_key = post(service.base_url, json.dumps(BUY_ACC).encode(), {**JSON, "Idempotency-Key": "caf\u00e9"})
        assert bad_key.status_code == 422 and "Idempotency-Key" in bad_key.json()["message"]
        # A bad key and bad fields are named in one answer, the header first.
        both = post(service.base_url, b'{"STRATEGY": "S1"}', {**JSON, "Idempotency-Key": ""})
        assert [problem["loc"] for problem in both.json()["errors"]] == [
            ["header", "Idempotency-Key"],
            ["body", "INSTRUMENT"],
            ["body", "POSITION"],
        ]
        form = post(service.base_url, b"STRATEGY=S1", {"Content-Type": "application/x-www-form-urlencoded"})
        assert form.status_code == 415
        # JSON must be UTF-8 (RFC 8259): a UTF-16 order is a body that cannot be read.
        utf16 = post(service.base_url, json.dumps(BUY_ACC).encode("utf-16"), JSON)
        assert utf16.status_code == 400
        # None of them was recorded.
        assert requests.get(f"{service.base_url}/orders", timeout=5).json()["orders"] == []


def test_a_retried_key_with_another_order_is_refused(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        post(service.base_url, json.dumps(BUY_ACC).encode(), {**JSON, "Idempotency-Key": "k"})
        other = post(
            service.base_url, json.dumps({**BUY_ACC, "INSTRUMENT": "INFY"}).encode(), {**JSON, "Idempotency-Key": "k"}
        )
        assert other.status_code == 422
        problem = other.json()
        assert problem["type"] == "https://trading-orders.invalid/problems/idempotency-key-reused"
        assert problem["errors"][0]["type"] == "idempotency_key_reused"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    # One service for the table: each row's answer depends on its media type alone.
    with module_service(tmp_path_factory, "media-types", PROFILE) as running:
        yield running


REFUSED = (415, OURS + "unsupported-media-type")


# docs/api.md, "Placing an order": application/json in any letter case, any
# parameters, spaces around; nothing else, application/*+json included.
@pytest.mark.parametrize(
    ("content_type", "answer"),
    [
        ("application/json", (200, None)),
        ("Application/JSON", (200, None)),
        ("APPLICATION/JSON", (200, None)),
        ("application/json; charset=utf-8", (200, None)),
        ("application/json;charset=UTF-8", (200, None)),
        ("application/json ; charset=utf-8", (200, None)),
        (" application/json ", (200, None)),
        ("\tapplication/json", (200, None)),
        ("application/json; charset=iso-8859-1", (200, None)),
        (None, REFUSED),
        ("", REFUSED),
        ("text/plain", REFUSED),
        ("text/json", REFUSED),
        ("application/x-www-form-urlencoded", REFUSED),
        ("multipart/form-data; boundary=x", REFUSED),
        ("application/jsonx", REFUSED),
        ("application/json-patch+json", REFUSED),
        ("application/merge-patch+json", REFUSED),
        ("application/problem+json", REFUSED),
        ("application/json, text/plain", REFUSED),
        ("application/*", REFUSED),
        ("*/*", REFUSED),
    ],
)
def test_the_media_types_an_order_may_be_sent_as(
    service: ServiceProcess, content_type: str | None, answer: tuple[int, str | None]
) -> None:
    headers = [] if content_type is None else [("Content-Type", content_type)]
    sent = send(service.port, "POST", "/create_order", headers, json.dumps(BUY_ACC).encode())
    status, problem_type = answer
    assert sent.status == status, sent.body
    if problem_type is None:
        assert sent.json()["strategy"] == "S1"
    else:
        assert sent.headers["content-type"] == "application/problem+json"
        problem = sent.json()
        assert problem["type"] == problem_type
        assert problem["detail"] == f"Content-Type: expected application/json, got {content_type or 'none'}"


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
