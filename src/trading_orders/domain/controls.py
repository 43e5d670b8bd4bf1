"""Operator controls: trading states at a scope, position and order-rate limits, and flattening.

A control change is recorded in the order log like an order, so the
controls in force at any place in the log are the changes before it. This
module holds the values and the rules; when a change was made and by whom
is handed in, never looked up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from trading_orders.domain.model import DomainError, OrderLogEntry, Position, Trade, check_log_place

# The longest reason text an operator may give: a sentence, not a document.
REASON_MAX_LENGTH = 500


class TradingState(StrEnum):
    """How far orders may go at a scope, from least to most restrictive."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"

    @property
    def rank(self) -> int:
        """0 for ACTIVE, 1 for REDUCING, 2 for HALTED: a higher rank refuses more."""
        return _RANKS[self]


_RANKS = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


@dataclass(frozen=True, slots=True)
class ControlScope:
    """What a control covers: the desk (no user, no strategy), a strategy, a user, or one user's strategy."""

    user: str | None = None
    strategy: str | None = None

    def __post_init__(self) -> None:
        for field, value in (("user", self.user), ("strategy", self.strategy)):
            if value is not None and (not value or value != value.strip()):
                raise DomainError(f"a scope's {field} is a non-empty name without surrounding spaces, got {value!r}")

    @property
    def is_desk(self) -> bool:
        """True for the scope that covers everything."""
        return self.user is None and self.strategy is None

    def covers(self, user: str | None, strategy: str | None) -> bool:
        """True when this scope covers ``user``'s part of an order in ``strategy`` (None: any)."""
        return (self.user is None or self.user == user) and (self.strategy is None or self.strategy == strategy)

    def holds(self, position: Position) -> bool:
        """True when ``position`` lies in this scope (a position belongs to the strategy that opened it)."""
        return self.covers(position.user, position.strategy)

    def describe(self) -> str:
        """The scope in words: "the desk", "strategy S", "user U" or "user U's strategy S"."""
        if self.user is None:
            return "the desk" if self.strategy is None else f"strategy {self.strategy}"
        return f"user {self.user}" if self.strategy is None else f"user {self.user}'s strategy {self.strategy}"


DESK = ControlScope()


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``per_second`` orders a second for a strategy, with bursts of up to ``burst`` (a token bucket)."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.per_second) and self.per_second > 0):
            raise DomainError(f"max_orders_per_second must be a positive number, got {self.per_second!r}")
        if self.burst < 1:
            raise DomainError(f"burst must be at least 1, got {self.burst!r}")

    def admit(self, bucket: RateBucket | None, now: datetime) -> RateBucket | None:
        """The bucket after admitting one order at ``now``; None when the order is over the limit.

        A bucket starts full; it gains ``per_second`` tokens a second up to
        ``burst``, and an admitted order takes one.
        """
        tokens = float(self.burst) if bucket is None else bucket.tokens_at(now, self)
        if tokens < 1.0:
            return None
        return RateBucket(tokens - 1.0, max(now, bucket.at) if bucket is not None else now)


@dataclass(frozen=True, slots=True)
class RateBucket:
    """The tokens a strategy's rate limit had left at ``at``."""

    tokens: float
    at: datetime

    def tokens_at(self, now: datetime, limit: RateLimit) -> float:
        """The tokens left at ``now`` under ``limit`` (a clock that stepped back adds none)."""
        elapsed = max((now - self.at).total_seconds(), 0.0)
        return min(float(limit.burst), self.tokens + elapsed * limit.per_second)


@dataclass(frozen=True, slots=True)
class StateChange:
    """A scope's trading state set from ``before`` to ``after``."""

    scope: ControlScope
    before: TradingState
    after: TradingState


@dataclass(frozen=True, slots=True)
class PositionLimitChange:
    """A user's (or one user's strategy's) maximum of open positions set; None: no limit."""

    scope: ControlScope
    before: int | None
    after: int | None

    def __post_init__(self) -> None:
        if self.scope.user is None:
            raise DomainError("a limit on open positions is set for a user, or for one user's strategy")
        for value in (self.before, self.after):
            if value is not None and value < 0:
                raise DomainError(f"max_open_positions must be 0 or more, got {value}")


@dataclass(frozen=True, slots=True)
class RateLimitChange:
    """A strategy's order-rate limit set; None: no limit."""

    strategy: str
    before: RateLimit | None
    after: RateLimit | None

    @property
    def scope(self) -> ControlScope:
        """The strategy's scope."""
        return ControlScope(strategy=self.strategy)


@dataclass(frozen=True, slots=True)
class Flatten:
    """Every open position in ``scope`` closed by the operator, and the scope's state set in the same step if asked."""

    scope: ControlScope
    closed: tuple[Position, ...]
    state: StateChange | None = None

    def __post_init__(self) -> None:
        outside = [p for p in self.closed if not self.scope.holds(p)]
        if outside:
            raise DomainError(f"a flatten of {self.scope.describe()} cannot close {outside[0].user}'s position")
        if self.state is not None and self.state.scope != self.scope:
            raise DomainError("a flatten sets the state of the scope it flattens, and no other")


