"""Positions, trades and order-log entries as JSON objects, and back with checks.

One form for every ring that writes them: the TinyDB and SQL stores keep
them so, and `export`/`import` move them between stores in it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from trading_orders.domain.model import (
    Order,
    OrderDecision,
    OrderLogEntry,
    OrderStatus,
    Position,
    RejectReason,
    Side,
    Trade,
    UserDecision,
)


def format_time(moment: datetime) -> str:
    """ISO-8601 in UTC with a trailing Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """The UTC moment of an ISO-8601 text carrying a time zone."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no time zone")
    return moment.astimezone(UTC)


def position_to_dict(position: Position) -> dict[str, str]:
    """A position as a JSON object."""
    return {
        "user": position.user,
        "strategy": position.strategy,
        "instrument": position.instrument,
        "order_id": position.order_id,
        "opened_at": format_time(position.opened_at),
    }


def position_from_dict(data: Any) -> Position:
    """The position a JSON object describes; raises ValueError/KeyError/TypeError when it does not."""
    return Position(
        user=_text(data, "user"),
        strategy=_text(data, "strategy"),
        instrument=_text(data, "instrument"),
        order_id=_text(data, "order_id"),
        opened_at=parse_time(_text(data, "opened_at")),
    )


def trade_to_dict(trade: Trade) -> dict[str, Any]:
    """A trade as a JSON object, with its holding time for readers of the file."""
    return {
        "user": trade.user,
        "strategy": trade.strategy,
        "instrument": trade.instrument,
        "buy_order_id": trade.buy_order_id,
        "bought_at": format_time(trade.bought_at),
        "sell_order_id": trade.sell_order_id,
        "sold_at": format_time(trade.sold_at),
        "holding_seconds": trade.holding_seconds,
    }


def trade_from_dict(data: Any) -> Trade:
    """The trade a JSON object describes; raises ValueError/KeyError/TypeError when it does not."""
    return Trade(
        user=_text(data, "user"),
        strategy=_text(data, "strategy"),
        instrument=_text(data, "instrument"),
        buy_order_id=_text(data, "buy_order_id"),
        bought_at=parse_time(_text(data, "bought_at")),
        sell_order_id=_text(data, "sell_order_id"),
        sold_at=parse_time(_text(data, "sold_at")),
    )


def entry_to_dict(entry: OrderLogEntry) -> dict[str, Any]:
    """An order-log entry as a JSON object."""
    decision = entry.decision
    return {
        "sequence": entry.sequence,
        "order_id": decision.order_id,
        "received_at": format_time(decision.received_at),
        "strategy": decision.order.strategy,
        "instrument": decision.order.instrument,
        "position": decision.order.side.value,
        "status": decision.status.value,
        "reason": decision.reason.value if decision.reason else None,
        "decisions": [
            {"user": d.user, "status": d.status.value, "reason": d.reason.value if d.reason else None}
            for d in decision.decisions
        ],
        "idempotency_key": entry.idempotency_key,
    }


def entry_from_dict(data: Any) -> OrderLogEntry:
    """The order-log entry a JSON object describes; raises ValueError/KeyError/TypeError when it does not."""
    sequence = data["sequence"]
    if not isinstance(sequence, int) or isinstance(sequence, bool):
        raise TypeError(f"sequence must be an integer, got {sequence!r}")
    reason = data["reason"]
    decision = OrderDecision(
        order_id=_text(data, "order_id"),
        received_at=parse_time(_text(data, "received_at")),
        order=Order(_text(data, "strategy"), _text(data, "instrument"), Side(data["position"])),
        decisions=tuple(
            UserDecision(
                _text(d, "user"),
                OrderStatus(d["status"]),
                RejectReason(d["reason"]) if d["reason"] is not None else None,
            )
            for d in data["decisions"]
        ),
        reason=RejectReason(reason) if reason is not None else None,
    )
    if decision.status.value != data["status"]:
        raise ValueError(f"status {data['status']!r} does not match its per-user decisions")
    key = data.get("idempotency_key")
    if key is not None and not isinstance(key, str):
        raise TypeError(f"idempotency_key must be a string or null, got {key!r}")
    return OrderLogEntry(sequence, decision, key)


def _text(data: Any, field: str) -> str:
    value = data[field]
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a string, got {value!r}")
    return value
