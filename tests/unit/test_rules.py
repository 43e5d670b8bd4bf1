"""The rules table of the SPEC, decided by the pure domain core."""

from datetime import UTC, datetime, timedelta

import pytest

from tests.worked_example import EXPECTED, HOLLAND, OAKLEE, ORDERS, PROFILE
from trading_orders.domain.model import (
    DomainError,
    Order,
    OrderDecision,
    OrderStatus,
    Position,
    PositionScope,
    RejectReason,
    Side,
    Trade,
    UserDecision,
)
from trading_orders.domain.portfolio import ConflictingPositions, Portfolio
from trading_orders.domain.profile import Profile

T0 = datetime(2026, 11, 24, 9, 15, tzinfo=UTC)


def place(portfolio: Portfolio, profile: Profile, order: Order, number: int = 1) -> OrderDecision:
    decision = portfolio.decide(order, profile, f"order-{number}", T0)
    portfolio.apply(decision)
    return decision


def reasons(decision: OrderDecision) -> dict[str, str | None]:
    return {d.user: d.reason.value if d.reason else None for d in decision.decisions}


@pytest.mark.parametrize("scope", list(PositionScope))
def test_worked_example_answers_as_the_spec_says(scope: PositionScope) -> None:
    portfolio, profile = Portfolio(scope), Profile(PROFILE)
    answers = [
        place(portfolio, profile, Order(strategy, instrument, Side(side)), n)
        for n, (strategy, instrument, side) in enumerate(ORDERS, start=1)
    ]
    assert [(a.status.value, reasons(a)) for a in answers] == EXPECTED[scope]


def test_user_scope_sell_from_another_strategy_closes_the_position_it_opened() -> None:
    portfolio, profile = Portfolio(PositionScope.USER), Profile(PROFILE)
    place(portfolio, profile, Order("STRATEGY_B", "MINDA", Side.BUY), 1)
    place(portfolio, profile, Order("STRATEGY_A", "MINDA", Side.SELL), 2)
    assert list(portfolio) == []


def test_user_scope_buy_is_refused_while_another_strategy_holds_the_instrument() -> None:
    profile = Profile({HOLLAND: {"STRATEGY_A": ["GRASIM"], "STRATEGY_B": ["GRASIM"]}})
    portfolio = Portfolio(PositionScope.USER)
    place(portfolio, profile, Order("STRATEGY_A", "GRASIM", Side.BUY), 1)
    second = place(portfolio, profile, Order("STRATEGY_B", "GRASIM", Side.BUY), 2)
    assert reasons(second) == {HOLLAND: "ALREADY_HOLDING"}


def test_strategy_scope_holds_one_instrument_separately_per_strategy() -> None:
    profile = Profile({HOLLAND: {"STRATEGY_A": ["GRASIM"], "STRATEGY_B": ["GRASIM"]}})
    portfolio = Portfolio(PositionScope.STRATEGY)
    place(portfolio, profile, Order("STRATEGY_A", "GRASIM", Side.BUY), 1)
    second = place(portfolio, profile, Order("STRATEGY_B", "GRASIM", Side.BUY), 2)
    third = place(portfolio, profile, Order("STRATEGY_B", "GRASIM", Side.SELL), 3)
    assert second.status is OrderStatus.ACCEPTED and third.status is OrderStatus.ACCEPTED
    assert [(p.strategy, p.order_id) for p in portfolio] == [("STRATEGY_A", "order-1")]


