"""What the service shows to whom, over real HTTP: health without the key, keys per API key, the admin endpoint."""

import json
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import ServiceFactory

PROFILE = {"U1": {"S1": ["ACC", "INFY"]}}
BUY_ACC = {"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "BUY"}


def post_order(base_url: str, api_key: str, idempotency_key: str, content_type: str) -> requests.Response:
    headers = {"X-API-Key": api_key, "Idempotency-Key": idempotency_key, "Content-Type": content_type}
    return requests.post(f"{base_url}/create_order", data=json.dumps(BUY_ACC), headers=headers, timeout=5)


def test_with_an_api_key_health_tells_a_client_without_it_only_ok_or_not(service_factory: ServiceFactory) -> None:
    key = "desk-key-1"
    with service_factory(PROFILE, api_key=key) as service:
        bare = requests.get(f"{service.base_url}/health", timeout=5)
        assert (bare.status_code, bare.json()) == (200, {"status": "ok"})
        wrong = requests.get(f"{service.base_url}/health", headers={"X-API-Key": "guess"}, timeout=5)
        assert wrong.json() == {"status": "ok"}
        keyed = requests.get(f"{service.base_url}/health", headers={"X-API-Key": key}, timeout=5)
        assert keyed.json() == {"status": "ok", "store_reachable": True, "last_sequence": 0, "open_positions": 0}


def test_without_an_api_key_health_gives_its_detail_to_everyone(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        health = requests.get(f"{service.base_url}/health", timeout=5).json()
        assert health == {"status": "ok", "store_reachable": True, "last_sequence": 0, "open_positions": 0}


# application/json is served by the order ingress; with a charset, by the FastAPI route: both scope keys.
@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_an_idempotency_key_is_scoped_to_the_api_key_it_came_with(
    service_factory: ServiceFactory, data_dir: Path, content_type: str
) -> None:
    with service_factory(PROFILE, api_key="desk-key-1") as service:
        first = post_order(service.base_url, "desk-key-1", "k-1", content_type)
        assert first.status_code == 200 and first.json()["RESPONSE"] == "ACCEPTED"
    with service_factory(PROFILE, api_key="desk-key-2") as service:
        # The same client key under another API key is a new order, not the first one's answer.
        other = post_order(service.base_url, "desk-key-2", "k-1", content_type)
        assert other.status_code == 200 and "Idempotent-Replayed" not in other.headers
        assert other.json()["order_id"] != first.json()["order_id"]
        assert other.json()["decisions"][0]["reason"] == "ALREADY_HOLDING"
    with service_factory(PROFILE, api_key="desk-key-1") as service:
        # Back under the first API key, the retry replays its own answer.
        retry = post_order(service.base_url, "desk-key-1", "k-1", content_type)
        assert retry.headers.get("Idempotent-Replayed") == "true" and retry.json() == first.json()
        # What the API shows of an order never names the recorded key.
        shown = requests.get(f"{service.base_url}/orders", headers={"X-API-Key": "desk-key-1"}, timeout=5).text
        assert "k-1" not in shown and "desk-key" not in shown
    recorded = [json.loads(line)["idempotency_key"] for line in (data_dir / "order_log.jsonl").read_text().splitlines()]
    assert len(set(recorded)) == 2 and all(key.endswith(":k-1") for key in recorded)
    assert not any("desk-key" in key for key in recorded), "the log holds a digest of the API key, not the key"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/merge-patch+json"},
    ],
    ids=["none", "form", "text", "json-suffix"],
)
def test_the_admin_reload_refuses_anything_but_json_and_keeps_the_profile(
    service_factory: ServiceFactory, tmp_path: Path, headers: dict[str, str]
) -> None:
    with service_factory(PROFILE) as service:
        (tmp_path / "user_profile.json").write_text(json.dumps({"U9": {"S9": ["ITC"]}}))
        # What a cross-site form post sends: a browser sends it without asking the service first.
        refused = requests.post(f"{service.base_url}/admin/reload-profile", data="x=1", headers=headers, timeout=5)
        assert refused.status_code == 415, refused.text
        assert refused.json()["detail"].startswith("Content-Type: expected application/json")
        users = requests.get(f"{service.base_url}/users", timeout=5).json()["users"]
        assert [u["user"] for u in users] == ["U1"], "the profile was not reloaded"
        taken = requests.post(f"{service.base_url}/admin/reload-profile", json={}, timeout=5)
        assert taken.status_code == 200 and taken.json()["reloaded"] is True


def test_a_refused_reload_says_what_is_wrong_without_the_files_path(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    profile = tmp_path / "user_profile.json"
    with service_factory(PROFILE) as service:
        profile.write_text('{"U1": ')
        broken = requests.post(f"{service.base_url}/admin/reload-profile", json={}, timeout=5)
        assert broken.status_code == 422
        assert broken.json()["detail"].startswith("the profile file is not valid JSON: ")
        profile.unlink()
        missing = requests.post(f"{service.base_url}/admin/reload-profile", json={}, timeout=5)
        assert missing.json()["detail"] == "the profile file does not exist; the previous profile stays in use"
        for answer in (broken, missing):
            assert str(tmp_path) not in answer.text, answer.text
    logged = (tmp_path / "logs" / "trading_orders.log").read_text()
    assert f"profile file {profile} does not exist" in logged, "the operator still gets the path, in the log"
