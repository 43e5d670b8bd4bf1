"""Operator controls decided by the pure domain core: states, their precedence, limits, rates, flatten."""

from datetime import UTC, datetime, timedelta

import pytest

from trading_orders.domain.controls import (
    DESK,
    NO_CONTROLS,
    ControlAction,
    ControlChange,
    ControlLogEntry,
    Controls,
    ControlScope,
    Flatten,
    RateBucket,
    RateLimit,
    TradingState,
)
from trading_orders.domain.model import (
    DomainError,
    Order,
    OrderDecision,
    Position,
    PositionScope,
    RejectReason,
    Side,
)
from trading_orders.domain.portfolio import Portfolio, PortfolioSlice
from trading_orders.domain.profile import Profile

T0 = datetime(2026, 12, 7, 9, 15, tzinfo=UTC)
ANN, BOB = "Ann", "Bob"
PROFILE = Profile(
    {
        ANN: {"ALPHA": ["INFY", "ACC", "TCS"], "BETA": ["INFY", "ACC"]},
        BOB: {"ALPHA": ["INFY", "ACC", "TCS"]},
    }
)


def change(controls: Controls, action: ControlAction, sequence: int, reason: str = "why") -> Controls:
    entry = ControlLogEntry(sequence, ControlChange(f"c{sequence}", T0, "cli", reason, action))
    return controls.with_entry(entry)


def halt(controls: Controls, scope: ControlScope, state: TradingState, sequence: int = 1) -> Controls:
    return change(controls, controls.set_state(scope, state), sequence)


def decide(
    controls: Controls,
    order: Order,
    positions: tuple[Position, ...] = (),
    counts: dict[ControlScope, int] | None = None,
    at: datetime = T0,
    bucket: RateBucket | None = None,
    scope: PositionScope = PositionScope.STRATEGY,
) -> OrderDecision:
    portfolio = PortfolioSlice(scope, positions, controls, counts, bucket)
    return portfolio.decide(order, PROFILE, "o1", at)


def reasons(decision: OrderDecision) -> dict[str, str | None]:
    return {d.user: d.reason.value if d.reason else None for d in decision.decisions}


def held(user: str, strategy: str, instrument: str, order_id: str = "b1") -> Position:
    return Position(user, strategy, instrument, order_id, T0 - timedelta(minutes=5))


BUY = Order("ALPHA", "INFY", Side.BUY)
SELL = Order("ALPHA", "INFY", Side.SELL)


def test_no_controls_decide_as_the_rules_alone() -> None:
    assert decide(NO_CONTROLS, BUY) == Portfolio(PositionScope.STRATEGY).decide(BUY, PROFILE, "o1", T0)


@pytest.mark.parametrize("scope", [DESK, ControlScope(strategy="ALPHA")])
def test_a_halted_desk_or_strategy_refuses_the_whole_order_and_says_so_for_every_user(scope: ControlScope) -> None:
    controls = halt(NO_CONTROLS, scope, TradingState.HALTED)
    for order in (BUY, SELL):
        decision = decide(controls, order, (held(ANN, "ALPHA", "INFY"),))
        assert decision.reason is RejectReason.TRADING_HALTED
        assert reasons(decision) == {ANN: "TRADING_HALTED", BOB: "TRADING_HALTED"}


def test_a_halt_of_another_strategy_leaves_this_one_alone() -> None:
    controls = halt(NO_CONTROLS, ControlScope(strategy="BETA"), TradingState.HALTED)
    decision = decide(controls, BUY)
    assert decision.reason is None
    assert reasons(decision) == {ANN: None, BOB: None}


def test_a_reducing_strategy_refuses_a_buy_as_a_whole_and_decides_a_sell_by_the_rules() -> None:
    controls = halt(NO_CONTROLS, ControlScope(strategy="ALPHA"), TradingState.REDUCING)
    buy = decide(controls, BUY)
    assert buy.reason is RejectReason.REDUCE_ONLY
    assert reasons(buy) == {ANN: "REDUCE_ONLY", BOB: "REDUCE_ONLY"}
    sell = decide(controls, SELL, (held(ANN, "ALPHA", "INFY"),))
    assert sell.reason is None
    assert reasons(sell) == {ANN: None, BOB: "NO_OPEN_POSITION"}