@pytest.mark.parametrize("scope", list(PositionScope))
def test_every_reject_reason_is_given_where_the_rules_say(scope: PositionScope) -> None:
    profile, portfolio = Profile(PROFILE), Portfolio(scope)
    unknown = place(portfolio, profile, Order("STRATEGY_Z", "ACC", Side.BUY))
    assert (unknown.status, unknown.reason, unknown.decisions) == (
        OrderStatus.REJECTED,
        RejectReason.UNKNOWN_STRATEGY,
        (),
    )
    assert reasons(place(portfolio, profile, Order("STRATEGY_D", "INFY", Side.SELL))) == {
        OAKLEE: "INSTRUMENT_NOT_IN_STRATEGY"
    }
    assert reasons(place(portfolio, profile, Order("STRATEGY_D", "ACC", Side.SELL))) == {OAKLEE: "NO_OPEN_POSITION"}
    assert reasons(place(portfolio, profile, Order("STRATEGY_D", "ACC", Side.BUY))) == {OAKLEE: None}
    assert reasons(place(portfolio, profile, Order("STRATEGY_D", "ACC", Side.BUY))) == {OAKLEE: "ALREADY_HOLDING"}
    assert reasons(place(portfolio, profile, Order("STRATEGY_D", "ACC", Side.SELL))) == {OAKLEE: None}


def test_an_order_fans_out_to_every_runner_and_is_accepted_if_one_accepts() -> None:
    profile = Profile({"U1": {"S": ["ACC"]}, "U2": {"S": ["INFY"]}, "U3": {"T": ["ACC"]}})
    decision = place(Portfolio(PositionScope.STRATEGY), profile, Order("S", "ACC", Side.BUY))
    assert decision.status is OrderStatus.ACCEPTED
    assert reasons(decision) == {"U1": None, "U2": "INSTRUMENT_NOT_IN_STRATEGY"}
    assert decision.accepted_users == ("U1",)


def test_a_user_who_does_not_run_the_strategy_gets_no_decision() -> None:
    decision = place(Portfolio(PositionScope.STRATEGY), Profile(PROFILE), Order("STRATEGY_D", "ACC", Side.BUY))
    assert [d.user for d in decision.decisions] == [OAKLEE]


def test_decide_changes_nothing_until_the_decision_is_applied() -> None:
    portfolio, profile = Portfolio(PositionScope.STRATEGY), Profile(PROFILE)
    order = Order("STRATEGY_D", "ACC", Side.BUY)
    first = portfolio.decide(order, profile, "a", T0)
    again = portfolio.decide(order, profile, "b", T0)
    assert first.status is again.status is OrderStatus.ACCEPTED
    change = portfolio.apply(first)
    assert change.opened == (Position(OAKLEE, "STRATEGY_D", "ACC", "a", T0),)
    assert portfolio.held(OAKLEE, "STRATEGY_D", "ACC") == change.opened[0]


def test_applying_a_decision_that_does_not_fit_leaves_the_portfolio_as_it_was() -> None:
    held = Position("U1", "S", "ACC", "old", T0)
    portfolio = Portfolio(PositionScope.STRATEGY, [held])
    buy = OrderDecision(
        "new",
        T0,
        Order("S", "ACC", Side.BUY),
        (UserDecision("U2", OrderStatus.ACCEPTED), UserDecision("U1", OrderStatus.ACCEPTED)),
    )
    with pytest.raises(ConflictingPositions):
        portfolio.apply(buy)
    sell = OrderDecision("sell", T0, Order("S", "INFY", Side.SELL), (UserDecision("U1", OrderStatus.ACCEPTED),))
    with pytest.raises(DomainError):
        portfolio.apply(sell)
    assert list(portfolio) == [held]


def test_user_scope_refuses_two_stored_positions_in_one_instrument() -> None:
    positions = [Position("U1", "S", "ACC", "1", T0), Position("U1", "T", "ACC", "2", T0)]
    assert len(Portfolio(PositionScope.STRATEGY, positions)) == 2
    with pytest.raises(ConflictingPositions, match="same position under position scope 'user'"):
        Portfolio(PositionScope.USER, positions)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Order("", "ACC", Side.BUY), "strategy must be a non-empty name"),
        (lambda: Order("S", " ACC", Side.BUY), "instrument must be a non-empty name"),
        (lambda: Position("U", "S", "ACC", "1", datetime(2026, 1, 1)), "time zone"),
        (lambda: UserDecision("U", OrderStatus.REJECTED), "rejected one must have"),
        (lambda: UserDecision("U", OrderStatus.ACCEPTED, RejectReason.ALREADY_HOLDING), "accepted decision"),
    ],
)
def test_values_refuse_what_the_rules_cannot_mean(build: object, message: str) -> None:
    assert callable(build)
    with pytest.raises(DomainError, match=message):
        build()


