"""The HTTP contract's bodies, as pydantic models that also document the OpenAPI schema."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator

from trading_orders.ascii_case import ASCII_SPACE, ascii_upper
from trading_orders.domain.model import OrderLogEntry, OrderStatus, Position, RejectReason, Side, Trade

NAME_MAX_LENGTH = 64

# Names travel into logs and files: refuse control characters outright rather
# than store something a terminal or a log parser would misread.
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX_LENGTH, pattern=r"^[^\x00-\x1f\x7f]+$"),
]


def _iso_only(value: object) -> object:
    # pydantic would read "0.5" as a Unix timestamp; on the wire times are ISO-8601 only.
    if isinstance(value, int | float) or (isinstance(value, str) and _looks_numeric(value)):
        raise ValueError("expected an ISO-8601 time such as 2026-11-24T09:15:00Z")
    return value


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


IsoTime = Annotated[datetime, BeforeValidator(_iso_only)]


class CreateOrderRequest(BaseModel):
    """An order from a strategy, in the brief's field names."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"STRATEGY": "STRATEGY_B", "INSTRUMENT": "MINDA", "POSITION": "BUY"}]},
    )

    strategy: Name = Field(alias="STRATEGY", description="The strategy that emits the order.")
    instrument: Name = Field(alias="INSTRUMENT", description="The instrument's symbol, e.g. GRASIM.")
    side: Side = Field(alias="POSITION", description="BUY or SELL (any letter case).")

    @field_validator("side", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return ascii_upper(value.strip(ASCII_SPACE)) if isinstance(value, str) else value


class UserDecisionBody(BaseModel):
    """What the order meant for one user who runs the strategy."""

    user: str
    status: OrderStatus
    reason: RejectReason | None = Field(description="Why it was rejected for this user; null when accepted.")


class OrderAnswer(BaseModel):
    """The answer to an order: overall status and one decision per user who runs the strategy."""

    model_config = ConfigDict(
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "RESPONSE": "ACCEPTED",
                    "order_id": "5f0c6a8e2d9b4c1f8a7e3b2d1c0f9e8a",
                    "received_at": "2026-11-24T09:15:00.123456Z",
                    "strategy": "STRATEGY_B",
                    "instrument": "MINDA",
                    "position": "BUY",
                    "reason": None,
                    "decisions": [{"user": "Holland Proctor", "status": "ACCEPTED", "reason": None}],
                }
            ]
        },
    )

    response: OrderStatus = Field(alias="RESPONSE", description="ACCEPTED when accepted for at least one user.")
    order_id: str = Field(description="Opaque id of this order.")
    received_at: datetime = Field(description="When the order was decided, ISO-8601 UTC.")
    strategy: str
    instrument: str
    position: Side
    reason: (
        Literal[
            RejectReason.UNKNOWN_STRATEGY,
            RejectReason.TRADING_HALTED,
            RejectReason.REDUCE_ONLY,
            RejectReason.RATE_LIMITED,
        ]
        | None
    ) = Field(
        description=(
            "Why the order was rejected as a whole, null otherwise: UNKNOWN_STRATEGY when no user runs the "
            "strategy, RATE_LIMITED when the strategy is over its order rate (decisions is then empty); "
            "TRADING_HALTED or REDUCE_ONLY when the desk or the strategy is halted or reducing (each user's "
            "decision says so too). See docs/controls.md."
        )
    )
    decisions: list[UserDecisionBody]

    @classmethod
    def from_entry(cls, entry: OrderLogEntry) -> OrderAnswer:
        """The answer for a recorded order."""
        decision = entry.decision
        return cls(
            response=decision.status,
            order_id=decision.order_id,
            received_at=decision.received_at,
            strategy=decision.order.strategy,
            instrument=decision.order.instrument,
            position=decision.order.side,
            reason=decision.reason,
            decisions=[UserDecisionBody(user=d.user, status=d.status, reason=d.reason) for d in decision.decisions],
        )


class LoggedOrderBody(OrderAnswer):
    """An order as the order log keeps it: the answer it got, and its place in the log."""

    sequence: int = Field(description="Position in the order log, from 1, without gaps.")

    @classmethod
    def from_logged(cls, entry: OrderLogEntry) -> LoggedOrderBody:
        """The body for a logged order."""
        answer = OrderAnswer.from_entry(entry)
        return cls(**answer.model_dump(), sequence=entry.sequence)


_SCAN_LIMITED = (
    "True when the page read its budget of log entries before it filled: it may hold fewer entries than "
    "asked, even none, and next_cursor continues after the last entry read."
)


class OrdersPage(BaseModel):
    """Orders newest first; pass next_cursor as cursor for the next page (null: no more)."""

    orders: list[LoggedOrderBody]
    next_cursor: str | None
    scan_limited: bool = Field(default=False, description=_SCAN_LIMITED)


class TradeBody(BaseModel):
    """A closed round trip: the BUY that opened a position and the SELL that closed it."""

    user: str
    strategy: str
    instrument: str
    buy_order_id: str
    bought_at: datetime
    sell_order_id: str
    sold_at: datetime
    holding_seconds: float

    @classmethod
    def from_trade(cls, trade: Trade) -> TradeBody:
        """The body for ``trade``."""
        return cls(
            user=trade.user,
            strategy=trade.strategy,
            instrument=trade.instrument,
            buy_order_id=trade.buy_order_id,
            bought_at=trade.bought_at,
            sell_order_id=trade.sell_order_id,
            sold_at=trade.sold_at,
            holding_seconds=trade.holding_seconds,
        )


