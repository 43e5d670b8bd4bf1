"""Users, strategies and reloading the profile without a restart, over real HTTP."""

import json
from pathlib import Path

import requests

from tests.e2e.conftest import ServiceFactory

PROFILE = {"U1": {"S1": ["ACC", "INFY"], "S2": ["TCS"]}, "U2": {"S1": ["ACC"]}}


def buy(base_url: str, strategy: str, instrument: str) -> None:
    body = {"STRATEGY": strategy, "INSTRUMENT": instrument, "POSITION": "BUY"}
    requests.post(f"{base_url}/create_order", json=body, timeout=5).raise_for_status()


def test_users_and_strategies_describe_the_profile_and_the_holdings(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        buy(service.base_url, "S1", "ACC")
        users = requests.get(f"{service.base_url}/users", timeout=5).json()["users"]
        assert users == [
            {"user": "U1", "strategies": {"S1": ["ACC", "INFY"], "S2": ["TCS"]}, "open_positions": 1},
            {"user": "U2", "strategies": {"S1": ["ACC"]}, "open_positions": 1},
        ]
        strategies = requests.get(f"{service.base_url}/strategies", timeout=5).json()["strategies"]
        assert strategies == [
            {"strategy": "S1", "users": ["U1", "U2"], "universe": ["ACC", "INFY"]},
            {"strategy": "S2", "users": ["U1"], "universe": ["TCS"]},
        ]
        one = requests.get(f"{service.base_url}/users/U2", timeout=5).json()
        assert [(p["strategy"], p["instrument"]) for p in one["positions"]] == [("S1", "ACC")]
        assert [o["sequence"] for o in one["recent_orders"]] == [1]
        assert requests.get(f"{service.base_url}/users/nobody", timeout=5).status_code == 404


def test_reload_takes_a_valid_profile_and_keeps_every_position(service_factory: ServiceFactory, tmp_path: Path) -> None:
    with service_factory(PROFILE) as service:
        buy(service.base_url, "S1", "ACC")
        (tmp_path / "user_profile.json").write_text(json.dumps({"U1": {"S1": ["ACC"]}, "U3": {"S3": ["ITC"]}}))
        answer = requests.post(f"{service.base_url}/admin/reload-profile", json={}, timeout=5)
        assert answer.status_code == 200 and answer.json()["reloaded"] is True
        assert [p["user"] for p in answer.json()["positions_outside_profile"]] == ["U2"]
        listed = {u["user"] for u in requests.get(f"{service.base_url}/users", timeout=5).json()["users"]}
        assert listed == {"U1", "U3"}
        assert len(requests.get(f"{service.base_url}/positions", timeout=5).json()["positions"]) == 2
        assert requests.get(f"{service.base_url}/users/U2", timeout=5).json()["open_positions"] == 1
        buy(service.base_url, "S3", "ITC")  # the new profile decides orders at once
        assert len(requests.get(f"{service.base_url}/positions", timeout=5).json()["positions"]) == 3


def test_an_invalid_profile_is_refused_and_the_old_one_stays(service_factory: ServiceFactory, tmp_path: Path) -> None:
    with service_factory(PROFILE) as service:
        (tmp_path / "user_profile.json").write_text('{"U1": {"S1": []}}')
        answer = requests.post(f"{service.base_url}/admin/reload-profile", json={}, timeout=5)
        assert answer.status_code == 422 and answer.json()["reloaded"] is False
        assert "universe is empty" in answer.json()["detail"] and "previous profile stays" in answer.json()["detail"]
        assert {u["user"] for u in requests.get(f"{service.base_url}/users", timeout=5).json()["users"]} == {
            "U1", "U2"
        }  # fmt: skip
