"""The operator controls' contract for every order store (memory, TinyDB files, SQLite, PostgreSQL), written once."""

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from tests.integration import test_order_store_contract as contract
from tests.integration.test_order_store_contract import DURABLE, OpenedStore, OpenStore
from tests.service.fakes import CountingIds, FixedProfile, SteppingClock, place
from trading_orders.application.errors import IdempotencyKeyReused
from trading_orders.application.operator_controls import OperatorControls
from trading_orders.application.order_history import HistoryFilter
from trading_orders.application.order_service import OrderService
from trading_orders.domain.controls import (
    DESK,
    NO_CONTROLS,
    ControlScope,
    Flatten,
    RateLimit,
    TradingState,
)
from trading_orders.domain.model import Order, OrderStatus, PositionScope, RejectReason, Side

# The order stores' fixture, parametrized over every kind of store.
open_store = contract.open_store

INSTRUMENTS = ["I1", "I2", "I3", "I4"]
# Ann runs two strategies, Bob one of them: a scope covers some users and not others.
PROFILE = {"Ann": {"ALPHA": INSTRUMENTS, "BETA": INSTRUMENTS}, "Bob": {"ALPHA": INSTRUMENTS}}
ANN, BOB, ALPHA, BETA = ControlScope(user="Ann"), ControlScope(user="Bob"), "ALPHA", "BETA"

Done = TypeVar("Done")


def run(change: Coroutine[Any, Any, Done]) -> Done:
    """Run one control change to its end, on an event loop of its own as an HTTP request's would be."""
    return asyncio.run(change)


def operator(opened: OpenedStore, prefix: str = "c-") -> OperatorControls:
    """The operator controls over ``opened``'s store, with change ids after ``prefix``."""
    return OperatorControls(opened.store, SteppingClock(), CountingIds(prefix), FixedProfile(PROFILE).load)


def buy(strategy: str, instrument: str) -> Order:
    return Order(strategy, instrument, Side.BUY)


def reasons(service: OrderService, order: Order) -> dict[str, str | None]:
    """Place ``order``: each user's reason, None for an accepted user."""
    decision = place(service, order).entry.decision
    return {d.user: None if d.reason is None else d.reason.value for d in decision.decisions}


def test_a_halt_governs_the_orders_sequenced_after_it_and_none_before(open_store: OpenStore) -> None:
    service, opened = open_store(profile=PROFILE)
    controls = operator(opened)
    before = place(service, buy(ALPHA, "I1")).entry
    halt = run(controls.set_state(ControlScope(strategy=ALPHA), TradingState.HALTED, "runaway loop", "cli")).entry
    halted = place(service, buy(ALPHA, "I2")).entry
    # A halt of the strategy refuses the order as a whole, and says so for every user too.
    assert halted.decision.reason is RejectReason.TRADING_HALTED
    assert {d.reason for d in halted.decision.decisions} == {RejectReason.TRADING_HALTED}
    assert reasons(service, buy(BETA, "I2")) == {"Ann": None}
    run(controls.set_state(ControlScope(strategy=ALPHA), TradingState.ACTIVE, "fixed", "cli"))
    assert reasons(service, buy(ALPHA, "I2")) == {"Ann": None, "Bob": None}
    assert opened.store.controls() == NO_CONTROLS
    # One log, one sequence: the control changes among the orders, in the order they were made.
    log = list(opened.order_log.entries_after(0))
    assert [e.sequence for e in log] == [1, 2, 3, 4, 5, 6]
    assert [type(e).__name__ for e in log] == [
        "OrderLogEntry",
        "ControlLogEntry",
        "OrderLogEntry",
        "OrderLogEntry",
        "ControlLogEntry",
        "OrderLogEntry",
    ]
    assert log[0] == before and log[1] == halt and log[2] == halted
    assert [e.sequence for _, e in opened.order_log.newest_first()] == [6, 5, 4, 3, 2, 1]
    assert opened.order_log.find_by_order_id(halt.change.change_id) == halt
    # The order history lists orders only; a change's id names no order.
    assert [e.sequence for e in opened.history.orders(HistoryFilter(), limit=10).items] == [6, 4, 3, 1]
    assert opened.history.order(halt.change.change_id) is None
    assert opened.store.state().last_sequence == 6


@pytest.mark.parametrize("open_store", DURABLE, indirect=True)
def test_controls_survive_reopening_and_replay_the_same(open_store: OpenStore) -> None:
    service, opened = open_store(profile=PROFILE)
    controls = operator(opened)
    place(service, buy(ALPHA, "I1"))
    run(controls.set_state(ControlScope("Ann", ALPHA), TradingState.REDUCING, "review", "cli"))
    run(controls.set_state(DESK, TradingState.HALTED, "open", "cli"))
    run(controls.set_state(DESK, TradingState.ACTIVE, "open", "cli"))
    run(controls.set_position_limit(BOB, 1, "small account", "cli"))
    run(controls.set_rate_limit(BETA, RateLimit(5.0, 2), "noisy", "cli"))
    in_force = opened.store.controls()
    assert in_force != NO_CONTROLS

    _, reopened = open_store(profile=PROFILE)
    assert reopened.store.controls() == in_force
    after = OrderService(
        FixedProfile(PROFILE), reopened.store, SteppingClock(), CountingIds("r-"), PositionScope.STRATEGY
    )
    after.start()
    # Ann's strategy reduces only, Bob is at his limit: both still hold after reopening.
    assert reasons(after, buy(ALPHA, "I2")) == {"Ann": "REDUCE_ONLY", "Bob": "POSITION_LIMIT"}
    assert reasons(after, Order(ALPHA, "I1", Side.SELL)) == {"Ann": None, "Bob": None}
    assert reasons(after, buy(ALPHA, "I2")) == {"Ann": "REDUCE_ONLY", "Bob": None}


