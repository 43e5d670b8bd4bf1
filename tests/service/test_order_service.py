"""The order service over in-memory ports: sequencing, recovery, failures, concurrency."""

import logging
import threading
import time
from datetime import UTC, datetime

import pytest

from tests.service.fakes import (
    FlakyOrderLog,
    FlakyPositionStore,
    FlakyTradeLog,
    build_service,
    place,
    service_over,
)
from tests.worked_example import EXPECTED, ORDERS, PROFILE
from trading_orders.adapters.storage.tinydb_store.memory import (
    InMemoryOrderLog,
    InMemoryPositionStore,
    InMemoryTradeLog,
)
from trading_orders.adapters.storage.tinydb_store.parts import StoredPositions
from trading_orders.application import order_service
from trading_orders.application.errors import (
    CorruptStore,
    IdempotencyKeyReused,
    ServiceNotStarted,
    StartupError,
    StorageUnavailable,
)
from trading_orders.application.order_service import PlacedOrder
from trading_orders.domain.model import Order, OrderStatus, PositionScope, Side

ONE_USER = {"U1": {"S": ["ACC", "INFY"]}}


@pytest.mark.parametrize("scope", list(PositionScope))
def test_worked_example_through_the_service(scope: PositionScope) -> None:
    service, _, log = build_service(PROFILE, scope)
    service.start()
    entries = [place(service, Order(s, i, Side(p))).entry for s, i, p in ORDERS]
    answers = [
        (e.decision.status.value, {d.user: d.reason.value if d.reason else None for d in e.decision.decisions})
        for e in entries
    ]
    assert answers == EXPECTED[scope]
    assert [e.sequence for e in entries] == [1, 2, 3, 4]
    assert list(log.entries_after(0)) == entries


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
    service, store, _ = build_service(ONE_USER)
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
    netting, _, _ = build_service(universes, PositionScope.USER, store=store, log=log)
    # From the snapshot, or replaying the log when there is none: the same advice.
    with pytest.raises(StartupError, match=r"position scope 'user'.*start with the scope the.* opened under"):
        netting.start()


def test_a_failed_log_append_records_nothing_and_the_order_can_be_retried() -> None:
    log = FlakyOrderLog()
    service, store, _ = build_service(ONE_USER, log=log)
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


def test_positions_filter_by_user_strategy_and_instrument() -> None:
    service, _, _ = build_service({"U1": {"S": ["ACC", "INFY"], "T": ["ACC"]}, "U2": {"S": ["ACC"]}})
    service.start()
    for strategy, instrument in [("S", "ACC"), ("S", "INFY"), ("T", "ACC")]:
        place(service, Order(strategy, instrument, Side.BUY))
    keys = {(p.user, p.strategy, p.instrument) for p in service.open_positions()}
    assert keys == {("U1", "S", "ACC"), ("U2", "S", "ACC"), ("U1", "S", "INFY"), ("U1", "T", "ACC")}
    assert {p.user for p in service.open_positions(strategy="S", instrument="ACC")} == {"U1", "U2"}
    assert [(p.strategy, p.instrument) for p in service.open_positions(user="U1", strategy="T")] == [("T", "ACC")]
    assert service.open_positions(user="nobody") == []


def test_positions_outside_the_profile_are_kept_and_reported() -> None:
    first, store, log = build_service(ONE_USER)
    first.start()
    place(first, Order("S", "ACC", Side.BUY))
    second, _, _ = build_service({"U1": {"OTHER": ["ACC"]}}, store=store, log=log)
    report = second.start()
    assert [p.instrument for p in report.positions_outside_profile] == ["ACC"]
    assert len(second.open_positions()) == 1


def test_orders_before_start_are_refused() -> None:
    service, _, _ = build_service(ONE_USER)
    with pytest.raises(ServiceNotStarted):
        place(service, Order("S", "ACC", Side.BUY))