@pytest.mark.parametrize("scope", list(PositionScope))
def test_a_sell_that_closes_a_position_makes_a_trade_with_its_holding_time(scope: PositionScope) -> None:
    portfolio, profile = Portfolio(scope), Profile({HOLLAND: {"STRATEGY_B": ["MINDA"], "STRATEGY_A": ["MINDA"]}})
    bought = portfolio.decide(Order("STRATEGY_B", "MINDA", Side.BUY), profile, "buy-1", T0)
    assert portfolio.apply(bought).trades == ()
    sold = portfolio.decide(Order("STRATEGY_B", "MINDA", Side.SELL), profile, "sell-1", T0 + timedelta(minutes=90))
    (trade,) = portfolio.apply(sold).trades
    assert trade == Trade(HOLLAND, "STRATEGY_B", "MINDA", "buy-1", T0, "sell-1", T0 + timedelta(minutes=90))
    assert trade.holding_seconds == 5400.0


def test_a_rejected_sell_makes_no_trade() -> None:
    portfolio, profile = Portfolio(PositionScope.STRATEGY), Profile(PROFILE)
    change = portfolio.apply(portfolio.decide(Order("STRATEGY_A", "GRASIM", Side.SELL), profile, "s", T0))
    assert change.is_empty and change.trades == ()


def test_a_trade_cannot_sell_before_it_buys() -> None:
    with pytest.raises(DomainError, match="sold before it is bought"):
        Trade("U", "S", "ACC", "b", T0, "s", T0 - timedelta(seconds=1))


@pytest.mark.parametrize("scope", list(PositionScope))
def test_a_slice_decides_like_the_whole_and_its_change_merges_back(scope: PositionScope) -> None:
    profile = Profile(PROFILE)
    whole, reference = Portfolio(scope), Portfolio(scope)
    for number, (strategy, instrument, side) in enumerate(ORDERS, start=1):
        order = Order(strategy, instrument, Side(side))
        part = whole.slice(profile.runners_of(strategy), strategy, instrument)
        decision = part.decide(order, profile, f"order-{number}", T0)
        assert decision == reference.decide(order, profile, f"order-{number}", T0)
        part.apply(decision)
        (applied,) = part.take_unsaved()
        assert applied.decision == decision
        whole.merge(applied.change)
        reference.apply(decision)
        assert list(whole) == list(reference)
    assert part.take_unsaved() == [], "taken once"


def test_a_slice_holds_only_the_positions_its_order_can_meet() -> None:
    profile = Profile({"U1": {"S": ["ACC", "INFY"], "T": ["ACC"]}, "U2": {"S": ["ACC"]}})
    whole = Portfolio(PositionScope.STRATEGY)
    for strategy, instrument in [("S", "ACC"), ("S", "INFY"), ("T", "ACC")]:
        whole.apply(whole.decide(Order(strategy, instrument, Side.BUY), profile, f"{strategy}{instrument}", T0))
    part = whole.slice(["U1", "U2"], "S", "ACC")
    assert sorted((p.user, p.strategy, p.instrument) for p in part) == [("U1", "S", "ACC"), ("U2", "S", "ACC")]
    netting = Portfolio(PositionScope.USER, [p for p in whole if p.user == "U1" and p.strategy == "S"])
    met = [(p.strategy, p.instrument) for p in netting.slice(["U1", "U2"], "T", "INFY")]
    assert met == [("S", "INFY")], "netting: the user's position whichever strategy opened it"