ControlAction = StateChange | PositionLimitChange | RateLimitChange | Flatten


@dataclass(frozen=True, slots=True)
class ControlChange:
    """One change an operator made: what, when, why, and who (an API key's digest, or "cli")."""

    change_id: str
    at: datetime
    operator: str
    reason: str
    action: ControlAction

    def __post_init__(self) -> None:
        if not self.change_id:
            raise DomainError("a control change needs an id")
        if self.at.tzinfo is None:
            raise DomainError("a control change's time must carry a time zone (UTC)")
        if not self.operator:
            raise DomainError("a control change names who made it")
        if len(self.reason) > REASON_MAX_LENGTH:
            raise DomainError(f"a reason is at most {REASON_MAX_LENGTH} characters, got {len(self.reason)}")

    @property
    def trades(self) -> tuple[Trade, ...]:
        """The trades a flatten made (one per position it closed); none for any other change."""
        if not isinstance(self.action, Flatten):
            return ()
        return tuple(Trade.closing(p, self.change_id, self.at) for p in self.action.closed)


@dataclass(frozen=True, slots=True)
class ControlLogEntry:
    """A control change as the order log keeps it, in the sequence of the orders."""

    sequence: int
    change: ControlChange
    idempotency_key: str | None = None

    def __post_init__(self) -> None:
        check_log_place(self.sequence, self.idempotency_key)


@dataclass(frozen=True, slots=True)
class StateInForce:
    """A scope's trading state other than ACTIVE, with the change that set it."""

    scope: ControlScope
    state: TradingState
    reason: str
    sequence: int
    at: datetime


@dataclass(frozen=True, slots=True)
class PositionLimitInForce:
    """A user's (or user's strategy's) maximum of open positions, with the change that set it."""

    scope: ControlScope
    max_open_positions: int
    sequence: int
    at: datetime


@dataclass(frozen=True, slots=True)
class RateLimitInForce:
    """A strategy's order-rate limit, with the change that set it."""

    strategy: str
    limit: RateLimit
    sequence: int
    at: datetime


