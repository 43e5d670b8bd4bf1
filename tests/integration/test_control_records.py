"""Control changes keep their meaning through the JSON form every store and export writes."""

from datetime import UTC, datetime, timedelta

import pytest

from trading_orders.domain.controls import (
    DESK,
    NO_CONTROLS,
    ControlAction,
    ControlChange,
    ControlLogEntry,
    ControlScope,
    RateLimit,
    TradingState,
)
from trading_orders.domain.model import Position
from trading_orders.json_records import log_entry_from_dict, log_entry_to_dict

T0 = datetime(2026, 12, 7, 9, 15, tzinfo=UTC)
OPEN = Position("Ann", "ALPHA", "INFY", "b1", T0 - timedelta(minutes=1))

ACTIONS: list[ControlAction] = [
    NO_CONTROLS.set_state(DESK, TradingState.HALTED),
    NO_CONTROLS.set_state(ControlScope("Ann", "ALPHA"), TradingState.REDUCING),
    NO_CONTROLS.set_position_limit(ControlScope(user="Ann"), 3),
    NO_CONTROLS.set_position_limit(ControlScope("Ann", "ALPHA"), None),
    NO_CONTROLS.set_rate_limit("ALPHA", RateLimit(50.0, 10)),
    NO_CONTROLS.set_rate_limit("ALPHA", None),
    NO_CONTROLS.flatten(ControlScope(user="Ann"), (OPEN,), TradingState.HALTED),
    NO_CONTROLS.flatten(DESK, ()),
]


@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: type(a).__name__)
def test_a_control_entry_reads_back_as_it_was_written(action: ControlAction) -> None:
    entry = ControlLogEntry(12, ControlChange("c-1", T0, "api-key-0123", "feed gone wrong", action), "key-1")
    assert log_entry_from_dict(log_entry_to_dict(entry)) == entry


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("action", "explode", "unknown control action"),
        ("after", "PAUSED", "PAUSED"),
        ("user", 7, "user must be a string"),
    ],
)
def test_a_damaged_control_entry_is_refused_naming_what_is_wrong(field: str, value: object, message: str) -> None:
    entry = ControlLogEntry(3, ControlChange("c-1", T0, "cli", "", NO_CONTROLS.set_state(DESK, TradingState.HALTED)))
    data = log_entry_to_dict(entry)
    data["control"][field] = value
    with pytest.raises((ValueError, TypeError), match=message):
        log_entry_from_dict(data)