class TradesPage(BaseModel):
    """Trades newest first (by SELL); pass next_cursor as cursor for the next page (null: no more)."""

    trades: list[TradeBody]
    next_cursor: str | None
    scan_limited: bool = Field(default=False, description=_SCAN_LIMITED)


class PositionBody(BaseModel):
    """An open position."""

    user: str
    strategy: str
    instrument: str
    order_id: str = Field(description="The order that opened the position.")
    opened_at: datetime = Field(description="When that order was decided, ISO-8601 UTC.")

    @classmethod
    def from_position(cls, position: Position) -> PositionBody:
        """The body for ``position``."""
        return cls(
            user=position.user,
            strategy=position.strategy,
            instrument=position.instrument,
            order_id=position.order_id,
            opened_at=position.opened_at,
        )


class PositionsAnswer(BaseModel):
    """The open positions that match the filters, in the order they were opened."""

    positions: list[PositionBody]


class UserSummary(BaseModel):
    """A user, the strategies they run with each universe, and how many positions they hold."""

    user: str
    strategies: dict[str, list[str]] = Field(description="strategy -> universe, symbols sorted.")
    open_positions: int


class UsersAnswer(BaseModel):
    """Every user in the profile."""

    users: list[UserSummary]


class UserDetail(UserSummary):
    """One user: profile, open positions, and the latest orders that had a decision for them."""

    positions: list[PositionBody]
    recent_orders: list[LoggedOrderBody] = Field(description="Newest first, at most 20.")
    recent_orders_scan_limited: bool = Field(
        default=False,
        description="True when the search for recent_orders read its budget of log entries first: "
        "there may be older ones; GET /orders?user=<user>&cursor=<recent_orders_next_cursor> goes on.",
    )
    recent_orders_next_cursor: str | None = Field(
        default=None, description="Where GET /orders?user=<user> continues after recent_orders; null: no more."
    )


class StrategySummary(BaseModel):
    """A strategy, the users who run it, and its universe (the union over those users)."""

    strategy: str
    users: list[str]
    universe: list[str]


class StrategiesAnswer(BaseModel):
    """Every strategy some user runs."""

    strategies: list[StrategySummary]


class ReloadAnswer(BaseModel):
    """The outcome of re-reading the profile file."""

    reloaded: bool
    detail: str
    positions_outside_profile: list[PositionBody] = Field(
        default=[], description="Held positions the new profile no longer covers; they are kept."
    )


class HealthAnswer(BaseModel):
    """Whether the service takes orders, and where its order log stands."""

    status: Literal["ok", "unavailable"] = Field(description="ok when orders can be taken.")
    store_reachable: bool = Field(
        description="The store can take orders: its files in place and writable, its database answering and not held."
    )
    last_sequence: int = Field(description="Sequence of the newest order in the log (0 when empty).")
    open_positions: int
    reason: str | None = Field(
        default=None,
        description="Why orders cannot be taken now, when the store can say (e.g. a lock another process holds).",
    )


class Problem(BaseModel):
    """RFC 9457 problem details: why a request could not be served (docs/api.md, "Errors")."""

    # RFC 9457: a client ignores extension members it does not know.
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "https://trading-orders.invalid/problems/order-not-found",
                    "title": "No such order",
                    "status": 404,
                    "detail": "no order has id 'f00'",
                }
            ]
        },
    )

    type: str = Field(
        description="A URI naming the kind of problem: https://trading-orders.invalid/problems/<kind>, "
        "or about:blank when the HTTP status says it all."
    )
    title: str = Field(description="The same for every problem of this type.")
    status: int = Field(description="The HTTP status of the answer.")
    detail: str = Field(description="What is wrong with this request, in words.")
    incident: str | None = Field(
        default=None, description="On a 500 or a store's 503: the id of the service's log line with the cause."
    )


class FieldProblem(BaseModel):
    """One malformed field: where it is and what is wrong with it."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int] = Field(description='Where: ["body", "STRATEGY"], ["query", "user"], ["header", ...].')
    msg: str
    type: str = Field(description="pydantic's error type, e.g. missing, string_too_long.")


class ValidationProblem(Problem):
    """A malformed request: ``detail`` (and ``message``) name each field and its problem, ``errors`` lists them."""

    message: str = Field(description="The same as detail; kept for clients of earlier versions.")
    errors: list[FieldProblem]


class ProfileProblem(Problem):
    """The profile file was not reloaded: ``detail`` says what is wrong with it; the previous profile stays."""

    reloaded: Literal[False]


# The bodies problem_details builds; the OpenAPI schema gives them its media type.
PROBLEM_MODELS: tuple[type[Problem], ...] = (Problem, ValidationProblem, ProfileProblem)

# The OpenAPI answer of every endpoint with a parameter: FastAPI's own
# default describes a body the service no longer sends.
MALFORMED_PARAMETER: dict[int | str, dict[str, object]] = {
    422: {"model": ValidationProblem, "description": "A parameter or header is malformed; detail names it."}
}


class DeskSessionRequest(BaseModel):
    """The API key, typed into the desk once, traded for a session cookie."""

    api_key: str = Field(min_length=1, max_length=1024, description="The service's TRADING_ORDERS_API_KEY.")


class DeskSessionAnswer(BaseModel):
    """Whether the desk may read: the service needs a key, and this browser has a session."""

    key_required: bool = Field(description="True when the service is run with TRADING_ORDERS_API_KEY.")
    active: bool = Field(description="True when this request may read: no key is needed, or it carries one.")
    expires_at: datetime | None = Field(description="When the session cookie stops working; null without one.")
    change_token: str | None = Field(
        default=None,
        description="With a session: the token a control change made with it sends as X-Desk-Token; else null.",
    )