class Controls:
    """The states and limits in force: immutable; each recorded change gives a new one (with_entry)."""

    __slots__ = ("_limited_users", "_position_limits", "_rate_limits", "_states")

    def __init__(
        self,
        states: Iterable[StateInForce] = (),
        position_limits: Iterable[PositionLimitInForce] = (),
        rate_limits: Iterable[RateLimitInForce] = (),
    ) -> None:
        """Hold the states other than ACTIVE and the limits given (one per scope)."""
        self._states: Mapping[ControlScope, StateInForce] = MappingProxyType(
            {s.scope: s for s in states if s.state is not TradingState.ACTIVE}
        )
        self._position_limits: Mapping[ControlScope, PositionLimitInForce] = MappingProxyType(
            {limit.scope: limit for limit in position_limits}
        )
        self._rate_limits: Mapping[str, RateLimitInForce] = MappingProxyType({r.strategy: r for r in rate_limits})
        self._limited_users = frozenset(scope.user for scope in self._position_limits)

    @property
    def is_empty(self) -> bool:
        """True when every scope is ACTIVE and no limit is set: orders are decided by the rules alone."""
        return not (self._states or self._position_limits or self._rate_limits)

    def states(self) -> tuple[StateInForce, ...]:
        """Every scope not ACTIVE, in the order the changes were made."""
        return tuple(sorted(self._states.values(), key=lambda s: s.sequence))

    def position_limits(self) -> tuple[PositionLimitInForce, ...]:
        """Every limit on open positions, in the order they were set."""
        return tuple(sorted(self._position_limits.values(), key=lambda limit: limit.sequence))

    def rate_limits(self) -> tuple[RateLimitInForce, ...]:
        """Every order-rate limit, in the order they were set."""
        return tuple(sorted(self._rate_limits.values(), key=lambda limit: limit.sequence))

    def state_at(self, scope: ControlScope) -> TradingState:
        """The state set at exactly ``scope`` (ACTIVE when none is)."""
        held = self._states.get(scope)
        return TradingState.ACTIVE if held is None else held.state

    def order_state(self, strategy: str) -> TradingState:
        """The most restrictive state of the desk and ``strategy``: what governs an order as a whole."""
        if not self._states:
            return TradingState.ACTIVE
        return max(self.state_at(DESK), self.state_at(ControlScope(strategy=strategy)), key=_rank)

    def user_state(self, user: str, strategy: str) -> TradingState:
        """The most restrictive state among the desk, ``strategy``, ``user`` and ``user``'s ``strategy``."""
        if not self._states:
            return TradingState.ACTIVE
        return max(
            self.order_state(strategy),
            self.state_at(ControlScope(user=user)),
            self.state_at(ControlScope(user, strategy)),
            key=_rank,
        )

    def position_limit(self, scope: ControlScope) -> int | None:
        """The maximum of open positions set at exactly ``scope``, if any."""
        held = self._position_limits.get(scope)
        return None if held is None else held.max_open_positions

    def rate_limit(self, strategy: str) -> RateLimit | None:
        """``strategy``'s order-rate limit, if any."""
        held = self._rate_limits.get(strategy)
        return None if held is None else held.limit

    def limits_user(self, user: str) -> bool:
        """True when ``user`` has a limit on open positions, overall or in some strategy."""
        return user in self._limited_users

    def count_scopes(self, user: str, strategy: str) -> tuple[ControlScope, ...]:
        """The scopes whose open positions a BUY for ``user`` in ``strategy`` must count: those with a limit."""
        if user not in self._limited_users:
            return ()
        return tuple(
            scope for scope in (ControlScope(user=user), ControlScope(user, strategy)) if scope in self._position_limits
        )

    def with_entry(self, entry: ControlLogEntry) -> Controls:
        """The controls after ``entry``'s change."""
        change, action = entry.change, entry.change.action
        states = dict(self._states)
        position_limits = dict(self._position_limits)
        rate_limits = dict(self._rate_limits)
        state = action.state if isinstance(action, Flatten) else action if isinstance(action, StateChange) else None
        if state is not None:
            states[state.scope] = StateInForce(state.scope, state.after, change.reason, entry.sequence, change.at)
        if isinstance(action, PositionLimitChange):
            if action.after is None:
                position_limits.pop(action.scope, None)
            else:
                position_limits[action.scope] = PositionLimitInForce(
                    action.scope, action.after, entry.sequence, change.at
                )
        if isinstance(action, RateLimitChange):
            if action.after is None:
                rate_limits.pop(action.strategy, None)
            else:
                rate_limits[action.strategy] = RateLimitInForce(
                    action.strategy, action.after, entry.sequence, change.at
                )
        return Controls(states.values(), position_limits.values(), rate_limits.values())

    def set_state(self, scope: ControlScope, state: TradingState) -> StateChange:
        """The change that sets ``scope`` to ``state`` (from the state it has now)."""
        return StateChange(scope, self.state_at(scope), state)

    def set_position_limit(self, scope: ControlScope, limit: int | None) -> PositionLimitChange:
        """The change that sets ``scope``'s maximum of open positions to ``limit`` (None removes it)."""
        return PositionLimitChange(scope, self.position_limit(scope), limit)

    def set_rate_limit(self, strategy: str, limit: RateLimit | None) -> RateLimitChange:
        """The change that sets ``strategy``'s order-rate limit to ``limit`` (None removes it)."""
        return RateLimitChange(strategy, self.rate_limit(strategy), limit)

    def flatten(self, scope: ControlScope, positions: Iterable[Position], state: TradingState | None = None) -> Flatten:
        """The change that closes every one of ``positions`` in ``scope``, and sets its state if ``state`` is given."""
        closed = tuple(sorted((p for p in positions if scope.holds(p)), key=_opened))
        return Flatten(scope, closed, None if state is None else self.set_state(scope, state))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Controls):
            return NotImplemented
        return (
            dict(self._states) == dict(other._states)
            and dict(self._position_limits) == dict(other._position_limits)
            and dict(self._rate_limits) == dict(other._rate_limits)
        )

    def __hash__(self) -> int:
        return hash((frozenset(self._states.items()), frozenset(self._position_limits.items())))

    def __repr__(self) -> str:
        return f"Controls(states={self.states()!r}, limits={self.position_limits()!r}, rates={self.rate_limits()!r})"


def _rank(state: TradingState) -> int:
    return state.rank


def _opened(position: Position) -> tuple[datetime, str, str, str]:
    return position.opened_at, position.user, position.strategy, position.instrument


NO_CONTROLS = Controls()


def replayed_controls(entries: Iterable[ControlLogEntry], start: Controls = NO_CONTROLS) -> Controls:
    """The controls after ``entries``' changes, applied in order to ``start``."""
    controls = start
    for entry in entries:
        controls = controls.with_entry(entry)
    return controls


# What the order log holds, in one sequence: orders and control changes.
LogEntry = OrderLogEntry | ControlLogEntry


def entry_id(entry: LogEntry) -> str:
    """The id an entry is found by: its order's id, or its control change's."""
    return entry.decision.order_id if isinstance(entry, OrderLogEntry) else entry.change.change_id


def entry_time(entry: LogEntry) -> datetime:
    """When an entry was made: its order's received time, or its control change's time."""
    return entry.decision.received_at if isinstance(entry, OrderLogEntry) else entry.change.at