def test_a_halted_user_is_refused_while_the_others_trade() -> None:
    controls = halt(NO_CONTROLS, ControlScope(user=ANN), TradingState.HALTED)
    decision = decide(controls, BUY)
    assert decision.reason is None
    assert reasons(decision) == {ANN: "TRADING_HALTED", BOB: None}


def test_a_users_strategy_state_covers_that_strategy_only() -> None:
    controls = halt(NO_CONTROLS, ControlScope(ANN, "BETA"), TradingState.REDUCING)
    assert reasons(decide(controls, Order("BETA", "INFY", Side.BUY))) == {ANN: "REDUCE_ONLY"}
    assert reasons(decide(controls, BUY)) == {ANN: None, BOB: None}


def test_the_most_restrictive_state_that_covers_a_user_decides() -> None:
    controls = halt(NO_CONTROLS, DESK, TradingState.REDUCING, 1)
    controls = halt(controls, ControlScope(user=BOB), TradingState.HALTED, 2)
    # The desk refuses every BUY as a whole; a SELL is refused for the halted user only.
    assert decide(controls, BUY).reason is RejectReason.REDUCE_ONLY
    sell = decide(controls, SELL, (held(ANN, "ALPHA", "INFY"), held(BOB, "ALPHA", "INFY")))
    assert reasons(sell) == {ANN: None, BOB: "TRADING_HALTED"}


def test_a_state_latches_until_set_again_and_active_clears_it() -> None:
    controls = halt(NO_CONTROLS, ControlScope(user=ANN), TradingState.HALTED, 1)
    controls = halt(controls, ControlScope(user=BOB), TradingState.REDUCING, 2)
    assert [(s.scope.user, s.state, s.sequence) for s in controls.states()] == [
        (ANN, TradingState.HALTED, 1),
        (BOB, TradingState.REDUCING, 2),
    ]
    controls = halt(controls, ControlScope(user=ANN), TradingState.ACTIVE, 3)
    assert controls.state_at(ControlScope(user=ANN)) is TradingState.ACTIVE
    assert [s.scope.user for s in controls.states()] == [BOB]
    assert reasons(decide(controls, BUY)) == {ANN: None, BOB: "REDUCE_ONLY"}


def test_a_state_change_says_what_it_changes_from() -> None:
    controls = halt(NO_CONTROLS, DESK, TradingState.REDUCING)
    step = controls.set_state(DESK, TradingState.HALTED)
    assert (step.before, step.after) == (TradingState.REDUCING, TradingState.HALTED)


def test_a_position_limit_refuses_the_buy_that_would_exceed_it_and_never_a_sell() -> None:
    user = ControlScope(user=ANN)
    controls = change(NO_CONTROLS, NO_CONTROLS.set_position_limit(user, 2), 1)
    assert reasons(decide(controls, BUY, counts={user: 1})) == {ANN: None, BOB: None}
    assert reasons(decide(controls, BUY, counts={user: 2})) == {ANN: "POSITION_LIMIT", BOB: None}
    sell = decide(controls, SELL, (held(ANN, "ALPHA", "INFY"),), counts={user: 2})
    assert reasons(sell) == {ANN: None, BOB: "NO_OPEN_POSITION"}


def test_a_users_strategy_limit_counts_that_strategys_positions_only() -> None:
    beta = ControlScope(ANN, "BETA")
    controls = change(NO_CONTROLS, NO_CONTROLS.set_position_limit(beta, 1), 1)
    assert controls.count_scopes(ANN, "ALPHA") == ()
    assert controls.count_scopes(ANN, "BETA") == (beta,)
    assert reasons(decide(controls, Order("BETA", "ACC", Side.BUY), counts={beta: 1})) == {ANN: "POSITION_LIMIT"}
    assert reasons(decide(controls, BUY, counts={beta: 1})) == {ANN: None, BOB: None}


