"""`python -m trading_orders serve`: options, and the same contract as the brief's uvicorn command."""

import pytest
import requests

from tests.e2e.conftest import ServiceFactory
from tests.worked_example import EXPECTED, ORDERS, PROFILE
from trading_orders.domain.model import PositionScope


def test_serve_takes_store_and_scope_from_the_environment_and_answers_the_worked_example(
    service_factory: ServiceFactory,
) -> None:
    with service_factory(PROFILE, entry="serve", store="memory", position_scope="user") as service:
        answers = []
        for strategy, instrument, side in ORDERS:
            body = {"STRATEGY": strategy, "INSTRUMENT": instrument, "POSITION": side}
            data = requests.post(f"{service.base_url}/create_order", json=body, timeout=5).json()
            answers.append((data["RESPONSE"], {d["user"]: d["reason"] for d in data["decisions"]}))
        assert answers == EXPECTED[PositionScope.USER]


def test_serve_refuses_a_bad_setting_in_one_line(service_factory: ServiceFactory) -> None:
    service = service_factory(PROFILE, entry="serve", position_scope="desk")
    with pytest.raises(
        RuntimeError, match="TRADING_ORDERS_POSITION_SCOPE='desk': Input should be 'strategy' or 'user'"
    ):
        service.start()
