"""Operator controls over fake ports: recorded in the log among the orders, deciding the orders after them."""

import asyncio

import pytest

from tests.service.fakes import CountingIds, FakeOrderStore, SteppingClock, build_service, place
from trading_orders.application.errors import IdempotencyKeyReused, StorageUnavailable, UnknownName
from trading_orders.application.operator_controls import OperatorControls
from trading_orders.application.order_service import OrderService
from trading_orders.domain.controls import DESK, ControlScope, Flatten, RateLimit, TradingState
from trading_orders.domain.model import Order, OrderLogEntry, PositionScope, RejectReason, Side

PROFILE = {"Ann": {"ALPHA": ["INFY", "ACC"], "BETA": ["INFY"]}, "Bob": {"ALPHA": ["INFY", "ACC"]}}


def started(scope: PositionScope = PositionScope.STRATEGY) -> tuple[OrderService, OperatorControls, FakeOrderStore]:
    service, store = build_service(PROFILE, scope)
    service.start()
    return service, OperatorControls(store, SteppingClock(), CountingIds("c-"), service.profile), store


def reasons(entry: OrderLogEntry) -> dict[str, str | None]:
    return {d.user: d.reason.value if d.reason else None for d in entry.decision.decisions}


def test_a_halt_is_an_entry_of_the_log_and_decides_only_the_orders_after_it() -> None:
    service, controls, store = started()
    before = place(service, Order("ALPHA", "INFY", Side.BUY)).entry
    halted = asyncio.run(controls.set_state(ControlScope(user="Ann"), TradingState.HALTED, "margin call", "cli"))
    after = place(service, Order("ALPHA", "ACC", Side.BUY)).entry
    assert [before.sequence, halted.entry.sequence, after.sequence] == [1, 2, 3]
    assert reasons(before) == {"Ann": None, "Bob": None}
    assert reasons(after) == {"Ann": "TRADING_HALTED", "Bob": None}
    assert list(store.entries_after(1)) == [halted.entry, after]
    change = halted.entry.change
    assert (change.operator, change.reason, change.change_id) == ("cli", "margin call", "c-o1")


def test_resume_reopens_trading_and_closes_nothing() -> None:
    service, controls, store = started()
    place(service, Order("ALPHA", "INFY", Side.BUY))
    asyncio.run(controls.set_state(DESK, TradingState.HALTED, "", "cli"))
    assert place(service, Order("ALPHA", "INFY", Side.SELL)).entry.decision.reason is RejectReason.TRADING_HALTED
    assert len(store.open) == 2
    asyncio.run(controls.set_state(DESK, TradingState.ACTIVE, "all clear", "cli"))
    assert controls.in_force().states() == ()
    assert reasons(place(service, Order("ALPHA", "INFY", Side.SELL)).entry) == {"Ann": None, "Bob": None}


@pytest.mark.parametrize("scope", list(PositionScope))
def test_flatten_closes_the_scope_and_halts_it_in_one_entry(scope: PositionScope) -> None:
    service, controls, store = started(scope)
    place(service, Order("ALPHA", "INFY", Side.BUY))
    place(service, Order("ALPHA", "ACC", Side.BUY))
    flattened = asyncio.run(controls.flatten(ControlScope(user="Bob"), TradingState.HALTED, "account closed", "cli"))
    action = flattened.entry.change.action
    assert isinstance(action, Flatten)
    assert sorted(p.instrument for p in action.closed) == ["ACC", "INFY"]
    assert {p.user for p in store.open} == {"Ann"}
    assert [t.sell_order_id for t in flattened.entry.change.trades] == ["c-o1", "c-o1"]
    assert controls.in_force().state_at(ControlScope(user="Bob")) is TradingState.HALTED
    assert reasons(place(service, Order("ALPHA", "INFY", Side.BUY)).entry) == {
        "Ann": "ALREADY_HOLDING",
        "Bob": "TRADING_HALTED",
    }


def test_a_retry_with_its_key_is_answered_from_the_log_and_another_request_is_refused() -> None:
    service, controls, store = started()
    first = asyncio.run(controls.set_state(DESK, TradingState.REDUCING, "open", "cli", "k1"))
    again = asyncio.run(controls.set_state(DESK, TradingState.REDUCING, "open", "cli", "k1"))
    assert (again.entry, again.replayed) == (first.entry, True)
    assert len(store.entries) == 1
    with pytest.raises(IdempotencyKeyReused):
        asyncio.run(controls.set_state(DESK, TradingState.HALTED, "open", "cli", "k1"))
    with pytest.raises(IdempotencyKeyReused):
        place(service, Order("ALPHA", "INFY", Side.BUY), "k1")


def test_a_name_nobody_knows_is_refused_and_nothing_is_recorded() -> None:
    _, controls, store = started()
    with pytest.raises(UnknownName, match="'Anne'"):
        asyncio.run(controls.set_state(ControlScope(user="Anne"), TradingState.HALTED, "", "cli"))
    with pytest.raises(UnknownName, match="'GAMMA'"):
        asyncio.run(controls.set_rate_limit("GAMMA", RateLimit(5.0, 5), "", "cli"))
    assert store.entries == []


def test_a_failed_commit_records_no_control_and_changes_no_decision() -> None:
    service, controls, store = started()
    store.commit_failures = 1
    with pytest.raises(StorageUnavailable):
        asyncio.run(controls.set_state(DESK, TradingState.HALTED, "", "cli"))
    assert store.entries == []
    assert place(service, Order("ALPHA", "INFY", Side.BUY)).entry.decision.reason is None


def test_limits_set_through_the_controls_decide_the_next_orders() -> None:
    service, controls, _ = started()
    asyncio.run(controls.set_position_limit(ControlScope(user="Ann"), 1, "risk", "cli"))
    asyncio.run(controls.set_rate_limit("ALPHA", RateLimit(0.001, 2), "runaway loop", "cli"))
    assert reasons(place(service, Order("ALPHA", "INFY", Side.BUY)).entry) == {"Ann": None, "Bob": None}
    assert reasons(place(service, Order("ALPHA", "ACC", Side.BUY)).entry) == {"Ann": "POSITION_LIMIT", "Bob": None}
    third = place(service, Order("ALPHA", "ACC", Side.SELL)).entry
    assert (third.decision.reason, third.decision.decisions) == (RejectReason.RATE_LIMITED, ())
    in_force = controls.in_force()
    assert [limit.max_open_positions for limit in in_force.position_limits()] == [1]
    assert [r.limit for r in in_force.rate_limits()] == [RateLimit(0.001, 2)]
