"""The bodies of the operator-control endpoints and of the `control` event (SPEC.md, "Operator controls")."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trading_orders.adapters.http.schemas import PositionBody
from trading_orders.domain.controls import (
    REASON_MAX_LENGTH,
    ControlLogEntry,
    Controls,
    Flatten,
    PositionLimitChange,
    RateLimit,
    RateLimitChange,
    StateChange,
    TradingState,
)

_NAME = Field(default=None, min_length=1, max_length=200, description="null: every user (or strategy).")
_REASON = Field(default="", max_length=REASON_MAX_LENGTH, description="Why, for the audit trail in the order log.")


class _Strict(BaseModel):
    # A misspelt field is an error, not a control silently left unset.
    model_config = ConfigDict(extra="forbid")


class StateRequest(_Strict):
    """Set a scope's trading state: the desk (no user, no strategy), a strategy, a user, or a user's strategy."""

    user: str | None = _NAME
    strategy: str | None = _NAME
    state: TradingState
    reason: str = _REASON


class LimitRequest(_Strict):
    """Set or remove (null) one limit: a user's (or user's strategy's) open positions, or a strategy's order rate."""

    user: str | None = _NAME
    strategy: str | None = _NAME
    max_open_positions: int | None = Field(default=None, ge=0, le=1_000_000)
    max_orders_per_second: float | None = Field(default=None, gt=0, le=1_000_000)
    burst: int | None = Field(default=None, ge=1, le=1_000_000)
    reason: str = _REASON

    @model_validator(mode="after")
    def _one_limit(self) -> LimitRequest:
        given = self.model_fields_set
        kinds = [name for name in ("max_open_positions", "max_orders_per_second") if name in given]
        if len(kinds) != 1:
            raise ValueError("give exactly one of max_open_positions and max_orders_per_second (null removes it)")
        if kinds == ["max_open_positions"]:
            if self.user is None:
                raise ValueError("max_open_positions is set for a user, or for one user's strategy: give user")
            if "burst" in given:
                raise ValueError("burst belongs to max_orders_per_second")
        else:
            if self.strategy is None or self.user is not None:
                raise ValueError("max_orders_per_second is set for a strategy: give strategy and no user")
            if self.max_orders_per_second is not None and self.burst is None:
                raise ValueError("max_orders_per_second needs a burst (the orders it admits at once)")
        return self


class FlattenRequest(_Strict):
    """Close every open position in a scope, and set its state in the same step if asked."""

    user: str | None = _NAME
    strategy: str | None = _NAME
    state: Literal[TradingState.REDUCING, TradingState.HALTED] | None = Field(
        default=None, description="REDUCING or HALTED set in the same step, so no BUY slips in; null: unchanged."
    )
    reason: str = _REASON


class RateLimitBody(BaseModel):
    """An order-rate limit: a token bucket of ``burst`` orders refilled at ``max_orders_per_second``."""

    max_orders_per_second: float
    burst: int

    @classmethod
    def of(cls, limit: RateLimit | None) -> RateLimitBody | None:
        """The body of ``limit`` (None stays None)."""
        return None if limit is None else cls(max_orders_per_second=limit.per_second, burst=limit.burst)


class ControlChangeBody(BaseModel):
    """One recorded control change, as the order log keeps it."""

    sequence: int = Field(description="Its place in the order log, in the orders' sequence.")
    id: str
    at: datetime
    operator: str = Field(description="Who: the API key's digest, or cli, or loopback.")
    reason: str
    action: Literal["state", "position_limit", "rate_limit", "flatten"]
    user: str | None
    strategy: str | None
    before: TradingState | int | RateLimitBody | None = Field(
        description="The state or limit before (state, position_limit, rate_limit; flatten: the state before)."
    )
    after: TradingState | int | RateLimitBody | None
    closed: list[PositionBody] = Field(default_factory=list, description="The positions a flatten closed.")

    @classmethod
    def of(cls, entry: ControlLogEntry) -> ControlChangeBody:
        """The body of a logged control change."""
        change, action = entry.change, entry.change.action
        before: TradingState | int | RateLimitBody | None
        after: TradingState | int | RateLimitBody | None
        closed: list[PositionBody] = []
        if isinstance(action, StateChange):
            kind, before, after = "state", action.before, action.after
        elif isinstance(action, PositionLimitChange):
            kind, before, after = "position_limit", action.before, action.after
        elif isinstance(action, RateLimitChange):
            kind, before, after = "rate_limit", RateLimitBody.of(action.before), RateLimitBody.of(action.after)
        else:
            kind = "flatten"
            before = after = None
            if isinstance(action, Flatten) and action.state is not None:
                before, after = action.state.before, action.state.after
            closed = [PositionBody.from_position(p) for p in action.closed]
        return cls(
            sequence=entry.sequence,
            id=change.change_id,
            at=change.at,
            operator=change.operator,
            reason=change.reason,
            action=kind,
            user=action.scope.user,
            strategy=action.scope.strategy,
            before=before,
            after=after,
            closed=closed,
        )


class StateBody(BaseModel):
    """A scope that is not ACTIVE, with the change that set it."""

    user: str | None
    strategy: str | None
    state: TradingState
    reason: str
    sequence: int
    at: datetime


class LimitBody(BaseModel):
    """A limit in force, with the change that set it: max_open_positions, or max_orders_per_second and burst."""

    user: str | None
    strategy: str | None
    max_open_positions: int | None = None
    max_orders_per_second: float | None = None
    burst: int | None = None
    sequence: int
    at: datetime


class ControlsAnswer(BaseModel):
    """Every scope not ACTIVE, and every limit."""

    states: list[StateBody]
    limits: list[LimitBody]

    @classmethod
    def of(cls, controls: Controls) -> ControlsAnswer:
        """The body of the controls in force."""
        states = [
            StateBody(
                user=s.scope.user,
                strategy=s.scope.strategy,
                state=s.state,
                reason=s.reason,
                sequence=s.sequence,
                at=s.at,
            )
            for s in controls.states()
        ]
        limits = [
            LimitBody(
                user=limit.scope.user,
                strategy=limit.scope.strategy,
                max_open_positions=limit.max_open_positions,
                sequence=limit.sequence,
                at=limit.at,
            )
            for limit in controls.position_limits()
        ]
        limits += [
            LimitBody(
                user=None,
                strategy=rate.strategy,
                max_orders_per_second=rate.limit.per_second,
                burst=rate.limit.burst,
                sequence=rate.sequence,
                at=rate.at,
            )
            for rate in controls.rate_limits()
        ]
        return cls(states=states, limits=sorted(limits, key=lambda limit: limit.sequence))
