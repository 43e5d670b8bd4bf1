"""Operator controls: set a scope's trading state, set a limit, flatten a scope; each recorded in the order log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from trading_orders.application.errors import IdempotencyKeyReused, UnknownName
from trading_orders.application.ports import (
    Clock,
    ControlTransaction,
    OrderFollowers,
    OrderIds,
    OrderStore,
)
from trading_orders.domain.controls import (
    ControlAction,
    ControlChange,
    ControlLogEntry,
    Controls,
    ControlScope,
    Flatten,
    LogEntry,
    PositionLimitChange,
    RateLimit,
    RateLimitChange,
    StateChange,
    TradingState,
)
from trading_orders.domain.profile import Profile

logger = logging.getLogger(__name__)

# What a control request makes of what its transaction hands out (a flatten reads the positions it closes).
_ActionOf = Callable[[ControlTransaction], Awaitable[ControlAction]]
# What a request asks for, in a form a retry of it compares equal to:
# (action, user, strategy, target, reason).
_Request = tuple[str, str | None, str | None, object, str]


@dataclass(frozen=True, slots=True)
class RecordedControl:
    """A control change's log entry, and whether it was answered from the log for a retried idempotency key."""

    entry: ControlLogEntry
    replayed: bool = False


class OperatorControls:
    """Records the operator's control changes in the order log, serialized with the orders.

    Each change runs in one control transaction of the store: no order is
    sequenced while it is open, so every order sequenced after it is decided
    under it. A change with an ``idempotency_key`` already in the log is not
    made again: its recorded entry is returned, marked replayed.
    """

    def __init__(
        self,
        store: OrderStore,
        clock: Clock,
        ids: OrderIds,
        profile: Callable[[], Profile],
        followers: OrderFollowers | None = None,
    ) -> None:
        """Wire the controls to the order store they record in; ``profile`` tells the names a scope may use."""
        self._store = store
        self._profile = profile
        self._clock = clock
        self._ids = ids
        self._followers = followers

    def in_force(self) -> Controls:
        """The states and limits in force now."""
        return self._store.controls()

    async def set_state(
        self, scope: ControlScope, state: TradingState, reason: str, operator: str, idempotency_key: str | None = None
    ) -> RecordedControl:
        """Set ``scope``'s trading state; it holds until an operator sets it again."""
        request: _Request = ("state", scope.user, scope.strategy, state, reason)

        async def action(transaction: ControlTransaction) -> ControlAction:
            return transaction.controls.set_state(scope, state)

        return await self._record(request, idempotency_key, reason, operator, action)

    async def set_position_limit(
        self, scope: ControlScope, limit: int | None, reason: str, operator: str, idempotency_key: str | None = None
    ) -> RecordedControl:
        """Set the most positions ``scope`` (a user, or one user's strategy) may hold open; None removes the limit."""
        request: _Request = ("position_limit", scope.user, scope.strategy, limit, reason)

        async def action(transaction: ControlTransaction) -> ControlAction:
            return transaction.controls.set_position_limit(scope, limit)

        return await self._record(request, idempotency_key, reason, operator, action)

    async def set_rate_limit(
        self, strategy: str, limit: RateLimit | None, reason: str, operator: str, idempotency_key: str | None = None
    ) -> RecordedControl:
        """Set the most orders a second ``strategy`` may send; None removes the limit."""
        scope = ControlScope(strategy=strategy)
        request: _Request = ("rate_limit", None, scope.strategy, limit, reason)

        async def action(transaction: ControlTransaction) -> ControlAction:
            return transaction.controls.set_rate_limit(strategy, limit)

        return await self._record(request, idempotency_key, reason, operator, action)

    async def flatten(
        self,
        scope: ControlScope,
        state: TradingState | None,
        reason: str,
        operator: str,
        idempotency_key: str | None = None,
    ) -> RecordedControl:
        """Close every open position in ``scope`` as a SELL would, and set its state in the same step if asked."""
        request: _Request = ("flatten", scope.user, scope.strategy, state, reason)

        async def action(transaction: ControlTransaction) -> ControlAction:
            return transaction.controls.flatten(scope, await transaction.positions_in(scope), state)

        return await self._record(request, idempotency_key, reason, operator, action)

    async def check_names(self, scope: ControlScope) -> None:
        """Raise UnknownName unless the profile, or an open position, knows ``scope``'s user and strategy.

        A mistyped name would set a control that covers nobody while the
        operator believes it holds.
        """
        profile = self._profile()
        # A store's read may be a query: off the event loop, which orders share.
        if (
            scope.user is not None
            and scope.user not in profile.users
            and not await asyncio.to_thread(self._store.positions, user=scope.user)
        ):
            raise UnknownName(f"user {scope.user!r} is not in the profile and holds no open position")
        if (
            scope.strategy is not None
            and scope.strategy not in profile.strategies
            and not await asyncio.to_thread(self._store.positions, strategy=scope.strategy)
        ):
            raise UnknownName(f"strategy {scope.strategy!r} is not in the profile and holds no open position")

    async def _record(
        self,
        request: _Request,
        idempotency_key: str | None,
        reason: str,
        operator: str,
        action_of: _ActionOf,
    ) -> RecordedControl:
        await self.check_names(ControlScope(request[1], request[2]))
        async with self._store.control_transaction(idempotency_key) as transaction:
            if transaction.recorded is not None:
                return _replay(transaction.recorded, request)
            action = await action_of(transaction)
            change = ControlChange(self._ids.next_id(), self._made_at(transaction), operator, reason, action)
            entry = await transaction.commit(change)
        logger.warning("control change #%d by %s: %s (%s)", entry.sequence, operator, describe(action), reason or "-")
        if self._followers is not None:
            self._followers.recorded(entry)
        return RecordedControl(entry)

    def _made_at(self, transaction: ControlTransaction) -> datetime:
        now = self._clock.now()
        last = transaction.last_received_at
        # Times only grow along the log, as orders' do.
        return last if last is not None and now < last else now


