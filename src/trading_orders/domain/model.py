"""Values of the order desk: orders, positions and the decisions taken on them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # controls.py builds on this module's values; only the annotation points back.
    from trading_orders.domain.controls import RateBucket


class DomainError(Exception):
    """A rule of the domain was broken by the values it was given."""


class Side(StrEnum):
    """Which way an order trades (the brief's POSITION field)."""

    BUY = "BUY"
    SELL = "SELL"


class OrderStatus(StrEnum):
    """The answer for an order as a whole, or for one user."""

    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"


class RejectReason(StrEnum):
    """Why an order, or one user's part of it, was rejected."""

    UNKNOWN_STRATEGY = "UNKNOWN_STRATEGY"
    INSTRUMENT_NOT_IN_STRATEGY = "INSTRUMENT_NOT_IN_STRATEGY"
    ALREADY_HOLDING = "ALREADY_HOLDING"
    NO_OPEN_POSITION = "NO_OPEN_POSITION"
    # Operator controls (domain/controls.py): a state, a limit, or a rate.
    TRADING_HALTED = "TRADING_HALTED"
    REDUCE_ONLY = "REDUCE_ONLY"
    POSITION_LIMIT = "POSITION_LIMIT"
    RATE_LIMITED = "RATE_LIMITED"


class PositionScope(StrEnum):
    """What one open position belongs to.

    ``strategy``: a position is held per (user, strategy, instrument).
    ``user``: netting; a position is held per (user, instrument), whichever
    strategy opened it, and any strategy the user runs may close it.
    """

    STRATEGY = "strategy"
    USER = "user"


def _require_name(field: str, value: str) -> None:
    if not value or value != value.strip():
        raise DomainError(f"{field} must be a non-empty name without surrounding spaces, got {value!r}")


@dataclass(frozen=True, slots=True)
class Order:
    """What a strategy asks for: trade INSTRUMENT in STRATEGY, BUY or SELL."""

    strategy: str
    instrument: str
    side: Side

    def __post_init__(self) -> None:
        _require_name("strategy", self.strategy)
        _require_name("instrument", self.instrument)


@dataclass(frozen=True, slots=True)
class Position:
    """An open buy of one user, with the order that opened it."""

    user: str
    strategy: str
    instrument: str
    order_id: str
    opened_at: datetime

    def __post_init__(self) -> None:
        _require_name("user", self.user)
        _require_name("strategy", self.strategy)
        _require_name("instrument", self.instrument)
        if not self.order_id:
            raise DomainError("a position needs the id of the order that opened it")
        if self.opened_at.tzinfo is None:
            raise DomainError("opened_at must carry a time zone (UTC)")


@dataclass(frozen=True, slots=True)
class UserDecision:
    """What the order means for one user who runs its strategy."""

    user: str
    status: OrderStatus
    reason: RejectReason | None = None

    def __post_init__(self) -> None:
        if (self.status is OrderStatus.ACCEPTED) != (self.reason is None):
            raise DomainError("an accepted decision has no reason; a rejected one must have one")


@dataclass(frozen=True, slots=True)
class OrderDecision:
    """The whole answer to one order: one decision per candidate user."""

    order_id: str
    received_at: datetime
    order: Order
    decisions: tuple[UserDecision, ...]
    reason: RejectReason | None = None

    def __post_init__(self) -> None:
        if not self.order_id:
            raise DomainError("an order decision needs an order id")
        if self.received_at.tzinfo is None:
            raise DomainError("received_at must carry a time zone (UTC)")
        # A halt of the desk or the strategy refuses the order as a whole and
        # says so for each user too; no other whole-order refusal has users.
        if self.reason is not None and any(d.reason is not self.reason for d in self.decisions):
            raise DomainError("an order rejected as a whole rejects every user for the same reason")
        users = [decision.user for decision in self.decisions]
        if len(set(users)) != len(users):
            raise DomainError("an order decides at most once per user")

    @property
    def status(self) -> OrderStatus:
        """ACCEPTED when accepted for at least one user, else REJECTED."""
        if any(d.status is OrderStatus.ACCEPTED for d in self.decisions):
            return OrderStatus.ACCEPTED
        return OrderStatus.REJECTED

    @property
    def accepted_users(self) -> tuple[str, ...]:
        """The users for whom the order was accepted, in decision order."""
        return tuple(d.user for d in self.decisions if d.status is OrderStatus.ACCEPTED)


@dataclass(frozen=True, slots=True)
class Trade:
    """A closed round trip: the buy that opened a position and the sell that closed it."""

    user: str
    strategy: str
    instrument: str
    buy_order_id: str
    bought_at: datetime
    sell_order_id: str
    sold_at: datetime

    def __post_init__(self) -> None:
        if self.sold_at < self.bought_at:
            raise DomainError(f"trade {self.buy_order_id} -> {self.sell_order_id} is sold before it is bought")

    @classmethod
    def closing(cls, position: Position, sell_order_id: str, sold_at: datetime) -> Trade:
        """The trade that closing ``position`` with a sell makes."""
        return cls(
            position.user,
            position.strategy,
            position.instrument,
            position.order_id,
            position.opened_at,
            sell_order_id,
            sold_at,
        )

    @property
    def holding_seconds(self) -> float:
        """How long the position was held, in seconds."""
        return (self.sold_at - self.bought_at).total_seconds()


@dataclass(frozen=True, slots=True)
class PositionChange:
    """The positions one order opened and closed, and the trades the closing made."""

    opened: tuple[Position, ...] = ()
    closed: tuple[Position, ...] = ()
    trades: tuple[Trade, ...] = ()

    @property
    def is_empty(self) -> bool:
        """True when the order changed no position."""
        return not self.opened and not self.closed


@dataclass(frozen=True, slots=True)
class AppliedDecision:
    """A decision applied to a portfolio, with the positions it opened and closed: what a store must save."""

    decision: OrderDecision
    change: PositionChange
    # The strategy's rate-limit bucket after this order, when it has a rate limit and took a token.
    rate_bucket: RateBucket | None = None


def check_log_place(sequence: int, idempotency_key: str | None) -> None:
    """Raise DomainError unless ``sequence`` and ``idempotency_key`` can place an entry in the order log."""
    if sequence < 1:
        raise DomainError(f"order log sequences start at 1, got {sequence}")
    if idempotency_key == "":
        raise DomainError("an idempotency key, when given, is not empty")


@dataclass(frozen=True, slots=True)
class OrderLogEntry:
    """One order as the order log keeps it: its decision, its place in the log, and the client's retry key."""

    sequence: int
    decision: OrderDecision
    idempotency_key: str | None = None

    def __post_init__(self) -> None:
        check_log_place(self.sequence, self.idempotency_key)