def test_a_limit_of_zero_refuses_every_buy_and_removing_it_lets_them_in() -> None:
    user = ControlScope(user=BOB)
    controls = change(NO_CONTROLS, NO_CONTROLS.set_position_limit(user, 0), 1)
    assert reasons(decide(controls, BUY, counts={user: 0})) == {ANN: None, BOB: "POSITION_LIMIT"}
    controls = change(controls, controls.set_position_limit(user, None), 2)
    assert controls.is_empty
    assert reasons(decide(controls, BUY)) == {ANN: None, BOB: None}


def test_a_state_refuses_before_a_limit_and_a_limit_before_the_rules() -> None:
    user = ControlScope(user=ANN)
    controls = change(NO_CONTROLS, NO_CONTROLS.set_position_limit(user, 1), 1)
    # Already holding INFY and at the limit: the limit is the reason given.
    assert reasons(decide(controls, BUY, (held(ANN, "ALPHA", "INFY"),), {user: 1}))[ANN] == "POSITION_LIMIT"
    controls = halt(controls, user, TradingState.REDUCING, 2)
    assert reasons(decide(controls, BUY, counts={user: 1}))[ANN] == "REDUCE_ONLY"


def test_limits_are_refused_where_they_make_no_sense() -> None:
    with pytest.raises(DomainError, match="for a user"):
        NO_CONTROLS.set_position_limit(ControlScope(strategy="ALPHA"), 3)
    with pytest.raises(DomainError, match="0 or more"):
        NO_CONTROLS.set_position_limit(ControlScope(user=ANN), -1)
    with pytest.raises(DomainError, match="positive"):
        RateLimit(0.0, 5)
    with pytest.raises(DomainError, match="positive"):
        RateLimit(float("nan"), 5)
    with pytest.raises(DomainError, match="burst"):
        RateLimit(10.0, 0)


def rate_limited(per_second: float, burst: int) -> Controls:
    return change(NO_CONTROLS, NO_CONTROLS.set_rate_limit("ALPHA", RateLimit(per_second, burst)), 1)


def place(slice_: PortfolioSlice, at: datetime) -> OrderDecision:
    decision = slice_.decide(BUY, PROFILE, f"o-{at.timestamp()}", at)
    slice_.apply(decision)
    return decision


def test_a_rate_limit_admits_a_burst_then_refuses_the_whole_order_until_tokens_return() -> None:
    controls = rate_limited(per_second=2.0, burst=3)
    bucket: RateBucket | None = None
    answers = []
    for at in (T0, T0, T0, T0, T0 + timedelta(seconds=0.5)):
        slice_ = PortfolioSlice(PositionScope.STRATEGY, (), controls, None, bucket)
        answers.append(place(slice_, at).reason)
        applied = slice_.take_unsaved()
        bucket = applied[0].rate_bucket or bucket
    assert answers == [None, None, None, RejectReason.RATE_LIMITED, None]


def test_a_rate_limited_order_has_no_per_user_decisions_and_takes_no_token() -> None:
    controls = rate_limited(per_second=1.0, burst=1)
    empty = RateBucket(0.0, T0)
    slice_ = PortfolioSlice(PositionScope.STRATEGY, (), controls, None, empty)
    decision = place(slice_, T0)
    assert (decision.reason, decision.decisions) == (RejectReason.RATE_LIMITED, ())
    assert slice_.take_unsaved()[0].rate_bucket is None


def test_a_bucket_refills_at_its_rate_up_to_its_burst_and_ignores_a_clock_stepping_back() -> None:
    limit = RateLimit(per_second=10.0, burst=5)
    bucket = RateBucket(0.0, T0)
    assert bucket.tokens_at(T0 + timedelta(seconds=0.2), limit) == pytest.approx(2.0)
    assert bucket.tokens_at(T0 + timedelta(seconds=60), limit) == 5.0
    assert bucket.tokens_at(T0 - timedelta(seconds=60), limit) == 0.0


