"""The open positions of every user and the rules that decide an order against them."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from datetime import datetime

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

    __slots__ = ("_positions", "_scope")

    def __init__(self, scope: PositionScope, positions: Iterable[Position] = ()) -> None:
        """Hold ``positions`` under ``scope``; two positions with one key are refused."""
        self._scope = scope
        self._positions: dict[PositionKey, Position] = {}
        for position in positions:
            key = self._key(position.user, position.strategy, position.instrument)
            held = self._positions.get(key)
            if held is not None:
                raise ConflictingPositions(
                    f"{_describe(position)} and {_describe(held)} are the same position "
                    f"under position scope {scope.value!r}"
                )
            self._positions[key] = position

    @property
    def scope(self) -> PositionScope:
        """The scope positions are held in."""
        return self._scope

    def __len__(self) -> int:
        return len(self._positions)

    def __iter__(self) -> Iterator[Position]:
        return iter(self._positions.values())

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

    def slice(self, users: Iterable[str], strategy: str, instrument: str) -> PortfolioSlice:
        """The positions an order in ``strategy`` for ``instrument`` can meet for ``users``, as one order's slice."""
        held = [p for user in users if (p := self.held(user, strategy, instrument)) is not None]
        return PortfolioSlice(self._scope, held)

    def merge(self, change: PositionChange) -> None:
        """Open and close what ``change`` says: a decision applied to a slice of this portfolio, now saved."""
        for position in change.closed:
            del self._positions[self._key(position.user, position.strategy, position.instrument)]
        for position in change.opened:
            self._positions[self._key(position.user, position.strategy, position.instrument)] = position

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
                self._positions[key] = position
            return PositionChange(opened=opened)
        missing = [user for user, key in zip(users, keys, strict=True) if key not in self._positions]
        if missing:
            raise DomainError(
                f"order {decision.order_id} closes {order.strategy}/{order.instrument} "
                f"for {missing[0]!r}, who holds no such position"
            )
        closed = tuple(self._positions.pop(key) for key in keys)
        trades = tuple(Trade.closing(p, decision.order_id, decision.received_at) for p in closed)
        return PositionChange(closed=closed, trades=trades)

    def _key(self, user: str, strategy: str, instrument: str) -> PositionKey:
        if self._scope is PositionScope.USER:
            return (user, instrument)
        return (user, strategy, instrument)


class PortfolioSlice(Portfolio):
    """The positions one order can meet, as its store transaction hands them out.

    It remembers what apply() changed until the store takes it to save it
    (take_unsaved), so no caller hands a change back by hand.
    """

    __slots__ = ("_unsaved",)

    def __init__(self, scope: PositionScope, positions: Iterable[Position] = ()) -> None:
        """Hold ``positions`` under ``scope``, with nothing applied yet."""
        super().__init__(scope, positions)
        self._unsaved: list[AppliedDecision] = []

    def apply(self, decision: OrderDecision) -> PositionChange:
        """Apply ``decision`` as Portfolio.apply does, and remember it until take_unsaved()."""
        change = super().apply(decision)
        self._unsaved.append(AppliedDecision(decision, change))
        return change

    def take_unsaved(self) -> list[AppliedDecision]:
        """The decisions applied since the last call, oldest first, with what each changed; forgets them."""
        unsaved, self._unsaved = self._unsaved, []
        return unsaved


@functools.lru_cache(maxsize=65_536)
def _decision(user: str, reason: RejectReason | None) -> UserDecision:
    # Decisions are immutable values and each user has only five: building
    # (and checking) one per user per order was a third of decide's time.
    return UserDecision(user, OrderStatus.ACCEPTED if reason is None else OrderStatus.REJECTED, reason)


def _describe(position: Position) -> str:
    return f"{position.user!r} {position.strategy}/{position.instrument} (order {position.order_id})"
