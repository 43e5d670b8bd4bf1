"""Hostile and malformed requests over real HTTP: always a 4xx that says what is wrong, never a 5xx."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import ServiceFactory, module_service
from tests.support.service_process import ServiceProcess

PROFILE = {"U1": {"S1": ["ACC"]}}
JSON = {"Content-Type": "application/json"}
VALID = b'{"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "BUY"}'
OVERSIZED = b'{"STRATEGY": "' + b"S" * 20_000 + b'", "INSTRUMENT": "ACC", "POSITION": "BUY"}'


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    # One service for the whole module: these requests change no position.
    with module_service(tmp_path_factory, "hostile", PROFILE) as running:
        yield running


@pytest.mark.parametrize(
    ("body", "headers", "status", "says"),
    [
        (b'{"STRATEGY":', JSON, 422, "body: invalid JSON at character 12: Expecting value"),
        (b"[1, 2]", JSON, 422, "body: Input should be a valid dictionary"),
        (b"null", JSON, 422, "body: Input should be a valid dictionary"),
        (b"", JSON, 422, "body: Field required"),
        (b'{"STRATEGY": NaN, "INSTRUMENT": "ACC", "POSITION": "BUY"}', JSON, 422, "STRATEGY: Input should be a valid"),
        (b'{"STRATEGY": ["S1"], "INSTRUMENT": "ACC", "POSITION": "BUY"}', JSON, 422, "STRATEGY: Input should be a"),
        (b'{"STRATEGY": "S1", "INSTRUMENT": "", "POSITION": "BUY"}', JSON, 422, "INSTRUMENT: String should have at"),
        (
            b'{"STRATEGY": "S1\\n", "INSTRUMENT": "A\\u0000", "POSITION": 1}',
            JSON,
            422,
            "INSTRUMENT: String should match",
        ),
        (b'{"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": true}', JSON, 422, "POSITION: Input should be 'BUY'"),
        # Letter case is ASCII's only: str.upper() would fold the long s (U+017F) to S and
        # take these for SELL; a no-break space is not the white space that is trimmed.
        (
            b'{"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "\\u017fell"}',
            JSON,
            422,
            "POSITION: Input should be 'BUY'",
        ),
        (
            b'{"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "\\u017fELL"}',
            JSON,
            422,
            "POSITION: Input should be 'BUY'",
        ),
        (
            b'{"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "\\u00a0BUY"}',
            JSON,
            422,
            "POSITION: Input should be 'BUY'",
        ),
        (VALID, {"Content-Type": "text/plain"}, 415, "Content-Type: expected application/json, got text/plain"),
        (VALID, {"Content-Type": "application/x-www-form-urlencoded"}, 415, "expected application/json"),
        (VALID, {}, 415, "Content-Type: expected application/json, got none"),
        (OVERSIZED, JSON, 413, "Content Too Large"),
        (b'{"STRATEGY": "\xff\xfe", "INSTRUMENT": "ACC", "POSITION": "BUY"}', JSON, 400, "error parsing the body"),
    ],
)
def test_a_malformed_order_answers_4xx_saying_what_is_wrong(
    service: ServiceProcess, body: bytes, headers: dict[str, str], status: int, says: str
) -> None:
    answer = requests.post(f"{service.base_url}/create_order", data=body, headers=headers, timeout=5)
    assert answer.status_code == status, answer.text
    assert says in answer.text


def test_an_oversized_chunked_body_is_refused_too(service: ServiceProcess) -> None:
    chunks = iter([OVERSIZED[:10_000], OVERSIZED[10_000:]])
    answer = requests.post(f"{service.base_url}/create_order", data=chunks, headers=JSON, timeout=5)
    assert answer.status_code == 413


def test_malformed_filters_answer_422_naming_the_filter(service: ServiceProcess) -> None:
    for params, says in [({"user": ""}, "user: String should have at least 1"), ({"strategy": "x" * 201}, "strategy:")]:
        answer = requests.get(f"{service.base_url}/positions", params=params, timeout=5)
        assert answer.status_code == 422 and says in answer.json()["message"]


def test_none_of_it_reached_the_order_log(service: ServiceProcess) -> None:
    assert requests.get(f"{service.base_url}/positions", timeout=5).json() == {"positions": []}


ALL_PHASES = "examples,coverage,fuzzing,stateful"


# Every store with queries of its own: a parameter reaches each store's own
# queries and cursors (PostgreSQL refused a NUL in a name with a 500). The
# memory store is the TinyDB store over lists, behind the same HTTP layer: the
# default store's run covers it. Fewer examples per SQL store than the default
# store gets keep each to about 25 s on two cores.
# The default store's run is the suite's longest test (80 s under load), so its
# phases run as two tests that parallel workers take at once: the same phases,
# seed and examples; its stateful phase starts from an empty store instead of
# one the fuzzing phase filled.
@pytest.mark.slow
@pytest.mark.parametrize(
    ("store", "examples", "phases"),
    [
        pytest.param("tinydb", 200, "examples,coverage,fuzzing", id="tinydb-200-single-requests"),
        pytest.param("tinydb", 200, "stateful", id="tinydb-200-stateful"),
        pytest.param("sqlite", 40, ALL_PHASES, id="sqlite-40"),
        pytest.param("postgres", 40, ALL_PHASES, id="postgres-40"),
    ],
)
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(
    service_factory: ServiceFactory,
    tmp_path: Path,
    store: str,
    examples: int,
    phases: str,
    request: pytest.FixtureRequest,
) -> None:
    database = {"database_url": request.getfixturevalue("postgres_url")()} if store == "postgres" else {}
    with service_factory(PROFILE, store=store, **database) as fuzzed:
        result = subprocess.run(
            [
                sys.executable, "-m", "schemathesis.cli", "run", f"{fuzzed.base_url}/openapi.json",
                "--checks", "all",
                # A valid order may rightly answer 422 when its Idempotency-Key
                # was first used for another order: that check cannot know it.
                "--exclude-checks", "positive_data_acceptance",
                # A stream that does not end; its parameters are fuzzed by
                # tests/integration/test_any_parameter_value.py instead.
                "--exclude-path", "/events",
                "--phases", phases,
                "--max-examples", str(examples), "--seed", "20261124", "--generation-database", "none", "--no-color",
            ],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        assert "Traceback" not in fuzzed.output()