def request_of(action: ControlAction, reason: str) -> _Request:
    """What was asked for to make ``action``: a retry of the same request compares equal."""
    if isinstance(action, StateChange):
        return ("state", action.scope.user, action.scope.strategy, action.after, reason)
    if isinstance(action, PositionLimitChange):
        return ("position_limit", action.scope.user, action.scope.strategy, action.after, reason)
    if isinstance(action, RateLimitChange):
        return ("rate_limit", None, action.strategy, action.after, reason)
    state = None if action.state is None else action.state.after
    return ("flatten", action.scope.user, action.scope.strategy, state, reason)


def _replay(recorded: LogEntry, request: _Request) -> RecordedControl:
    if (
        not isinstance(recorded, ControlLogEntry)
        or request_of(recorded.change.action, recorded.change.reason) != request
    ):
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used for a different request; "
            "a retry must repeat its request exactly, or send a new key"
        )
    logger.info("control change #%d replayed for a retry with its idempotency key", recorded.sequence)
    return RecordedControl(recorded, replayed=True)


def describe(action: ControlAction) -> str:
    """One line saying what ``action`` did."""
    if isinstance(action, StateChange):
        return f"{action.scope.describe()} {action.before.value} -> {action.after.value}"
    if isinstance(action, PositionLimitChange):
        return f"{action.scope.describe()} max open positions {action.before} -> {action.after}"
    if isinstance(action, RateLimitChange):
        return f"{action.scope.describe()} order rate {_rate(action.before)} -> {_rate(action.after)}"
    assert isinstance(action, Flatten)
    closed = f"{action.scope.describe()} flattened: {len(action.closed)} position(s) closed"
    return closed if action.state is None else f"{closed}, {action.state.before.value} -> {action.state.after.value}"


def _rate(limit: RateLimit | None) -> str:
    return "none" if limit is None else f"{limit.per_second:g}/s burst {limit.burst}"