def test_a_retry_with_the_same_key_and_order_replays_the_recorded_answer() -> None:
    service, _, log = build_service(ONE_USER)
    service.start()
    first = place(service, Order("S", "ACC", Side.BUY), idempotency_key="k-1")
    retry = place(service, Order("S", "ACC", Side.BUY), idempotency_key="k-1")
    assert (first.replayed, retry.replayed) == (False, True)
    assert retry.entry == first.entry
    assert retry.entry.decision.status is OrderStatus.ACCEPTED, "the recorded answer, not a new ALREADY_HOLDING"
    assert log.last_sequence() == 1 and len(service.open_positions()) == 1
    other_key = place(service, Order("S", "ACC", Side.BUY), idempotency_key="k-2")
    assert other_key.entry.decision.status is OrderStatus.REJECTED and other_key.entry.sequence == 2


def test_the_same_key_for_a_different_order_is_refused_and_changes_nothing() -> None:
    service, _, log = build_service(ONE_USER)
    service.start()
    place(service, Order("S", "ACC", Side.BUY), idempotency_key="k-1")
    with pytest.raises(IdempotencyKeyReused) as refused:
        place(service, Order("S", "ACC", Side.SELL), idempotency_key="k-1")
    # The recorded order may be another client's: the message shows none of it.
    assert str(refused.value).startswith("this Idempotency-Key was already used for a different order")
    assert not {"o1", "ACC", "BUY", "k-1"} & set(str(refused.value).replace(";", " ").split())
    assert log.last_sequence() == 1


def test_idempotency_keys_survive_a_restart() -> None:
    first, store, log = build_service(ONE_USER)
    first.start()
    original = place(first, Order("S", "INFY", Side.BUY), idempotency_key="k-9").entry
    second, _, _ = build_service(ONE_USER, store=store, log=log)
    second.start()
    assert place(second, Order("S", "INFY", Side.BUY), idempotency_key="k-9") == PlacedOrder(original, True)


def test_concurrent_retries_of_one_key_are_decided_once() -> None:
    service, _, log = build_service(ONE_USER)
    service.start()
    barrier = threading.Barrier(20)
    placed: list[PlacedOrder] = []

    def retry() -> None:
        barrier.wait()
        placed.append(place(service, Order("S", "ACC", Side.BUY), idempotency_key="same"))

    threads = [threading.Thread(target=retry) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert log.last_sequence() == 1
    assert {p.entry.decision.order_id for p in placed} == {"o1"}
    assert sorted(p.replayed for p in placed) == [False] + [True] * 19


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


def test_received_times_never_go_back_even_when_the_clock_does() -> None:
    class SteppingBack:
        def __init__(self) -> None:
            self.readings = [datetime(2026, 11, 24, 9, 15, s, tzinfo=UTC) for s in (10, 5, 12)]

        def now(self) -> datetime:
            return self.readings.pop(0)

    service, _ = service_over(
        ONE_USER, InMemoryPositionStore(), InMemoryOrderLog(), InMemoryTradeLog(), clock=SteppingBack()
    )
    service.start()
    times = [place(service, Order("S", "ACC", Side.BUY)).entry.decision.received_at.second for _ in range(3)]
    assert times == [10, 10, 12]


def test_orders_are_logged_one_line_each_at_debug_and_summarized_at_info(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, _, _ = build_service(ONE_USER)
    service.start()
    with caplog.at_level(logging.INFO, logger="trading_orders.application.order_service"):
        place(service, Order("S", "ACC", Side.BUY))
        monkeypatch.setattr(order_service, "SUMMARY_EVERY_SECONDS", 0.0)
        place(service, Order("S", "ACC", Side.BUY))
    messages = [r.getMessage() for r in caplog.records if r.name == "trading_orders.application.order_service"]
    assert not any(" -> " in m for m in messages), "no per-order line at INFO"
    assert any(
        m.startswith("2 orders in the last ") and "1 accepted, 1 rejected; order log at #2" in m for m in messages
    )
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="trading_orders.application.order_service"):
        place(service, Order("S", "INFY", Side.BUY))
    assert any("o3 #3 S INFY BUY -> ACCEPTED [U1: ACCEPTED]" in r.getMessage() for r in caplog.records)


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