@pytest.mark.parametrize("scope", list(PositionScope))
def test_a_flatten_closes_every_position_of_its_scope_with_a_trade_and_no_other(
    open_store: OpenStore, scope: PositionScope
) -> None:
    service, opened = open_store(scope, profile=PROFILE)
    controls = operator(opened)
    place(service, buy(ALPHA, "I1"))
    place(service, buy(BETA, "I2"))
    recorded = run(controls.flatten(ANN, TradingState.HALTED, "account closed", "cli", idempotency_key="f-1"))
    action = recorded.entry.change.action
    assert isinstance(action, Flatten)
    assert sorted((p.strategy, p.instrument) for p in action.closed) == [(ALPHA, "I1"), (BETA, "I2")]
    # Bob's position is outside the scope: it stays open.
    assert [(p.user, p.instrument) for p in service.open_positions()] == [("Bob", "I1")]
    trades = opened.history.trades(HistoryFilter(), limit=10).items
    assert sorted((t.user, t.instrument, t.sell_order_id) for t in trades) == [
        ("Ann", "I1", recorded.entry.change.change_id),
        ("Ann", "I2", recorded.entry.change.change_id),
    ]
    assert all(t.sold_at == recorded.entry.change.at for t in trades)
    # The same step halted Ann: no BUY slips in after it.
    assert reasons(service, buy(ALPHA, "I3")) == {"Ann": "TRADING_HALTED", "Bob": None}
    # A retry with its key closes nothing more.
    again = run(controls.flatten(ANN, TradingState.HALTED, "account closed", "cli", idempotency_key="f-1"))
    assert again.replayed and again.entry == recorded.entry
    flat_alpha = run(controls.flatten(ControlScope(strategy=ALPHA), None, "strategy off", "cli")).entry
    assert service.open_positions() == []
    assert len(opened.history.trades(HistoryFilter(), limit=10).items) == 4
    assert opened.store.state().open_positions == 0
    assert opened.order_log.find_by_order_id(flat_alpha.change.change_id) == flat_alpha


def test_position_limits_refuse_a_buy_beyond_them_per_user_and_per_strategy(open_store: OpenStore) -> None:
    service, opened = open_store(profile=PROFILE)
    controls = operator(opened)
    run(controls.set_position_limit(ANN, 2, "two at most", "cli"))
    run(controls.set_position_limit(ControlScope("Bob", ALPHA), 1, "one in ALPHA", "cli"))
    assert reasons(service, buy(ALPHA, "I1")) == {"Ann": None, "Bob": None}
    assert reasons(service, buy(ALPHA, "I2")) == {"Ann": None, "Bob": "POSITION_LIMIT"}
    # Ann's limit counts her positions in every strategy.
    assert reasons(service, buy(BETA, "I3")) == {"Ann": "POSITION_LIMIT"}
    # A SELL is never refused by a limit, and frees a place.
    assert reasons(service, Order(ALPHA, "I1", Side.SELL)) == {"Ann": None, "Bob": None}
    assert reasons(service, buy(BETA, "I3")) == {"Ann": None}
    assert reasons(service, buy(ALPHA, "I4")) == {"Ann": "POSITION_LIMIT", "Bob": None}
    run(controls.set_position_limit(ANN, None, "lifted", "cli"))
    assert reasons(service, buy(BETA, "I4")) == {"Ann": None}
    assert len([p for p in service.open_positions() if p.user == "Ann"]) == 3


def test_a_rate_limit_refuses_the_orders_beyond_its_bucket_as_a_whole(open_store: OpenStore) -> None:
    service, opened = open_store(profile=PROFILE)
    controls = operator(opened)
    # A bucket of two, refilled by one order each ten seconds; the service's clock steps a second a reading.
    run(controls.set_rate_limit(ALPHA, RateLimit(0.1, 2), "slow down", "cli"))
    first, second, third = (place(service, buy(ALPHA, instrument)).entry for instrument in ("I1", "I2", "I3"))
    assert [e.decision.status for e in (first, second)] == [OrderStatus.ACCEPTED] * 2
    assert (third.decision.status, third.decision.reason, third.decision.decisions) == (
        OrderStatus.REJECTED,
        RejectReason.RATE_LIMITED,
        (),
    )
    # Logged like every order; another strategy is not limited.
    assert opened.order_log.find_by_order_id(third.decision.order_id) == third
    assert reasons(service, buy(BETA, "I4")) == {"Ann": None}
    run(controls.set_rate_limit(ALPHA, None, "enough", "cli"))
    assert reasons(service, buy(ALPHA, "I4")) == {"Ann": None, "Bob": None}


def test_a_control_change_retried_with_its_idempotency_key_is_recorded_once(open_store: OpenStore) -> None:
    service, opened = open_store(profile=PROFILE)
    controls = operator(opened)
    first = run(controls.set_state(BOB, TradingState.HALTED, "call him", "cli", idempotency_key="k-1"))
    again = run(controls.set_state(BOB, TradingState.HALTED, "call him", "cli", idempotency_key="k-1"))
    assert not first.replayed and again.replayed and again.entry == first.entry
    assert opened.store.state().last_sequence == 1
    # The key names that change: another request, a control change's or an order's, is refused.
    with pytest.raises(IdempotencyKeyReused):
        run(controls.set_state(BOB, TradingState.REDUCING, "call him", "cli", idempotency_key="k-1"))
    with pytest.raises(IdempotencyKeyReused):
        place(service, buy(ALPHA, "I1"), idempotency_key="k-1")
    assert opened.store.state().last_sequence == 1
    assert opened.store.controls().user_state("Bob", ALPHA) is TradingState.HALTED
