"""Idempotency-Key over real HTTP: a retried order is decided once, across restarts and races."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import ServiceFactory, module_service
from tests.support.service_process import ServiceProcess

PROFILE = {"U1": {"S1": ["ACC", "INFY"]}}
BUY_ACC = {"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "BUY"}


def post(base_url: str, body: dict[str, str], key: str | None) -> requests.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return requests.post(f"{base_url}/create_order", json=body, headers=headers, timeout=30)


def order_log_lines(data_dir: Path) -> int:
    return len((data_dir / "order_log.jsonl").read_text().splitlines())


def test_a_retry_answers_the_recorded_answer_and_changes_nothing(
    service_factory: ServiceFactory, data_dir: Path
) -> None:
    with service_factory(PROFILE) as service:
        first = post(service.base_url, BUY_ACC, "order-0001")
        retry = post(service.base_url, {**BUY_ACC, "POSITION": "buy"}, "order-0001")
        assert first.status_code == retry.status_code == 200
        assert "Idempotent-Replayed" not in first.headers
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert retry.json() == first.json() and first.json()["RESPONSE"] == "ACCEPTED"
        assert order_log_lines(data_dir) == 1
        fresh = post(service.base_url, BUY_ACC, "order-0002")
        assert fresh.json()["decisions"][0]["reason"] == "ALREADY_HOLDING"


def test_the_same_key_with_another_order_answers_422_saying_so(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        first = post(service.base_url, BUY_ACC, "k")
        other = post(service.base_url, {**BUY_ACC, "INSTRUMENT": "INFY"}, "k")
        assert other.status_code == 422
        message = other.json()["message"]
        assert message.startswith("this Idempotency-Key was already used for a different order")
        # The order recorded under the key may be another client's: nothing of it is shown.
        shown = other.text
        assert first.json()["order_id"] not in shown
        assert "ACC" not in shown and "BUY" not in shown


@pytest.fixture(scope="module")
def refusing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One service for the malformed keys: each is refused before the order is decided, so nothing is recorded."""
    with module_service(tmp_path_factory, "malformed-keys", PROFILE) as running:
        yield running
        assert requests.get(f"{running.base_url}/orders", timeout=5).json()["orders"] == [], "nothing was recorded"


@pytest.mark.parametrize(
    ("key", "problem"),
    [("", "at least 1 character"), ("k" * 256, "at most 255 characters"), ("caf\u00e9", "should match pattern")],
)
def test_a_malformed_key_answers_422_naming_the_header(refusing: ServiceProcess, key: str, problem: str) -> None:
    answer = requests.post(
        f"{refusing.base_url}/create_order",
        json=BUY_ACC,
        headers={"Idempotency-Key": key.encode("utf-8")},
        timeout=5,
    )
    assert answer.status_code == 422
    assert answer.json()["message"].startswith("Idempotency-Key:") and problem in answer.json()["message"]


def test_keys_survive_a_restart(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        first = post(service.base_url, BUY_ACC, "survivor").json()
    with service_factory(PROFILE) as restarted:
        retry = post(restarted.base_url, BUY_ACC, "survivor")
        assert retry.headers["Idempotent-Replayed"] == "true" and retry.json() == first


def test_concurrent_retries_of_one_key_are_decided_once(service_factory: ServiceFactory, data_dir: Path) -> None:
    with service_factory(PROFILE) as service:
        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(lambda _: post(service.base_url, BUY_ACC, "racing"), range(20)))
        assert all(a.status_code == 200 for a in answers)
        assert len({a.json()["order_id"] for a in answers}) == 1
        assert {a.json()["RESPONSE"] for a in answers} == {"ACCEPTED"}
        assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 19
        assert order_log_lines(data_dir) == 1
