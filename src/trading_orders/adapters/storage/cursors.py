"""The cursors stores hand out, read back strictly: a cursor that is not one they wrote raises InvalidCursor.

These functions check a cursor's form; each store then checks that it names
an entry it has (a cursor past the log, or past the trades in a line, names none).

A cursor is text the client sends back, so it is read with exact patterns of
ASCII digits: ``str.isdigit()`` takes "²" (which ``int()`` then refuses) and
``int()`` alone takes Arabic-Indic digits, " 7", "+7", "1_0" and, in base 16, "0x7".
"""

from __future__ import annotations

import re

from trading_orders.application.errors import InvalidCursor

# Exactly what str(n) and f"{n:x}" write: no leading zero, so each number has one
# cursor and "007" is not the cursor "7" was handed out as.
_DECIMAL_DIGITS = r"0|[1-9][0-9]{0,17}"
_HEXADECIMAL_DIGITS = r"0|[1-9a-f][0-9a-f]{0,15}"
_DECIMAL = re.compile(_DECIMAL_DIGITS)
_HEXADECIMAL = re.compile(_HEXADECIMAL_DIGITS)
_HEXADECIMAL_AND_DECIMAL = re.compile(rf"({_HEXADECIMAL_DIGITS})\.(0|[1-9][0-9]{{0,8}})")


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
