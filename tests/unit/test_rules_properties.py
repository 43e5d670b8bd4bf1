"""Properties of the rules over random order streams, checked against an independent model."""

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from trading_orders.domain.model import Order, OrderStatus, PositionScope, Side
from trading_orders.domain.portfolio import Portfolio
from trading_orders.domain.profile import Profile

INSTRUMENTS = ["ACC", "INFY", "TCS"]
STRATEGIES = ["S1", "S2", "S3"]

profiles = st.dictionaries(
    keys=st.sampled_from(["U1", "U2", "U3", "U4"]),
    values=st.dictionaries(
        keys=st.sampled_from(STRATEGIES),
        values=st.lists(st.sampled_from(INSTRUMENTS), min_size=1, max_size=3, unique=True),
        min_size=1,
    ),
    min_size=1,
)
orders = st.lists(
    st.tuples(st.sampled_from([*STRATEGIES, "S9"]), st.sampled_from(INSTRUMENTS), st.sampled_from(list(Side))),
    max_size=60,
)


@settings(max_examples=300)
@given(profile_data=profiles, stream=orders, scope=st.sampled_from(list(PositionScope)))
def test_random_streams_never_double_a_position_and_sell_only_what_was_bought(
    profile_data: dict[str, dict[str, list[str]]],
    stream: list[tuple[str, str, Side]],
    scope: PositionScope,
) -> None:
    profile, portfolio = Profile(profile_data), Portfolio(scope)
    # The model: the set of open keys, kept by hand from the accepted decisions.
    open_keys: set[tuple[str, ...]] = set()

    def key(user: str, strategy: str, instrument: str) -> tuple[str, ...]:
        return (user, instrument) if scope is PositionScope.USER else (user, strategy, instrument)

    start = datetime(2026, 11, 24, tzinfo=UTC)
    for number, (strategy, instrument, side) in enumerate(stream):
        decision = portfolio.decide(
            Order(strategy, instrument, side), profile, str(number), start + timedelta(seconds=number)
        )
        runners = {user for user, strategies in profile_data.items() if strategy in strategies}
        assert {d.user for d in decision.decisions} == runners
        for d in decision.decisions:
            held = key(d.user, strategy, instrument) in open_keys
            if side is Side.BUY and not held and instrument in profile_data[d.user][strategy]:
                assert d.status is OrderStatus.ACCEPTED, "a BUY that breaks no rule must be accepted"
            if d.status is OrderStatus.ACCEPTED:
                # A BUY opens only what is not held; a SELL closes only what a BUY opened.
                assert held is (side is Side.SELL)
                if side is Side.BUY or scope is PositionScope.STRATEGY:
                    assert instrument in profile_data[d.user][strategy]
                if side is Side.BUY:
                    open_keys.add(key(d.user, strategy, instrument))
                else:
                    open_keys.remove(key(d.user, strategy, instrument))
        portfolio.apply(decision)
        positions = list(portfolio)
        keys = [key(p.user, p.strategy, p.instrument) for p in positions]
        assert len(keys) == len(set(keys)), "two open positions for one key"
        assert set(keys) == open_keys
