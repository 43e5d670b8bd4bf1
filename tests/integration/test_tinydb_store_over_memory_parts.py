"""The TinyDB store under the order service, over in-memory parts: checkpoints, replay, and parts that fail."""

import time

import pytest

from tests.integration.tinydb_over_memory import (
    FlakyOrderLog,
    FlakyPositionStore,
    FlakyTradeLog,
    build_tinydb_service,
    service_over,
)
from tests.service.fakes import place
from trading_orders.adapters.storage.tinydb_store.memory import (
    InMemoryOrderLog,
    InMemoryPositionStore,
    InMemoryTradeLog,
)
from trading_orders.adapters.storage.tinydb_store.parts import StoredPositions
from trading_orders.application.errors import CorruptStore, StartupError, StorageUnavailable
from trading_orders.domain.model import Order, OrderStatus, PositionScope, Side

ONE_USER = {"U1": {"S": ["ACC", "INFY"]}}


def test_each_order_is_logged_and_a_checkpoint_snapshots_the_positions_with_its_sequence() -> None:
    store, log = InMemoryPositionStore(), InMemoryOrderLog()
    service, tinydb = service_over(ONE_USER, store, log, InMemoryTradeLog())
    service.start()
    buy = place(service, Order("S", "ACC", Side.BUY)).entry
    rejected = place(service, Order("S", "ACC", Side.BUY)).entry
    assert (buy.sequence, rejected.sequence, log.last_sequence()) == (1, 2, 2)
    assert store.load() == StoredPositions((), 0), "orders do not write positions; checkpoints do"
    assert tinydb.checkpoint()
    stored = store.load()
    assert [p.order_id for p in stored.positions] == [buy.decision.order_id]
    assert (stored.applied_sequence, stored.log_offset) == (2, 2)
    assert service.open_positions() == list(stored.positions)
    assert not tinydb.checkpoint(), "nothing new since the last snapshot"


def test_start_replays_the_log_entries_after_the_snapshot() -> None:
    store, log = InMemoryPositionStore(), InMemoryOrderLog()
    first, tinydb = service_over(ONE_USER, store, log, InMemoryTradeLog())
    first.start()
    place(first, Order("S", "ACC", Side.BUY))
    tinydb.checkpoint()
    place(first, Order("S", "INFY", Side.BUY))
    place(first, Order("S", "ACC", Side.SELL))
    # A crash before the next checkpoint: the snapshot is two orders behind.
    second, restarted = service_over(ONE_USER, store, log, InMemoryTradeLog())
    report = second.start()
    assert report.replayed_orders == 2
    assert [(p.instrument, p.order_id) for p in second.open_positions()] == [("INFY", "o2")]
    restarted.close()
    assert store.load().applied_sequence == 3, "closing takes a last snapshot"


def test_a_store_ahead_of_the_log_refuses_to_start() -> None:
    service, store, _ = build_tinydb_service(ONE_USER)
    store.save(StoredPositions((), 5))
    with pytest.raises(CorruptStore, match="applied order-log sequence 5 but the order log ends at 0"):
        service.start()


@pytest.mark.parametrize("snapshot", [True, False])
def test_positions_that_clash_under_a_new_scope_refuse_to_start(snapshot: bool) -> None:
    universes = {"U1": {"S": ["ACC"], "T": ["ACC"]}}
    store, log = InMemoryPositionStore(), InMemoryOrderLog()
    first, tinydb = service_over(universes, store, log, InMemoryTradeLog(), PositionScope.STRATEGY)
    first.start()
    place(first, Order("S", "ACC", Side.BUY))
    place(first, Order("T", "ACC", Side.BUY))
    if snapshot:
        tinydb.checkpoint()
    netting, _, _ = build_tinydb_service(universes, PositionScope.USER, store=store, log=log)
    # From the snapshot, or replaying the log when there is none: the same advice.
    with pytest.raises(StartupError, match=r"position scope 'user'.*start with the scope the.* opened under"):
        netting.start()


def test_a_failed_log_append_records_nothing_and_the_order_can_be_retried() -> None:
    log = FlakyOrderLog()
    service, store, _ = build_tinydb_service(ONE_USER, log=log)
    service.start()
    log.failures = 1
    with pytest.raises(StorageUnavailable):
        place(service, Order("S", "ACC", Side.BUY))
    assert (log.last_sequence(), service.open_positions(), store.load().positions) == (0, [], ())
    retry = place(service, Order("S", "ACC", Side.BUY)).entry
    assert retry.decision.status is OrderStatus.ACCEPTED
    assert retry.sequence == 1


def test_a_failed_snapshot_keeps_the_previous_one_and_the_next_checkpoint_catches_up() -> None:
    store = FlakyPositionStore()
    service, tinydb = service_over(ONE_USER, store, InMemoryOrderLog(), InMemoryTradeLog())
    service.start()
    buy = place(service, Order("S", "ACC", Side.BUY)).entry
    store.failures = 1
    with pytest.raises(StorageUnavailable):
        tinydb.checkpoint()
    assert store.load() == StoredPositions((), 0), "the previous snapshot stands"
    place(service, Order("S", "ACC", Side.BUY))  # rejected
    assert tinydb.checkpoint()
    stored = store.load()
    assert stored.applied_sequence == 2
    assert [p.order_id for p in stored.positions] == [buy.decision.order_id]


def test_a_failed_trade_write_keeps_the_answer_and_is_recorded_once_on_the_next_order() -> None:
    trades, store = FlakyTradeLog(), InMemoryPositionStore()
    service, tinydb = service_over(ONE_USER, store, InMemoryOrderLog(), trades)
    service.start()
    place(service, Order("S", "ACC", Side.BUY))
    trades.failures = 2  # the SELL's own attempt, and the checkpoint's retry
    sell = place(service, Order("S", "ACC", Side.SELL)).entry
    assert sell.decision.status is OrderStatus.ACCEPTED, "the log has the SELL, so its answer stands"
    assert trades.trades == []
    with pytest.raises(StorageUnavailable, match="trades up to order #2 are not written yet"):
        tinydb.checkpoint()
    assert store.load().applied_sequence == 0, "no snapshot runs ahead of the trades"
    place(service, Order("S", "INFY", Side.BUY))
    assert [(sequence, t.buy_order_id, t.sell_order_id) for sequence, t in trades.trades] == [(2, "o1", "o2")]
    assert tinydb.checkpoint() and store.load().applied_sequence == 3


def test_a_start_that_replayed_orders_takes_a_snapshot_without_waiting_for_the_interval() -> None:
    store, log = InMemoryPositionStore(), InMemoryOrderLog()
    first, _ = service_over(ONE_USER, store, log, InMemoryTradeLog())
    first.start()
    place(first, Order("S", "ACC", Side.BUY))
    place(first, Order("S", "INFY", Side.BUY))
    # A crash before any checkpoint; the next start replays both orders.
    second, restarted = service_over(ONE_USER, store, log, InMemoryTradeLog())
    assert second.start().replayed_orders == 2
    deadline = time.monotonic() + 5
    while store.load().applied_sequence < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.load().applied_sequence == 2, "snapshot taken although neither interval was reached"
    restarted.close()
