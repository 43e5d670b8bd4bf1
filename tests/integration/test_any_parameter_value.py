"""Arbitrary Unicode in every query and path parameter of every GET route, on every store: never a 5xx."""

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.postgres_server import ThrowawayPostgres
from tests.support.service_process import ServiceProcess

SCRIPTS = Path(__file__).resolve().parents[2] / "Scripts"

PROFILE = {"U1": {"S1": ["ACC", "INFY"]}, "U2": {"S1": ["ACC"]}}

# Any Unicode text, and text that is nearly a number or a cursor, which plain
# st.text() seldom draws: the characters str.isdigit() takes for digits
# besides 0-9 (superscripts, Arabic-Indic, mathematical, full-width...) alone
# or as either half of an "<offset>.<index>" cursor, and ASCII hex digits and
# signs mixed with other digits and control characters.
NON_ASCII_DIGITS = [c for c in map(chr, range(0x80, 0x110000)) if c.isdigit()]
OTHER_DIGITS = st.text(alphabet=st.sampled_from(NON_ASCII_DIGITS), min_size=1, max_size=4)
HEX_DIGITS = st.text(alphabet="0123456789abcdef", min_size=1, max_size=4)
NEARLY_NUMBERS = st.characters(categories=("Nd", "No", "Cc")) | st.sampled_from("0123456789abcdef.-+_ x")
ANY_TEXT = (
    st.text()
    | OTHER_DIGITS
    # "0": the first line of a file, the one offset every log has.
    | st.builds("{}.{}".format, st.just("0") | HEX_DIGITS | OTHER_DIGITS, OTHER_DIGITS | HEX_DIGITS)
    | st.text(alphabet=NEARLY_NUMBERS, max_size=20)
)


@dataclasses.dataclass(frozen=True)
class Route:
    """A GET route of the OpenAPI schema with the names of its parameters."""

    path: str
    path_parameters: tuple[str, ...]
    query_parameters: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Served:
    """A running service and the GET routes its schema lists."""

    url: str
    routes: tuple[Route, ...]


def get_routes(schema: dict[str, Any]) -> tuple[Route, ...]:
    """Every GET route of ``schema`` with its path and query parameters."""
    routes = []
    for path, operations in schema["paths"].items():
        if "get" not in operations:
            continue
        parameters = operations["get"].get("parameters", [])
        routes.append(
            Route(
                path,
                tuple(p["name"] for p in parameters if p["in"] == "path"),
                tuple(p["name"] for p in parameters if p["in"] == "query"),
            )
        )
    return tuple(routes)


@pytest.fixture(scope="module", params=["memory", "tinydb", "sqlite", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The service under uvicorn over a store of each kind, with orders and a trade to page over.

    A process of its own: in a thread of this one, the PostgreSQL pool's use of
    the random module while Hypothesis draws is taken for the strategy's own.
    """
    root = tmp_path_factory.mktemp(f"any-parameter-{request.param}")
    (root / "user_profile.json").write_text(json.dumps(PROFILE))
    environment = {
        "TRADING_ORDERS_DATA_DIR": str(root / "data"),
        "TRADING_ORDERS_PROFILE_PATH": str(root / "user_profile.json"),
        "TRADING_ORDERS_LOG_DIR": str(root / "logs"),
        "TRADING_ORDERS_STORE": request.param,
    }
    if request.param == "postgres":
        postgres: ThrowawayPostgres = request.getfixturevalue("postgres_server")
        environment["TRADING_ORDERS_DATABASE_URL"] = postgres.new_database()
    with ServiceProcess(SCRIPTS, environment, root / "service.out", forked=True) as server:
        for instrument, side in [("ACC", "BUY"), ("INFY", "BUY"), ("ACC", "SELL"), ("ACC", "SELL")]:
            body = {"STRATEGY": "S1", "INSTRUMENT": instrument, "POSITION": side}
            assert requests.post(f"{server.base_url}/create_order", json=body, timeout=10).status_code == 200
        schema = requests.get(f"{server.base_url}/openapi.json", timeout=10).json()
        yield Served(server.base_url, get_routes(schema))
        assert "Traceback" not in server.output()


def test_the_schema_lists_the_routes_with_parameters(served: Served) -> None:
    # Guards the property below against an empty or misread route list.
    by_path = {route.path: route for route in served.routes}
    assert by_path["/orders/{order_id}"].path_parameters == ("order_id",)
    assert by_path["/users/{user}"].path_parameters == ("user",)
    assert set(by_path["/orders"].query_parameters) == {
        "strategy",
        "instrument",
        "user",
        "since",
        "until",
        "limit",
        "cursor",
        "status",
    }
    assert set(by_path["/trades"].query_parameters) >= {"limit", "cursor", "since", "until"}
    assert set(by_path["/positions"].query_parameters) == {"user", "strategy", "instrument"}


def test_any_text_in_any_parameter_answers_below_500(served: Served) -> None:
    @settings(
        max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(data=st.data())
    def answers_below_500(data: st.DataObject) -> None:
        route = data.draw(st.sampled_from(served.routes), label="route")
        path = route.path
        for name in route.path_parameters:
            value = data.draw(ANY_TEXT.filter(bool), label=name)
            path = path.replace(f"{{{name}}}", quote(value, safe=""))
        query: dict[str, str] = {}
        if route.query_parameters:
            # One parameter alone, else a refusal of another would hide what this one does;
            # now and then all of them at once.
            if data.draw(st.booleans(), label="all at once"):
                every = {name: ANY_TEXT for name in route.query_parameters}
                query = data.draw(st.fixed_dictionaries({}, optional=every), label="query")
            else:
                name = data.draw(st.sampled_from(route.query_parameters), label="parameter")
                query = {name: data.draw(ANY_TEXT, label=name)}
        # Streamed, and closed after the head: GET /events answers a stream that does not end.
        with requests.get(f"{served.url}{path}", params=query, timeout=10, stream=True) as answer:
            assert answer.status_code < 500, (path, query, answer.status_code, answer.raw.read(500))

    answers_below_500()


def test_the_routes_answer_well_formed_requests(served: Served) -> None:
    # The property holds trivially if every request fails to route: these must succeed.
    orders = requests.get(f"{served.url}/orders", params={"limit": "2"}, timeout=10).json()
    assert len(orders["orders"]) == 2
    rest = requests.get(f"{served.url}/orders", params={"cursor": orders["next_cursor"]}, timeout=10)
    assert rest.status_code == 200 and len(rest.json()["orders"]) == 2
    trades = requests.get(f"{served.url}/trades", timeout=10).json()["trades"]
    assert [t["instrument"] for t in trades] == ["ACC", "ACC"]
    assert requests.get(f"{served.url}/users/{quote('U1')}", timeout=10).status_code == 200
