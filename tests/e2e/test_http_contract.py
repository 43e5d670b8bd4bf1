"""The HTTP contract of the SPEC, over real HTTP to a real uvicorn process."""

import re
from collections.abc import Iterator
from datetime import datetime

import pytest
import requests

from tests.e2e.conftest import ServiceFactory, module_service
from tests.support.service_process import ServiceProcess
from tests.worked_example import EXPECTED, HOLLAND, OAKLEE, ORDERS, PROFILE
from trading_orders.domain.model import PositionScope


@pytest.fixture(scope="module")
def unchanged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One service for the tests that change nothing in it: refused orders and the API pages."""
    with module_service(tmp_path_factory, "unchanged", PROFILE) as running:
        yield running
        assert requests.get(f"{running.base_url}/orders", timeout=5).json()["orders"] == [], "nothing was recorded"


@pytest.mark.parametrize("store", ["tinydb", "memory", "sqlite", "postgres"])
@pytest.mark.parametrize("scope", list(PositionScope))
def test_worked_example_answers_as_the_spec_says(
    service_factory: ServiceFactory, scope: PositionScope, store: str, request: pytest.FixtureRequest
) -> None:
    database = {"database_url": request.getfixturevalue("postgres_url")()} if store == "postgres" else {}
    with service_factory(PROFILE, position_scope=scope.value, store=store, **database) as service:
        answers = []
        for strategy, instrument, side in ORDERS:
            body = {"STRATEGY": strategy, "INSTRUMENT": instrument, "POSITION": side}
            answer = requests.post(f"{service.base_url}/create_order", json=body, timeout=5)
            assert answer.status_code == 200
            data = answer.json()
            answers.append((data["RESPONSE"], {d["user"]: d["reason"] for d in data["decisions"]}))
        assert answers == EXPECTED[scope]


def test_an_answer_has_every_field_of_the_contract(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        body = {"STRATEGY": "STRATEGY_B", "INSTRUMENT": "MINDA", "POSITION": "buy", "COMMENT": "ignored"}
        data = requests.post(f"{service.base_url}/create_order", json=body, timeout=5).json()
        assert set(data) == {
            "RESPONSE", "order_id", "received_at", "strategy", "instrument", "position", "reason", "decisions"
        }  # fmt: skip
        assert (data["RESPONSE"], data["position"], data["reason"]) == ("ACCEPTED", "BUY", None)
        assert data["received_at"].endswith("Z") and datetime.fromisoformat(data["received_at"]).utcoffset() is not None
        assert data["decisions"] == [{"user": HOLLAND, "status": "ACCEPTED", "reason": None}]
        unknown = requests.post(
            f"{service.base_url}/create_order",
            json={"STRATEGY": "STRATEGY_Z", "INSTRUMENT": "ACC", "POSITION": "SELL"},
            timeout=5,
        ).json()
        assert (unknown["RESPONSE"], unknown["reason"], unknown["decisions"]) == ("REJECTED", "UNKNOWN_STRATEGY", [])
        assert unknown["order_id"] != data["order_id"]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"INSTRUMENT": "ACC", "POSITION": "BUY"}, "STRATEGY: Field required"),
        ({"STRATEGY": "S", "INSTRUMENT": 5, "POSITION": "BUY"}, "INSTRUMENT: Input should be a valid string"),
        ({"STRATEGY": "S", "INSTRUMENT": "ACC", "POSITION": "HOLD"}, "POSITION: Input should be 'BUY' or 'SELL'"),
        ({"STRATEGY": "  ", "INSTRUMENT": "ACC", "POSITION": "BUY"}, "STRATEGY: String should have at least 1"),
        ({"STRATEGY": "S" * 65, "INSTRUMENT": "ACC", "POSITION": "BUY"}, "STRATEGY: String should have at most 64"),
        ({"STRATEGY": "S\u0007", "INSTRUMENT": "ACC", "POSITION": "BUY"}, "STRATEGY: String should match pattern"),
    ],
)
def test_a_malformed_body_answers_422_naming_the_field(
    unchanged: ServiceProcess, body: dict[str, object], named: str
) -> None:
    answer = requests.post(f"{unchanged.base_url}/create_order", json=body, timeout=5)
    assert answer.status_code == 422
    assert named in answer.json()["message"]


def test_positions_are_listed_and_filtered(service_factory: ServiceFactory) -> None:
    profile = {HOLLAND: {"STRATEGY_A": ["GRASIM", "EICHER"]}, OAKLEE: {"STRATEGY_A": ["GRASIM"]}}
    with service_factory(profile) as service:
        for instrument in ("GRASIM", "EICHER"):
            body = {"STRATEGY": "STRATEGY_A", "INSTRUMENT": instrument, "POSITION": "BUY"}
            requests.post(f"{service.base_url}/create_order", json=body, timeout=5).raise_for_status()

        def listed(**filters: str) -> set[tuple[str, str]]:
            answer = requests.get(f"{service.base_url}/positions", params=filters, timeout=5)
            assert answer.status_code == 200
            positions = answer.json()["positions"]
            assert all(set(p) == {"user", "strategy", "instrument", "order_id", "opened_at"} for p in positions)
            return {(p["user"], p["instrument"]) for p in positions}

        assert listed() == {(HOLLAND, "GRASIM"), (HOLLAND, "EICHER"), (OAKLEE, "GRASIM")}
        assert listed(user=OAKLEE) == {(OAKLEE, "GRASIM")}
        assert listed(instrument="EICHER", strategy="STRATEGY_A") == {(HOLLAND, "EICHER")}
        assert listed(strategy="STRATEGY_B") == set()


def test_health_and_the_documented_schema(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        health = requests.get(f"{service.base_url}/health", timeout=5).json()
        assert health == {"status": "ok", "store_reachable": True, "last_sequence": 0, "open_positions": 0}
        schema = requests.get(f"{service.base_url}/openapi.json", timeout=5).json()
        models = schema["components"]["schemas"]
        assert {"CreateOrderRequest", "OrderAnswer", "PositionsAnswer", "ValidationProblem"} <= set(models)
        assert models["CreateOrderRequest"]["examples"][0]["STRATEGY"] == "STRATEGY_B"
        assert models["OrderAnswer"]["examples"][0]["RESPONSE"] == "ACCEPTED"
        assert {"/create_order", "/positions", "/health", "/metrics"} <= set(schema["paths"])


def test_a_missing_profile_stops_start_up_with_one_clear_line(service_factory: ServiceFactory) -> None:
    service = service_factory(profile=None)
    with pytest.raises(RuntimeError, match="exited with 1"):
        service.start()
    lines = [line for line in service.output().splitlines() if "cannot start" in line]
    assert len(lines) == 1
    assert "user_profile.json does not exist: run Scripts/Generate_User_Profile.py" in lines[0]
    assert "Traceback" not in service.output()


def test_an_unknown_setting_stops_start_up_listing_the_allowed_values(service_factory: ServiceFactory) -> None:
    service = service_factory(PROFILE, store="mongo")
    with pytest.raises(RuntimeError, match="exited with 1"):
        service.start()
    assert (
        "TRADING_ORDERS_STORE='mongo': Input should be 'tinydb', 'memory', 'sqlite' or 'postgres'" in service.output()
    )
    assert "Traceback" not in service.output()


def test_a_second_process_on_the_same_data_is_refused(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE):
        second = service_factory(PROFILE)
        with pytest.raises(RuntimeError, match="exited with 1"):
            second.start()
        assert "is in use by another process" in second.output()


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_api_pages_load_everything_from_the_service_itself(unchanged: ServiceProcess, page: str) -> None:
    html = requests.get(f"{unchanged.base_url}{page}", timeout=5)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    sources = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
    assert sources, "the page names its scripts and styles"
    for source in sources:
        assert source.startswith("/"), f"{page} loads {source} from elsewhere"
        assert requests.get(f"{unchanged.base_url}{source}", timeout=5).status_code == 200, source
    assert "cdn." not in html.text and "fonts.googleapis" not in html.text
