"""The cursors stores hand out, read back strictly: a cursor that is not one they wrote raises InvalidCursor.

A cursor is text the client sends back, so it is read with exact patterns of
ASCII digits: ``str.isdigit()`` takes "²" (which ``int()`` then refuses) and
``int()`` alone takes Arabic-Indic digits, " 7", "+7", "1_0" and, in base 16, "0x7".
"""

from __future__ import annotations

import re

from trading_orders.application.errors import InvalidCursor

_DECIMAL = re.compile(r"[0-9]{1,18}")
_HEXADECIMAL = re.compile(r"[0-9a-f]{1,16}")
_HEXADECIMAL_AND_DECIMAL = re.compile(r"([0-9a-f]{1,16})\.([0-9]{1,9})")


def not_handed_out(cursor: str) -> InvalidCursor:
    """The error for ``cursor``, which this service did not hand out."""
    return InvalidCursor(f"cursor {cursor!r} was not handed out by this service")


def decimal_cursor(cursor: str) -> int:
    """The number a cursor written as ``str(n)`` names."""
    if _DECIMAL.fullmatch(cursor) is None:
        raise not_handed_out(cursor)
    return int(cursor)


def hexadecimal_cursor(cursor: str) -> int:
    """The number a cursor written as ``f"{n:x}"`` names."""
    if _HEXADECIMAL.fullmatch(cursor) is None:
        raise not_handed_out(cursor)
    return int(cursor, 16)


def hexadecimal_and_decimal_cursor(cursor: str) -> tuple[int, int]:
    """The two numbers a cursor written as ``f"{n:x}.{m}"`` names."""
    parts = _HEXADECIMAL_AND_DECIMAL.fullmatch(cursor)
    if parts is None:
        raise not_handed_out(cursor)
    return int(parts[1], 16), int(parts[2])
