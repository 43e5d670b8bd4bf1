"""Whole numbers as the service reads them from text: 1-18 ASCII digits, nothing else.

Never ``str.isdigit()`` or a bare ``int()``: they take "²", Arabic-Indic or
mathematical digits (and " 5", "+5", "1_0") for digits. The HTTP parameters
and headers and the command line read numbers by this one rule.
"""

from __future__ import annotations

import re

# The longest number any parameter or header means: 18 digits stay below 2**63.
_ASCII_NUMBER = re.compile(r"[0-9]{1,18}")


def ascii_number(text: str | bytes) -> int | None:
    """The number ``text`` writes in 1-18 ASCII digits, or None when it is anything else."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    return int(text) if _ASCII_NUMBER.fullmatch(text) else None