def test_a_rate_limit_of_another_strategy_does_not_count_this_ones_orders() -> None:
    controls = change(NO_CONTROLS, NO_CONTROLS.set_rate_limit("BETA", RateLimit(1.0, 1)), 1)
    slice_ = PortfolioSlice(PositionScope.STRATEGY, (), controls, None, RateBucket(0.0, T0))
    assert place(slice_, T0).reason is None
    assert slice_.take_unsaved()[0].rate_bucket is None


@pytest.mark.parametrize("scope", list(PositionScope))
def test_flatten_closes_every_open_position_in_its_scope_and_no_other(scope: PositionScope) -> None:
    portfolio = Portfolio(
        scope, (held(ANN, "ALPHA", "INFY", "b1"), held(ANN, "BETA", "ACC", "b2"), held(BOB, "ALPHA", "INFY", "b3"))
    )
    alpha_ann = ControlScope(ANN, "ALPHA")
    flatten = NO_CONTROLS.flatten(alpha_ann, portfolio.in_scope(alpha_ann), TradingState.HALTED)
    step = ControlChange("f1", T0, "cli", "feed gone wrong", flatten)
    closed = portfolio.apply_control(step)
    assert [p.order_id for p in closed.closed] == ["b1"]
    assert [(t.buy_order_id, t.sell_order_id, t.sold_at) for t in closed.trades] == [("b1", "f1", T0)]
    assert sorted(p.order_id for p in portfolio) == ["b2", "b3"]
    assert portfolio.open_count(ControlScope(user=ANN)) == 1
    assert portfolio.open_count(alpha_ann) == 0
    after = NO_CONTROLS.with_entry(ControlLogEntry(7, step))
    assert after.state_at(alpha_ann) is TradingState.HALTED
    assert after.states()[0].reason == "feed gone wrong"


def test_a_flatten_that_does_not_fit_the_portfolio_changes_nothing() -> None:
    portfolio = Portfolio(PositionScope.STRATEGY, (held(ANN, "ALPHA", "INFY", "b1"),))
    ghost = NO_CONTROLS.flatten(DESK, (held(ANN, "ALPHA", "INFY", "b1"), held(BOB, "ALPHA", "ACC", "b9")))
    with pytest.raises(DomainError, match="not open"):
        portfolio.apply_control(ControlChange("f1", T0, "cli", "", ghost))
    assert [p.order_id for p in portfolio] == ["b1"]


def test_a_flatten_cannot_close_a_position_outside_its_scope() -> None:
    with pytest.raises(DomainError, match="cannot close"):
        Flatten(ControlScope(user=BOB), (held(ANN, "ALPHA", "INFY"),))


def test_open_counts_follow_every_buy_sell_and_merge() -> None:
    portfolio = Portfolio(PositionScope.STRATEGY)
    for number, instrument in enumerate(("INFY", "ACC", "TCS"), start=1):
        portfolio.apply(portfolio.decide(Order("ALPHA", instrument, Side.BUY), PROFILE, f"b{number}", T0))
    portfolio.apply(portfolio.decide(Order("BETA", "ACC", Side.BUY), PROFILE, "b4", T0))
    assert portfolio.open_count(ControlScope(user=ANN)) == 4
    assert portfolio.open_count(ControlScope(ANN, "ALPHA")) == 3
    assert portfolio.open_count(ControlScope(user=BOB)) == 3
    portfolio.apply(portfolio.decide(Order("ALPHA", "ACC", Side.SELL), PROFILE, "s1", T0))
    assert portfolio.open_count(ControlScope(user=ANN)) == 3
    assert portfolio.open_count(ControlScope(user=BOB)) == 2


def test_a_control_change_checks_what_it_is_given() -> None:
    with pytest.raises(DomainError, match="time zone"):
        ControlChange("c1", datetime(2026, 12, 7), "cli", "", NO_CONTROLS.set_state(DESK, TradingState.HALTED))
    with pytest.raises(DomainError, match="at most"):
        ControlChange("c1", T0, "cli", "x" * 501, NO_CONTROLS.set_state(DESK, TradingState.HALTED))
    with pytest.raises(DomainError, match="non-empty name"):
        ControlScope(user=" Ann")
