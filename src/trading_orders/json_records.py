"""Positions, trades and order-log entries as JSON objects, and back with checks.

One form for every ring that writes them: the TinyDB and SQL stores keep
them so, and `export`/`import` move them between stores in it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from trading_orders.domain.controls import (
    ControlAction,
    ControlChange,
    ControlLogEntry,
    Controls,
    ControlScope,
    Flatten,
    LogEntry,
    PositionLimitChange,
    PositionLimitInForce,
    RateLimit,
    RateLimitChange,
    RateLimitInForce,
    StateChange,
    StateInForce,
    TradingState,
)
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


def log_entry_to_dict(entry: LogEntry) -> dict[str, Any]:
    """An order-log entry, an order's or a control change's, as a JSON object (a control change's has "control")."""
    if isinstance(entry, OrderLogEntry):
        return entry_to_dict(entry)
    change = entry.change
    return {
        "sequence": entry.sequence,
        "control": {
            "id": change.change_id,
            "at": format_time(change.at),
            "operator": change.operator,
            "reason": change.reason,
            **action_to_dict(change.action),
        },
        "idempotency_key": entry.idempotency_key,
    }


def log_entry_from_dict(data: Any) -> LogEntry:
    """The entry a JSON object describes, an order's or a control change's; raises ValueError/KeyError/TypeError."""
    if not isinstance(data, dict) or "control" not in data:
        return entry_from_dict(data)
    sequence = data["sequence"]
    if not isinstance(sequence, int) or isinstance(sequence, bool):
        raise TypeError(f"sequence must be an integer, got {sequence!r}")
    control = data["control"]
    change = ControlChange(
        change_id=_text(control, "id"),
        at=parse_time(_text(control, "at")),
        operator=_text(control, "operator"),
        reason=_text(control, "reason"),
        action=action_from_dict(control),
    )
    key = data.get("idempotency_key")
    if key is not None and not isinstance(key, str):
        raise TypeError(f"idempotency_key must be a string or null, got {key!r}")
    return ControlLogEntry(sequence, change, key)


def action_to_dict(action: ControlAction) -> dict[str, Any]:
    """What a control change did, as the fields of a JSON object ("action" names which kind)."""
    scope = action.scope
    fields: dict[str, Any] = {"user": scope.user, "strategy": scope.strategy}
    if isinstance(action, StateChange):
        return {"action": "state", **fields, "before": action.before.value, "after": action.after.value}
    if isinstance(action, PositionLimitChange):
        return {"action": "position_limit", **fields, "before": action.before, "after": action.after}
    if isinstance(action, RateLimitChange):
        return {"action": "rate_limit", **fields, "before": _rate(action.before), "after": _rate(action.after)}
    state = action.state
    return {
        "action": "flatten",
        **fields,
        "closed": [position_to_dict(p) for p in action.closed],
        "state": None if state is None else {"before": state.before.value, "after": state.after.value},
    }


def action_from_dict(data: Any) -> ControlAction:
    """The control action a JSON object's fields describe (see action_to_dict)."""
    scope = ControlScope(_name_or_none(data, "user"), _name_or_none(data, "strategy"))
    kind = data["action"]
    if kind == "state":
        return StateChange(scope, TradingState(data["before"]), TradingState(data["after"]))
    if kind == "position_limit":
        return PositionLimitChange(scope, _count_or_none(data["before"]), _count_or_none(data["after"]))
    if kind == "rate_limit":
        if scope.strategy is None or scope.user is not None:
            raise ValueError("a rate limit is set for a strategy")
        return RateLimitChange(scope.strategy, _rate_from(data["before"]), _rate_from(data["after"]))
    if kind == "flatten":
        state = data["state"]
        set_state = (
            None if state is None else StateChange(scope, TradingState(state["before"]), TradingState(state["after"]))
        )
        return Flatten(scope, tuple(position_from_dict(p) for p in data["closed"]), set_state)
    raise ValueError(f"unknown control action {kind!r}")


def controls_to_dict(controls: Controls) -> dict[str, Any]:
    """The states and limits in force as a JSON object, for a snapshot that replays no log before it."""
    return {
        "states": [
            {
                "user": s.scope.user,
                "strategy": s.scope.strategy,
                "state": s.state.value,
                "reason": s.reason,
                "sequence": s.sequence,
                "at": format_time(s.at),
            }
            for s in controls.states()
        ],
        "position_limits": [
            {
                "user": limit.scope.user,
                "strategy": limit.scope.strategy,
                "max_open_positions": limit.max_open_positions,
                "sequence": limit.sequence,
                "at": format_time(limit.at),
            }
            for limit in controls.position_limits()
        ],
        "rate_limits": [
            {**(_rate(r.limit) or {}), "strategy": r.strategy, "sequence": r.sequence, "at": format_time(r.at)}
            for r in controls.rate_limits()
        ],
    }


def controls_from_dict(data: Any) -> Controls:
    """The controls a JSON object of controls_to_dict describes; raises ValueError/KeyError/TypeError."""
    states = [
        StateInForce(
            ControlScope(_name_or_none(s, "user"), _name_or_none(s, "strategy")),
            TradingState(s["state"]),
            _text(s, "reason"),
            _count(s["sequence"]),
            parse_time(_text(s, "at")),
        )
        for s in data["states"]
    ]
    limits = [
        PositionLimitInForce(
            ControlScope(_name_or_none(limit, "user"), _name_or_none(limit, "strategy")),
            _count(limit["max_open_positions"]),
            _count(limit["sequence"]),
            parse_time(_text(limit, "at")),
        )
        for limit in data["position_limits"]
    ]
    rates = [
        RateLimitInForce(_text(r, "strategy"), _rate_limit_of(r), _count(r["sequence"]), parse_time(_text(r, "at")))
        for r in data["rate_limits"]
    ]
    return Controls(states, limits, rates)


def _rate(limit: RateLimit | None) -> dict[str, Any] | None:
    return None if limit is None else {"max_orders_per_second": limit.per_second, "burst": limit.burst}


def _rate_from(data: Any) -> RateLimit | None:
    return None if data is None else _rate_limit_of(data)


def _rate_limit_of(data: Any) -> RateLimit:
    per_second, burst = data["max_orders_per_second"], data["burst"]
    if isinstance(per_second, bool) or not isinstance(per_second, int | float):
        raise TypeError(f"max_orders_per_second must be a number, got {per_second!r}")
    return RateLimit(float(per_second), _count(burst))


def _count_or_none(value: Any) -> int | None:
    return None if value is None else _count(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a whole number, got {value!r}")
    return value


def _name_or_none(data: Any, field: str) -> str | None:
    return None if data[field] is None else _text(data, field)


def _text(data: Any, field: str) -> str:
    value = data[field]
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a string, got {value!r}")
    return value
