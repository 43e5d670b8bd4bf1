"""Operating the service over real HTTP: health, metrics, the access log, and the optional API key."""

from pathlib import Path

import requests

from tests.e2e.conftest import ServiceFactory

PROFILE = {"U1": {"S1": ["ACC", "INFY"]}, "U2": {"S1": ["ACC"]}}
KEY_WRONG = {
    "type": "https://trading-orders.invalid/problems/api-key",
    "title": "API key missing or wrong",
    "status": 401,
    "detail": "X-API-Key header wrong",
}


def order(base_url: str, instrument: str, side: str, **headers: str) -> requests.Response:
    body = {"STRATEGY": "S1", "INSTRUMENT": instrument, "POSITION": side}
    return requests.post(f"{base_url}/create_order", json=body, headers=headers, timeout=5)


def test_health_reports_the_log_and_turns_503_when_the_log_file_is_gone(
    service_factory: ServiceFactory, data_dir: Path
) -> None:
    with service_factory(PROFILE) as service:
        order(service.base_url, "ACC", "BUY").raise_for_status()
        order(service.base_url, "INFY", "SELL").raise_for_status()
        health = requests.get(f"{service.base_url}/health", timeout=5)
        assert health.json() == {"status": "ok", "store_reachable": True, "last_sequence": 2, "open_positions": 2}
        (data_dir / "order_log.jsonl").rename(data_dir / "moved-away.jsonl")
        gone = requests.get(f"{service.base_url}/health", timeout=5)
        assert gone.status_code == 503
        assert gone.json()["status"] == "unavailable" and gone.json()["store_reachable"] is False


def test_metrics_count_orders_and_decisions_and_time_them(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        order(service.base_url, "ACC", "BUY").raise_for_status()  # U1 and U2 accept
        order(service.base_url, "INFY", "SELL").raise_for_status()  # U1 no position, U2 not in universe
        order(service.base_url, "ACC", "SELL", **{"Idempotency-Key": "k"}).raise_for_status()
        order(service.base_url, "ACC", "SELL", **{"Idempotency-Key": "k"}).raise_for_status()  # replay: not counted
        answer = requests.get(f"{service.base_url}/metrics", timeout=5)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
        lines = set(answer.text.splitlines())
        for expected in [
            'trading_orders_orders_total{reason="",status="ACCEPTED"} 2.0',
            'trading_orders_orders_total{reason="",status="REJECTED"} 1.0',
            'trading_orders_decisions_total{reason="",status="ACCEPTED"} 4.0',
            'trading_orders_decisions_total{reason="NO_OPEN_POSITION",status="REJECTED"} 1.0',
            'trading_orders_decisions_total{reason="INSTRUMENT_NOT_IN_STRATEGY",status="REJECTED"} 1.0',
            "trading_orders_decide_and_record_seconds_count 3.0",
            "trading_orders_open_positions 0.0",
            "trading_orders_order_log_length 3.0",
        ]:
            assert expected in lines, expected


def test_every_request_is_logged_with_status_duration_and_order_id(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    with service_factory(PROFILE) as service:
        order_id = order(service.base_url, "ACC", "BUY").json()["order_id"]
        requests.get(f"{service.base_url}/positions", timeout=5)
        requests.post(f"{service.base_url}/create_order", json={}, timeout=5)
    logged = (tmp_path / "logs" / "trading_orders.log").read_text().splitlines()
    access = [line for line in logged if "trading_orders.adapters.http.middleware" in line]
    assert any("POST /create_order 200 " in line and line.endswith(f"ms order={order_id}") for line in access)
    assert any("GET /positions 200 " in line and line.endswith("order=-") for line in access)
    assert any("POST /create_order 422 " in line for line in access)


def test_an_api_key_guards_every_endpoint_but_health_and_is_never_logged(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    key = "s3cret-desk-key"
    with service_factory(PROFILE, api_key=key) as service:
        assert order(service.base_url, "ACC", "BUY").status_code == 401
        wrong = order(service.base_url, "ACC", "BUY", **{"X-API-Key": "guess-number-one"})
        assert (wrong.status_code, wrong.json()) == (401, KEY_WRONG)
        assert wrong.headers["WWW-Authenticate"] == "X-API-Key"
        # Over 1024 bytes is wrong without comparing it, even if it starts with the key.
        too_long = order(service.base_url, "ACC", "BUY", **{"X-API-Key": key + "k" * 2000})
        assert (too_long.status_code, too_long.json()) == (401, KEY_WRONG)
        assert requests.get(f"{service.base_url}/positions", timeout=5).status_code == 401
        assert requests.get(f"{service.base_url}/metrics", timeout=5).status_code == 401
        assert requests.get(f"{service.base_url}/health", timeout=5).status_code == 200
        assert order(service.base_url, "ACC", "BUY", **{"X-API-Key": key}).json()["RESPONSE"] == "ACCEPTED"
    logged = (tmp_path / "logs" / "trading_orders.log").read_text()
    assert "refused POST /create_order from 127.0.0.1: X-API-Key missing" in logged
    assert "X-API-Key wrong" in logged
    assert key not in logged and "guess-number-one" not in logged
    assert key not in service.output()
