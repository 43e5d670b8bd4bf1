"""The read side over both kinds of log (memory, JSON-lines files): pages, cursors, filters, trades."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.tinydb_over_memory import service_over
from tests.service.fakes import place
from trading_orders.adapters.storage.tinydb_store.memory import (
    InMemoryOrderLog,
    InMemoryPositionStore,
    InMemoryTradeLog,
)
from trading_orders.adapters.storage.tinydb_store.order_log import JsonLinesOrderLog
from trading_orders.adapters.storage.tinydb_store.trade_log import JsonLinesTradeLog
from trading_orders.application.errors import InvalidCursor
from trading_orders.application.order_history import HistoryFilter, OrderHistory
from trading_orders.application.order_service import OrderService
from trading_orders.domain.model import Order, OrderStatus, Side

PROFILE = {"U1": {"S1": ["ACC", "INFY"], "S2": ["TCS"]}, "U2": {"S1": ["ACC"]}}
START = datetime(2026, 11, 24, 9, 15, 1, tzinfo=UTC)  # SteppingClock's first reading


@pytest.fixture(params=["memory", "files"])
def desk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[OrderService, OrderHistory]]:
    """A started service with 30 orders placed, and the history reading its logs."""
    if request.param == "files":
        order_log: InMemoryOrderLog | JsonLinesOrderLog = JsonLinesOrderLog(tmp_path)
        trade_log: InMemoryTradeLog | JsonLinesTradeLog = JsonLinesTradeLog(tmp_path)
    else:
        order_log, trade_log = InMemoryOrderLog(), InMemoryTradeLog()
    service, _ = service_over(PROFILE, InMemoryPositionStore(), order_log, trade_log)
    service.start()
    for number in range(30):
        strategy, instrument = [("S1", "ACC"), ("S1", "INFY"), ("S2", "TCS")][number % 3]
        place(service, Order(strategy, instrument, Side.BUY if number % 2 == 0 else Side.SELL))
    yield service, OrderHistory(order_log, trade_log)
    order_log.close()
    trade_log.close()


def test_pages_run_newest_first_and_cursors_continue_without_gap_or_overlap(
    desk: tuple[OrderService, OrderHistory],
) -> None:
    _, history = desk
    seen, cursor = [], None
    while True:
        page = history.orders(HistoryFilter(), limit=7, cursor=cursor)
        seen += [entry.sequence for entry in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(range(30, 0, -1))


def test_filters_keep_only_what_matches(desk: tuple[OrderService, OrderHistory]) -> None:
    _, history = desk
    acc = history.orders(HistoryFilter(strategy="S1", instrument="ACC"), limit=1000).items
    assert [e.sequence for e in acc] == list(range(28, 0, -3))
    for_u2 = history.orders(HistoryFilter(user="U2"), limit=1000).items
    assert all(any(d.user == "U2" for d in e.decision.decisions) for e in for_u2) and len(for_u2) == 20
    accepted = history.orders(HistoryFilter(status=OrderStatus.ACCEPTED), limit=1000).items
    assert accepted and all(e.decision.status is OrderStatus.ACCEPTED for e in accepted)
    window = HistoryFilter(since=START + timedelta(seconds=9), until=START + timedelta(seconds=11))
    assert [e.sequence for e in history.orders(window, limit=1000).items] == [12, 11, 10]


def test_an_order_is_found_by_id_and_an_unknown_id_is_not(desk: tuple[OrderService, OrderHistory]) -> None:
    _, history = desk
    found = history.order("o17")
    assert found is not None and found.sequence == 17
    assert history.order("nope") is None


@pytest.mark.parametrize("cursor", ["zz", "-1", "999999", "1.5"])
def test_a_cursor_the_service_did_not_hand_out_is_refused(desk: tuple[OrderService, OrderHistory], cursor: str) -> None:
    _, history = desk
    with pytest.raises(InvalidCursor):
        history.orders(HistoryFilter(), limit=5, cursor=cursor)


def test_a_limit_outside_1_to_1000_is_refused(desk: tuple[OrderService, OrderHistory]) -> None:
    _, history = desk
    with pytest.raises(ValueError, match="limit must be between 1 and 1000"):
        history.orders(HistoryFilter(), limit=0)


def test_trades_page_newest_first_with_their_buys(desk: tuple[OrderService, OrderHistory]) -> None:
    _, history = desk
    all_trades = history.trades(HistoryFilter(), limit=1000).items
    assert all_trades and [t.sold_at for t in all_trades] == sorted((t.sold_at for t in all_trades), reverse=True)
    assert all(t.holding_seconds > 0 for t in all_trades)
    first = history.trades(HistoryFilter(), limit=2)
    rest = history.trades(HistoryFilter(), limit=1000, cursor=first.next_cursor)
    assert first.items + rest.items == all_trades
    assert {t.user for t in history.trades(HistoryFilter(user="U2"), limit=1000).items} == {"U2"}
