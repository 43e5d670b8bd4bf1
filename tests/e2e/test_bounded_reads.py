"""Issue 12, class C: a filter that matches rarely reads a bounded part of the log per page, and pages on."""

from typing import Any

import pytest
import requests

from tests.e2e.conftest import ServiceFactory

# U2 runs only S2: one order in ten has a decision for U2.
PROFILE = {"U1": {"S1": ["ACC"], "S2": ["TCS"]}, "U2": {"S2": ["TCS"]}}
BUDGET = 10
ORDERS = 45


@pytest.mark.parametrize("store", ["tinydb", "sqlite", "memory"])
def test_a_rare_filter_reads_within_the_budget_and_its_cursors_page_on_exactly(
    service_factory: ServiceFactory, store: str
) -> None:
    with service_factory(PROFILE, store=store, read_scan_budget=str(BUDGET)) as service:
        url = service.base_url
        rare: list[str] = []
        for number in range(ORDERS):
            strategy, instrument = ("S2", "TCS") if number % 10 == 3 else ("S1", "ACC")
            side = "BUY" if number % 2 == 0 else "SELL"
            body = {"STRATEGY": strategy, "INSTRUMENT": instrument, "POSITION": side}
            answer = requests.post(f"{url}/create_order", json=body, timeout=10).json()
            if strategy == "S2":
                rare.append(answer["order_id"])
        rare.reverse()

        rare_filter: dict[str, str | int] = {"user": "U2", "limit": 100}
        first = requests.get(f"{url}/orders", params=rare_filter, timeout=10).json()
        # The newest ten orders hold one for U2 (number 43): the page stops at its budget, with a cursor.
        assert first["scan_limited"] is True and first["next_cursor"] is not None
        assert [o["order_id"] for o in first["orders"]] == rare[:1]

        pages: list[dict[str, Any]] = [first]
        while pages[-1]["next_cursor"] is not None:
            params: dict[str, str | int] = {"user": "U2", "limit": 100, "cursor": pages[-1]["next_cursor"]}
            pages.append(requests.get(f"{url}/orders", params=params, timeout=10).json())
            assert len(pages) <= ORDERS // BUDGET + 2, "each page reads its budget, so few pages cover the log"
        assert [o["order_id"] for page in pages for o in page["orders"]] == rare
        assert pages[-1]["scan_limited"] is False

        user = requests.get(f"{url}/users/U2", timeout=10).json()
        assert user["recent_orders_scan_limited"] is True
        assert [o["order_id"] for o in user["recent_orders"]] == rare[:1]
        rest = requests.get(
            f"{url}/orders", params={"user": "U2", "cursor": user["recent_orders_next_cursor"]}, timeout=10
        ).json()
        assert [o["order_id"] for o in rest["orders"]] == rare[1:2]
