"""The real app under uvicorn over a store the test controls, swapped in with a container override."""

import json
import logging
from pathlib import Path

import pytest
import requests
from dependency_injector import providers

from tests.integration.tinydb_over_memory import MANUAL_CHECKPOINTS, FlakyOrderLog, FlakyPositionStore, FlakyTradeLog
from tests.support.threaded_server import ThreadedServer
from trading_orders.adapters.storage.tinydb_store.store import TinyDBOrderStore
from trading_orders.application.errors import ServiceNotStarted
from trading_orders.bootstrap import build_container, create_app
from trading_orders.domain.model import PositionScope
from trading_orders.settings import Settings

BUY = {"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "BUY"}


def test_a_failing_order_log_answers_503_keeps_nothing_and_the_retry_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "Jsons").mkdir()
    (tmp_path / "Jsons" / "user_profile.json").write_text(json.dumps({"U1": {"S1": ["ACC", "INFY"]}}))
    settings = Settings.from_environment(tmp_path)
    log = FlakyOrderLog()
    store = TinyDBOrderStore(FlakyPositionStore(), log, FlakyTradeLog(), PositionScope.STRATEGY, MANUAL_CHECKPOINTS)
    container = build_container(settings)
    container.order_store.override(providers.Object(store))
    server = ThreadedServer(create_app(settings, container))
    try:
        url = server.url
        log.failures = 1
        refused = requests.post(f"{url}/create_order", json=BUY, timeout=10)
        assert refused.status_code == 503
        assert refused.json()["detail"].startswith("the order was not recorded: the store is unavailable")
        assert "no space left on device" not in refused.text.lower(), "OS errors go to the log only"
        assert requests.get(f"{url}/positions", timeout=10).json() == {"positions": []}
        assert log.last_sequence() == 0

        retried = requests.post(f"{url}/create_order", json=BUY, timeout=10)
        assert retried.status_code == 200 and retried.json()["RESPONSE"] == "ACCEPTED"
        positions = requests.get(f"{url}/positions", timeout=10).json()["positions"]
        assert [p["instrument"] for p in positions] == ["ACC"]
        assert log.last_sequence() == 1
    finally:
        server.stop()
        store.close()


def serve_over_a_store_the_test_controls(tmp_path: Path) -> tuple[ThreadedServer, TinyDBOrderStore]:
    """The real app under uvicorn over an in-memory TinyDB store whose methods the test may replace."""
    (tmp_path / "Jsons").mkdir()
    (tmp_path / "Jsons" / "user_profile.json").write_text(json.dumps({"U1": {"S1": ["ACC", "INFY"]}}))
    settings = Settings.from_environment(tmp_path)
    store = TinyDBOrderStore(
        FlakyPositionStore(), FlakyOrderLog(), FlakyTradeLog(), PositionScope.STRATEGY, MANUAL_CHECKPOINTS
    )
    container = build_container(settings)
    container.order_store.override(providers.Object(store))
    return ThreadedServer(create_app(settings, container)), store


def test_a_store_not_ready_answers_503_without_its_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server, store = serve_over_a_store_the_test_controls(tmp_path)
    reason = f"rebuilding from {tmp_path}/data/order_log.jsonl failed: [Errno 5] Input/output error"

    def not_ready(*args: object, **kwargs: object) -> None:
        raise ServiceNotStarted(reason)

    try:
        monkeypatch.setattr(store, "transaction", not_ready)
        refused = requests.post(f"{server.url}/create_order", json=BUY, timeout=10)
        assert refused.status_code == 503
        assert refused.json()["detail"].startswith("not ready: the service is starting or recovering its store")
        assert str(tmp_path) not in refused.text and "Input/output" not in refused.text
    finally:
        server.stop()
        store.close()


@pytest.mark.parametrize(
    ("path", "content_type"),
    # application/json alone is served by the order ingress, with a charset by the FastAPI route.
    [("ingress", "application/json"), ("route", "application/json; charset=utf-8")],
)
def test_an_unexpected_failure_answers_a_500_problem_and_logs_its_traceback_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, path: str, content_type: str
) -> None:
    server, store = serve_over_a_store_the_test_controls(tmp_path)
    # uvicorn's loggers do not propagate: listen to them too, for a second traceback.
    uvicorn_errors = logging.getLogger("uvicorn.error")
    uvicorn_errors.addHandler(caplog.handler)

    def bug(*args: object, **kwargs: object) -> None:
        raise KeyError(f"{tmp_path}/secret-internal-name")

    try:
        monkeypatch.setattr(store, "transaction", bug)
        refused = requests.post(
            f"{server.url}/create_order", data=json.dumps(BUY), headers={"Content-Type": content_type}, timeout=10
        )
        assert refused.status_code == 500, (path, refused.text)
        assert refused.headers["Content-Type"] == "application/problem+json"
        problem = refused.json()
        incident = problem["incident"]
        assert problem == {
            "type": "https://trading-orders.invalid/problems/internal",
            "title": "Internal Server Error",
            "status": 500,
            "detail": f"the service failed to answer; the operator can look up incident {incident}",
            "incident": incident,
        }
        assert "secret-internal-name" not in refused.text and "KeyError" not in refused.text
        # The service still answers afterwards.
        assert requests.get(f"{server.url}/positions", timeout=10).status_code == 200
    finally:
        uvicorn_errors.removeHandler(caplog.handler)
        server.stop()
        store.close()
    failures = [r for r in caplog.records if r.exc_info is not None]
    assert len(failures) == 1, [r.getMessage() for r in failures]
    assert f"(incident {incident})" in failures[0].getMessage() and failures[0].exc_info is not None
    assert failures[0].exc_info[0] is KeyError
