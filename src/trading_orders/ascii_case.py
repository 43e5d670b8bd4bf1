"""Letter case as the service compares names and keywords: ASCII's only.

Never ``str.upper()`` or ``str.lower()`` on what someone typed: they fold
other letters onto ASCII ones (the long s U+017F to "S", the dotless i U+0131
to "I", the Kelvin sign U+212A to "k"), so "\u017fell" would pass for SELL. The order's POSITION, the
settings' keywords and the Content-Type header are read by this one rule.
"""

from __future__ import annotations

import string

_TO_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)
_TO_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
# What may surround a keyword: JSON's white space, not a no-break space or any other.
ASCII_SPACE = " \t\r\n"


def ascii_upper(text: str) -> str:
    """``text`` with a-z made A-Z and every other character as it is."""
    return text.translate(_TO_UPPER)


def ascii_lower(text: str) -> str:
    """``text`` with A-Z made a-z and every other character as it is."""
    return text.translate(_TO_LOWER)
