"""Every error answer over real HTTP is RFC 9457 problem details: problem+json with type, title, status, detail."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import ServiceFactory, module_service
from tests.support.postgres_server import ThrowawayPostgres
from tests.support.problem_answers import OURS, assert_problem
from tests.support.service_process import ServiceProcess

KEY = "desk-key-for-problems"
WITH_KEY = {"X-API-Key": KEY}
JSON = {**WITH_KEY, "Content-Type": "application/json"}
BUY = {"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "BUY"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    # One service for the module, with an API key so that 401 is among the answers.
    with module_service(tmp_path_factory, "problems", {"U1": {"S1": ["ACC", "INFY"]}}, api_key=KEY) as running:
        yield running


def test_a_body_that_is_not_utf8_is_a_400_problem(service: ServiceProcess) -> None:
    body = b'{"STRATEGY": "\xff\xfe", "INSTRUMENT": "ACC", "POSITION": "BUY"}'
    answer = requests.post(f"{service.base_url}/create_order", data=body, headers=JSON, timeout=5)
    problem = assert_problem(answer, 400, "about:blank")
    assert problem["title"] == "Bad Request" and "error parsing the body" in str(problem["detail"])


def test_a_missing_or_wrong_api_key_is_a_401_problem_with_its_challenge(service: ServiceProcess) -> None:
    for headers, says in [({}, "X-API-Key header missing"), ({"X-API-Key": "guess"}, "X-API-Key header wrong")]:
        answer = requests.get(f"{service.base_url}/positions", headers=headers, timeout=5)
        assert assert_problem(answer, 401, OURS + "api-key")["detail"] == says
        assert answer.headers["WWW-Authenticate"] == "X-API-Key"


def test_an_unknown_path_is_a_404_problem_naming_it(service: ServiceProcess) -> None:
    answer = requests.get(f"{service.base_url}/no/such/thing", headers=WITH_KEY, timeout=5)
    problem = assert_problem(answer, 404, "about:blank")
    assert problem["title"] == "Not Found" and problem["detail"] == "nothing is served at /no/such/thing"


def test_an_unknown_order_and_user_are_404_problems_of_their_own_types(service: ServiceProcess) -> None:
    order = requests.get(f"{service.base_url}/orders/does-not-exist", headers=WITH_KEY, timeout=5)
    assert assert_problem(order, 404, OURS + "order-not-found")["detail"] == "no order has id 'does-not-exist'"
    user = requests.get(f"{service.base_url}/users/Nobody", headers=WITH_KEY, timeout=5)
    assert assert_problem(user, 404, OURS + "user-not-found")["detail"] == "no user is named 'Nobody'"


def test_a_method_the_path_does_not_take_is_a_405_problem_with_allow(service: ServiceProcess) -> None:
    answer = requests.delete(f"{service.base_url}/positions", headers=WITH_KEY, timeout=5)
    problem = assert_problem(answer, 405, "about:blank")
    assert answer.headers["Allow"] == "GET"
    assert problem["title"] == "Method Not Allowed" and problem["detail"] == (
        "DELETE is not allowed on /positions; allowed: GET"
    )


def test_an_oversized_body_is_a_413_problem_announced_or_chunked(service: ServiceProcess) -> None:
    oversized = json.dumps({**BUY, "STRATEGY": "S" * 20_000}).encode()
    for data in (oversized, iter([oversized[:10_000], oversized[10_000:]])):
        answer = requests.post(f"{service.base_url}/create_order", data=data, headers=JSON, timeout=5)
        assert "16384 bytes" in str(assert_problem(answer, 413, OURS + "content-too-large")["detail"])


def test_a_body_not_sent_as_json_is_a_415_problem_on_orders_and_reloads(service: ServiceProcess) -> None:
    plain = {**WITH_KEY, "Content-Type": "text/plain"}
    for path in ("/create_order", "/admin/reload-profile"):
        answer = requests.post(f"{service.base_url}{path}", data=json.dumps(BUY), headers=plain, timeout=5)
        problem = assert_problem(answer, 415, OURS + "unsupported-media-type")
        assert problem["detail"] == "Content-Type: expected application/json, got text/plain", path


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_a_malformed_body_is_a_422_problem_listing_the_fields(service: ServiceProcess, content_type: str) -> None:
    # application/json alone is read by the order ingress, with a charset by the FastAPI route.
    headers = {**WITH_KEY, "Content-Type": content_type}
    body = json.dumps({"STRATEGY": "S1", "POSITION": "HOLD"})
    answer = requests.post(f"{service.base_url}/create_order", data=body, headers=headers, timeout=5)
    problem = assert_problem(answer, 422, OURS + "validation")
    assert problem["detail"] == "INSTRUMENT: Field required; POSITION: Input should be 'BUY' or 'SELL'"
    assert problem["message"] == problem["detail"]
    errors = problem["errors"]
    assert isinstance(errors, list)
    assert [(e["loc"], e["type"]) for e in errors] == [
        (["body", "INSTRUMENT"], "missing"),
        (["body", "POSITION"], "enum"),
    ]
    assert all(isinstance(e["msg"], str) and "input" not in e for e in errors)


def test_a_malformed_query_parameter_is_a_422_problem_naming_it(service: ServiceProcess) -> None:
    answer = requests.get(f"{service.base_url}/positions", params={"user": ""}, headers=WITH_KEY, timeout=5)
    problem = assert_problem(answer, 422, OURS + "validation")
    assert str(problem["detail"]).startswith("user: String should have at least 1")
    assert [e["loc"] for e in problem["errors"]] == [["query", "user"]]  # type: ignore[attr-defined]


def test_an_idempotency_key_reused_for_another_order_is_a_422_problem(service: ServiceProcess) -> None:
    headers = {**JSON, "Idempotency-Key": "problem-key"}
    first = requests.post(f"{service.base_url}/create_order", data=json.dumps(BUY), headers=headers, timeout=5)
    assert first.status_code == 200, first.text
    other = json.dumps({**BUY, "INSTRUMENT": "INFY"})
    answer = requests.post(f"{service.base_url}/create_order", data=other, headers=headers, timeout=5)
    problem = assert_problem(answer, 422, OURS + "idempotency-key-reused")
    assert "Idempotency-Key" in str(problem["detail"]) and problem["message"] == problem["detail"]
    assert problem["errors"] == [
        {"loc": ["header", "Idempotency-Key"], "msg": problem["detail"], "type": "idempotency_key_reused"}
    ]


def test_a_cursor_that_names_no_place_is_a_422_problem(service: ServiceProcess) -> None:
    answer = requests.get(f"{service.base_url}/orders", params={"cursor": "fffffff"}, headers=WITH_KEY, timeout=5)
    problem = assert_problem(answer, 422, OURS + "invalid-cursor")
    assert str(problem["detail"]).startswith("cursor: ")
    assert [e["loc"] for e in problem["errors"]] == [["query", "cursor"]]  # type: ignore[attr-defined]


def test_the_schema_documents_every_error_as_problem_json(service: ServiceProcess) -> None:
    schema = requests.get(f"{service.base_url}/openapi.json", headers=WITH_KEY, timeout=5).json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if int(status) >= 400 and (path, status) != ("/health", "503"):
                    assert list(answer["content"]) == ["application/problem+json"], (method, path, status)
    assert {"type", "title", "status", "detail"} <= set(schema["components"]["schemas"]["Problem"]["required"])


def test_a_dead_database_is_a_503_problem_with_an_incident_and_nothing_of_the_cause(
    service_factory: ServiceFactory, own_server: ThrowawayPostgres, tmp_path: Path
) -> None:
    with service_factory({"U1": {"S1": ["ACC"]}}, store="postgres", database_url=own_server.new_database()) as service:
        own_server.stop()
        answer = requests.post(f"{service.base_url}/create_order", json=BUY, timeout=60)
        problem = assert_problem(answer, 503, OURS + "store-unavailable")
        incident = problem["incident"]
        assert isinstance(incident, str) and str(problem["detail"]).endswith(f"(incident {incident})")
        assert "postgres" not in answer.text.lower() and "connection" not in answer.text.lower()
    logged = (tmp_path / "logs" / "trading_orders.log").read_text()
    assert f"(incident {incident})" in logged
