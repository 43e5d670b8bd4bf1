"""The order service over fake ports: deciding, sequencing, idempotency, failures, concurrency.

The store is FakeOrderStore, the OrderStore port over a list and a dict; what
each real store does to keep its promises is tested against it in
tests/integration (the contract suite, and the TinyDB store over its parts).
"""

import logging
import threading
from datetime import UTC, datetime

import pytest

from tests.service.fakes import build_service, place
from tests.worked_example import EXPECTED, ORDERS, PROFILE
from trading_orders.application import order_service
from trading_orders.application.errors import IdempotencyKeyReused, ServiceNotStarted, StorageUnavailable
from trading_orders.application.order_service import PlacedOrder
from trading_orders.domain.model import Order, OrderStatus, PositionScope, Side

ONE_USER = {"U1": {"S": ["ACC", "INFY"]}}


@pytest.mark.parametrize("scope", list(PositionScope))
def test_worked_example_through_the_service(scope: PositionScope) -> None:
    service, store = build_service(PROFILE, scope)
    service.start()
    entries = [place(service, Order(s, i, Side(p))).entry for s, i, p in ORDERS]
    answers = [
        (e.decision.status.value, {d.user: d.reason.value if d.reason else None for d in e.decision.decisions})
        for e in entries
    ]
    assert answers == EXPECTED[scope]
    assert [e.sequence for e in entries] == [1, 2, 3, 4]
    assert list(store.entries_after(0)) == entries


def test_a_failed_commit_records_nothing_and_the_order_can_be_retried() -> None:
    service, store = build_service(ONE_USER)
    service.start()
    store.commit_failures = 1
    with pytest.raises(StorageUnavailable):
        place(service, Order("S", "ACC", Side.BUY))
    assert (store.state().last_sequence, service.open_positions()) == (0, [])
    retry = place(service, Order("S", "ACC", Side.BUY)).entry
    assert retry.decision.status is OrderStatus.ACCEPTED
    assert retry.sequence == 1


def test_positions_filter_by_user_strategy_and_instrument() -> None:
    service, _ = build_service({"U1": {"S": ["ACC", "INFY"], "T": ["ACC"]}, "U2": {"S": ["ACC"]}})
    service.start()
    for strategy, instrument in [("S", "ACC"), ("S", "INFY"), ("T", "ACC")]:
        place(service, Order(strategy, instrument, Side.BUY))
    keys = {(p.user, p.strategy, p.instrument) for p in service.open_positions()}
    assert keys == {("U1", "S", "ACC"), ("U2", "S", "ACC"), ("U1", "S", "INFY"), ("U1", "T", "ACC")}
    assert {p.user for p in service.open_positions(strategy="S", instrument="ACC")} == {"U1", "U2"}
    assert [(p.strategy, p.instrument) for p in service.open_positions(user="U1", strategy="T")] == [("T", "ACC")]
    assert service.open_positions(user="nobody") == []


def test_positions_outside_the_profile_are_kept_and_reported() -> None:
    first, store = build_service(ONE_USER)
    first.start()
    place(first, Order("S", "ACC", Side.BUY))
    second, _ = build_service({"U1": {"OTHER": ["ACC"]}}, store=store)
    report = second.start()
    assert [p.instrument for p in report.positions_outside_profile] == ["ACC"]
    assert len(second.open_positions()) == 1


def test_positions_a_new_profile_orphans_are_summed_up_in_one_warning_and_listed_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wide = {f"U{n}": {f"S{k}": ["ACC", "INFY", "TCS"] for k in range(3)} for n in range(3)}
    first, store = build_service(wide)
    first.start()
    for strategy in ("S0", "S1", "S2"):
        for instrument in ("ACC", "INFY", "TCS"):
            place(first, Order(strategy, instrument, Side.BUY))
    # A newly drawn profile: only U0 keeps S0; 24 of the 27 positions lose their strategy.
    second, _ = build_service({"U0": {"S0": ["ACC", "INFY", "TCS"]}}, store=store)
    with caplog.at_level(logging.DEBUG, logger=order_service.__name__):
        second.start()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("24 open positions belong to strategies the profile no longer gives their users (")
    assert "U0 S1: 3, U0 S2: 3, U1 S0: 3 and 5 more)" in warnings[0]
    assert "trading-orders positions --user U --strategy S" in warnings[0]
    detail = [
        r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and "open position" in r.getMessage()
    ]
    assert len(detail) == 24
    assert len(second.open_positions()) == 27


def test_orders_before_start_are_refused() -> None:
    service, _ = build_service(ONE_USER)
    with pytest.raises(ServiceNotStarted):
        place(service, Order("S", "ACC", Side.BUY))


def test_a_retry_with_the_same_key_and_order_replays_the_recorded_answer() -> None:
    service, store = build_service(ONE_USER)
    service.start()
    first = place(service, Order("S", "ACC", Side.BUY), idempotency_key="k-1")
    retry = place(service, Order("S", "ACC", Side.BUY), idempotency_key="k-1")
    assert (first.replayed, retry.replayed) == (False, True)
    assert retry.entry == first.entry
    assert retry.entry.decision.status is OrderStatus.ACCEPTED, "the recorded answer, not a new ALREADY_HOLDING"
    assert store.state().last_sequence == 1 and len(service.open_positions()) == 1
    other_key = place(service, Order("S", "ACC", Side.BUY), idempotency_key="k-2")
    assert other_key.entry.decision.status is OrderStatus.REJECTED and other_key.entry.sequence == 2


def test_the_same_key_for_a_different_order_is_refused_and_changes_nothing() -> None:
    service, store = build_service(ONE_USER)
    service.start()
    place(service, Order("S", "ACC", Side.BUY), idempotency_key="k-1")
    with pytest.raises(IdempotencyKeyReused) as refused:
        place(service, Order("S", "ACC", Side.SELL), idempotency_key="k-1")
    # The recorded order may be another client's: the message shows none of it.
    assert str(refused.value).startswith("this Idempotency-Key was already used for a different order")
    assert not {"o1", "ACC", "BUY", "k-1"} & set(str(refused.value).replace(";", " ").split())
    assert store.state().last_sequence == 1


def test_idempotency_keys_survive_a_restart() -> None:
    first, store = build_service(ONE_USER)
    first.start()
    original = place(first, Order("S", "INFY", Side.BUY), idempotency_key="k-9").entry
    second, _ = build_service(ONE_USER, store=store)
    second.start()
    assert place(second, Order("S", "INFY", Side.BUY), idempotency_key="k-9") == PlacedOrder(original, True)


def test_concurrent_retries_of_one_key_are_decided_once() -> None:
    service, store = build_service(ONE_USER)
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
    assert store.state().last_sequence == 1
    assert {p.entry.decision.order_id for p in placed} == {"o1"}
    assert sorted(p.replayed for p in placed) == [False] + [True] * 19


def test_received_times_never_go_back_even_when_the_clock_does() -> None:
    class SteppingBack:
        def __init__(self) -> None:
            self.readings = [datetime(2026, 11, 24, 9, 15, s, tzinfo=UTC) for s in (10, 5, 12)]

        def now(self) -> datetime:
            return self.readings.pop(0)

    service, _ = build_service(ONE_USER, clock=SteppingBack())
    service.start()
    times = [place(service, Order("S", "ACC", Side.BUY)).entry.decision.received_at.second for _ in range(3)]
    assert times == [10, 10, 12]


def test_orders_are_logged_one_line_each_at_debug_and_summarized_at_info(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, _ = build_service(ONE_USER)
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
