"""The real app under uvicorn over a store the test controls, swapped in with a container override."""

import json
from pathlib import Path

import pytest
import requests
from dependency_injector import providers

from tests.service.fakes import MANUAL_CHECKPOINTS, FlakyOrderLog, FlakyPositionStore, FlakyTradeLog
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


def test_a_store_not_ready_answers_503_without_its_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "Jsons").mkdir()
    (tmp_path / "Jsons" / "user_profile.json").write_text(json.dumps({"U1": {"S1": ["ACC", "INFY"]}}))
    settings = Settings.from_environment(tmp_path)
    store = TinyDBOrderStore(
        FlakyPositionStore(), FlakyOrderLog(), FlakyTradeLog(), PositionScope.STRATEGY, MANUAL_CHECKPOINTS
    )
    container = build_container(settings)
    container.order_store.override(providers.Object(store))
    server = ThreadedServer(create_app(settings, container))
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
