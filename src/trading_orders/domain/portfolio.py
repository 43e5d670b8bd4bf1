"""The open positions of every user and the rules that decide an order against them."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime

from trading_orders.domain.controls import (
    NO_CONTROLS,
    ControlChange,
    Controls,
    ControlScope,
    Flatten,
    RateBucket,
    TradingState,
)
from trading_orders.domain.model import (
    AppliedDecision,
    DomainError,
    Order,
    OrderDecision,
    OrderStatus,
    Position,
    PositionChange,
    PositionScope,
    RejectReason,
    Side,
    Trade,
    UserDecision,
)
from trading_orders.domain.profile import Profile

PositionKey = tuple[str, ...]


class ConflictingPositions(DomainError):
    """Two open positions claim the same key under the configured scope."""


class Portfolio:
    """Open positions, keyed by the position scope; decides orders and applies decisions."""

    __slots__ = ("_counts", "_positions", "_scope")

    def __init__(self, scope: PositionScope, positions: Iterable[Position] = ()) -> None:
        """Hold ``positions`` under ``scope``; two positions with one key are refused."""
        self._scope = scope
        self._positions: dict[PositionKey, Position] = {}
        # Open positions per (user, None) and per (user, strategy): a position
        # limit counts them on every BUY, and a scan of every position would
        # not do. Plain tuples: this runs for every position every order opens or closes.
        self._counts: dict[tuple[str, str | None], int] = {}
        for position in positions:
            key = self._key(position.user, position.strategy, position.instrument)
            held = self._positions.get(key)
            if held is not None:
                raise ConflictingPositions(
                    f"{_describe(position)} and {_describe(held)} are the same position "
                    f"under position scope {scope.value!r}"
                )
            self._add(key, position)

    @property
    def scope(self) -> PositionScope:
        """The scope positions are held in."""
        return self._scope

    def __len__(self) -> int:
        return len(self._positions)

    def __iter__(self) -> Iterator[Position]:
        return iter(self._positions.values())

    def open_count(self, scope: ControlScope) -> int:
        """How many positions are open in ``scope`` (a user, or one user's strategy)."""
        return self._counts.get((scope.user or "", scope.strategy), 0)

    def in_scope(self, scope: ControlScope) -> list[Position]:
        """The open positions in ``scope`` (a position belongs to the strategy that opened it)."""
        return [p for p in self._positions.values() if scope.holds(p)]

    def held(self, user: str, strategy: str, instrument: str) -> Position | None:
        """The open position an order in ``strategy`` for ``user`` would meet, if any."""
        return self._positions.get(self._key(user, strategy, instrument))

    def decide(self, order: Order, profile: Profile, order_id: str, received_at: datetime) -> OrderDecision:
        """Decide ``order`` for every user who runs its strategy; changes nothing."""
        runners = profile.runners_of(order.strategy)
        if not runners:
            return OrderDecision(order_id, received_at, order, (), RejectReason.UNKNOWN_STRATEGY)
        decisions = tuple(self._decide_for(user, universe, order) for user, universe in runners.items())
        return OrderDecision(order_id, received_at, order, decisions)

    def _decide_for(self, user: str, universe: frozenset[str], order: Order) -> UserDecision:
        holding = self._key(user, order.strategy, order.instrument) in self._positions
        # Netting: a SELL from any strategy the user runs closes the user's
        # position, so only a SELL that closes nothing is checked against the universe.
        if order.side is Side.SELL and holding and self._scope is PositionScope.USER:
            return _decision(user, None)
        if order.instrument not in universe:
            return _decision(user, RejectReason.INSTRUMENT_NOT_IN_STRATEGY)
        if order.side is Side.BUY and holding:
            return _decision(user, RejectReason.ALREADY_HOLDING)
        if order.side is Side.SELL and not holding:
            return _decision(user, RejectReason.NO_OPEN_POSITION)
        return _decision(user, None)

    def slice(
        self,
        users: Iterable[str],
        strategy: str,
        instrument: str,
        controls: Controls = NO_CONTROLS,
        rate_bucket: RateBucket | None = None,
    ) -> PortfolioSlice:
        """What an order in ``strategy`` for ``instrument`` can meet for ``users``, under ``controls``, as its slice."""
        held = [p for user in users if (p := self.held(user, strategy, instrument)) is not None]
        if controls.is_empty:
            return PortfolioSlice(self._scope, held)
        counts = {scope: self.open_count(scope) for user in users for scope in controls.count_scopes(user, strategy)}
        return PortfolioSlice(self._scope, held, controls, counts, rate_bucket)

    def merge(self, change: PositionChange) -> None:
        """Open and close what ``change`` says: a decision applied to a slice of this portfolio, now saved."""
        for position in change.closed:
            self._remove(self._key(position.user, position.strategy, position.instrument))
        for position in change.opened:
            self._add(self._key(position.user, position.strategy, position.instrument), position)

    def apply_control(self, change: ControlChange) -> PositionChange:
        """Close the positions a flatten closes (each makes a trade); other changes touch no position."""
        action = change.action
        if not isinstance(action, Flatten):
            return PositionChange()
        keys = [self._key(p.user, p.strategy, p.instrument) for p in action.closed]
        # Checked before any is closed, as apply() does: a flatten that does
        # not fit (a corrupt log on replay) leaves the portfolio as it was.
        missing = [p for key, p in zip(keys, action.closed, strict=True) if self._positions.get(key) != p]
        if missing:
            raise DomainError(f"control change {change.change_id} closes {_describe(missing[0])}, which is not open")
        for key in keys:
            self._remove(key)
        return PositionChange(closed=action.closed, trades=change.trades)

    def _add(self, key: PositionKey, position: Position) -> None:
        self._positions[key] = position
        counts, user = self._counts, position.user
        counts[user, None] = counts.get((user, None), 0) + 1
        counts[user, position.strategy] = counts.get((user, position.strategy), 0) + 1

    def _remove(self, key: PositionKey) -> Position:
        position = self._positions.pop(key)
        counts, user = self._counts, position.user
        counts[user, None] -= 1
        counts[user, position.strategy] -= 1
        return position

    def apply(self, decision: OrderDecision) -> PositionChange:
        """Open or close the positions an accepted decision calls for; returns what changed."""
        order = decision.order
        users = decision.accepted_users
        keys = [self._key(user, order.strategy, order.instrument) for user in users]
        # Check every user before touching any, so a decision that does not fit
        # this portfolio (a corrupt log on replay) leaves it exactly as it was.
        if order.side is Side.BUY:
            clashes = [self._positions[key] for key in keys if key in self._positions]
            if clashes:
                raise ConflictingPositions(
                    f"order {decision.order_id} opens {_describe(clashes[0])}, which is already open"
                )
            opened = tuple(
                Position(user, order.strategy, order.instrument, decision.order_id, decision.received_at)
                for user in users
            )
            for key, position in zip(keys, opened, strict=True):
                self._add(key, position)
            return PositionChange(opened=opened)
        missing = [user for user, key in zip(users, keys, strict=True) if key not in self._positions]
        if missing:
            raise DomainError(
                f"order {decision.order_id} closes {order.strategy}/{order.instrument} "
                f"for {missing[0]!r}, who holds no such position"
            )
        closed = tuple(self._remove(key) for key in keys)
        trades = tuple(Trade.closing(p, decision.order_id, decision.received_at) for p in closed)
        return PositionChange(closed=closed, trades=trades)

    def _key(self, user: str, strategy: str, instrument: str) -> PositionKey:
        if self._scope is PositionScope.USER:
            return (user, instrument)
        return (user, strategy, instrument)


class PortfolioSlice(Portfolio):
    """The positions one order can meet, and the controls it is decided under, as its store transaction hands them out.

    ``controls`` are the states and limits in force when the order is
    sequenced; ``open_counts`` the open positions of each scope with a
    position limit among the order's users (Controls.count_scopes), and
    ``rate_bucket`` the strategy's rate-limit bucket when it has a rate limit.
    It remembers what apply() changed until the store takes it to save it
    (take_unsaved), so no caller hands a change back by hand.
    """

    __slots__ = ("_controls", "_open_counts", "_rate_bucket", "_unsaved")

    def __init__(
        self,
        scope: PositionScope,
        positions: Iterable[Position] = (),
        controls: Controls = NO_CONTROLS,
        open_counts: Mapping[ControlScope, int] | None = None,
        rate_bucket: RateBucket | None = None,
    ) -> None:
        """Hold ``positions`` under ``scope`` and ``controls``, with nothing applied yet."""
        super().__init__(scope, positions)
        self._controls = controls
        self._open_counts = open_counts or {}
        self._rate_bucket = rate_bucket
        self._unsaved: list[AppliedDecision] = []

    def decide(self, order: Order, profile: Profile, order_id: str, received_at: datetime) -> OrderDecision:
        """Decide ``order`` under the controls, then the limits, then the rules; changes nothing."""
        controls = self._controls
        if controls.is_empty:
            return super().decide(order, profile, order_id, received_at)
        runners = profile.runners_of(order.strategy)
        whole = _refusal(controls.order_state(order.strategy), order.side)
        if whole is not None:
            return OrderDecision(order_id, received_at, order, tuple(_decision(u, whole) for u in runners), whole)
        if not runners:
            return OrderDecision(order_id, received_at, order, (), RejectReason.UNKNOWN_STRATEGY)
        rate = controls.rate_limit(order.strategy)
        if rate is not None and rate.admit(self._rate_bucket, received_at) is None:
            return OrderDecision(order_id, received_at, order, (), RejectReason.RATE_LIMITED)
        decisions = tuple(self._decide_under_controls(user, universe, order) for user, universe in runners.items())
        return OrderDecision(order_id, received_at, order, decisions)

    def _decide_under_controls(self, user: str, universe: frozenset[str], order: Order) -> UserDecision:
        controls = self._controls
        refusal = _refusal(controls.user_state(user, order.strategy), order.side)
        if refusal is not None:
            return _decision(user, refusal)
        if order.side is Side.BUY:
            for scope in controls.count_scopes(user, order.strategy):
                limit = controls.position_limit(scope)
                if limit is not None and self._open_counts.get(scope, 0) >= limit:
                    return _decision(user, RejectReason.POSITION_LIMIT)
        return self._decide_for(user, universe, order)

    def apply(self, decision: OrderDecision) -> PositionChange:
        """Apply ``decision`` as Portfolio.apply does, and remember it until take_unsaved()."""
        change = super().apply(decision)
        rate = self._controls.rate_limit(decision.order.strategy)
        bucket = None
        if rate is not None and decision.reason is None:
            # An admitted order takes its token; one refused takes none.
            # A decision recorded elsewhere (an import) may find no token left: it empties the bucket.
            bucket = rate.admit(self._rate_bucket, decision.received_at) or RateBucket(0.0, decision.received_at)
            self._rate_bucket = bucket
        self._unsaved.append(AppliedDecision(decision, change, bucket))
        return change

    def take_unsaved(self) -> list[AppliedDecision]:
        """The decisions applied since the last call, oldest first, with what each changed; forgets them."""
        unsaved, self._unsaved = self._unsaved, []
        return unsaved

    # A slice is handed its open counts (open_counts): counting its own few
    # positions would cost every order and tell nothing.
    def _add(self, key: PositionKey, position: Position) -> None:
        self._positions[key] = position

    def _remove(self, key: PositionKey) -> Position:
        return self._positions.pop(key)


def _refusal(state: TradingState, side: Side) -> RejectReason | None:
    """Why ``state`` refuses a ``side`` order, if it does."""
    if state is TradingState.HALTED:
        return RejectReason.TRADING_HALTED
    if state is TradingState.REDUCING and side is Side.BUY:
        return RejectReason.REDUCE_ONLY
    return None


@functools.lru_cache(maxsize=65_536)
def _decision(user: str, reason: RejectReason | None) -> UserDecision:
    # Decisions are immutable values and each user has only five: building
    # (and checking) one per user per order was a third of decide's time.
    return UserDecision(user, OrderStatus.ACCEPTED if reason is None else OrderStatus.REJECTED, reason)


def _describe(position: Position) -> str:
    return f"{position.user!r} {position.strategy}/{position.instrument} (order {position.order_id})"
