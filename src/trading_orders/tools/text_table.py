"""A table of plain text that fits a width: wrapping text at spaces, dropping columns, never cutting a value.

A cut timestamp (``2026-12…``) or id says nothing, so a value that must be read whole is
never wrapped or cut: when the columns do not fit, text cells wrap at their spaces first, then
the columns the caller names as least needed are left out, and a last line says which.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

# Between two columns.
GAP = "  "


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its header, and whether its cells are text that may wrap at spaces or values read whole."""

    name: str
    wraps: bool = False


@dataclass(frozen=True, slots=True)
class _Measured:
    index: int
    name: str
    wraps: bool
    narrowest: int
    widest: int


def _measure(index: int, column: Column, cells: Sequence[str]) -> _Measured:
    lines = [column.name, *(line for cell in cells for line in cell.splitlines())]
    widest = max(len(line) for line in lines)
    if not column.wraps:
        return _Measured(index, column.name, False, widest, widest)
    longest_word = max((len(word) for line in lines for word in line.split()), default=0)
    return _Measured(index, column.name, True, max(len(column.name), longest_word), widest)


def _needed(measured: Sequence[_Measured]) -> int:
    return sum(m.narrowest for m in measured) + len(GAP) * (len(measured) - 1)


def _cell_lines(text: str, width: int, wraps: bool) -> list[str]:
    if not wraps:
        return text.splitlines() or [""]
    lines = []
    for line in text.splitlines() or [""]:
        lines += textwrap.wrap(line, width, break_long_words=False, break_on_hyphens=False) or [""]
    return lines


def table_lines(
    title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int, drop_first: Sequence[str] = ()
) -> list[str]:
    """``rows`` under ``title`` in at most ``width`` characters, leaving out ``drop_first`` in order if need be.

    Lines are wider than ``width`` only when the columns that are kept do not fit even wrapped.
    """
    measured = [_measure(index, column, [row[index] for row in rows]) for index, column in enumerate(columns)]
    dropped: list[str] = []
    for name in drop_first:
        if _needed(measured) <= width:
            break
        measured = [m for m in measured if m.name != name]
        dropped.append(name)
    # What is left over goes to the wrapping columns, from the left, up to their widest cell.
    spare = max(width - _needed(measured), 0)
    widths = []
    for m in measured:
        grown = min(m.widest, m.narrowest + spare)
        spare -= grown - m.narrowest
        widths.append(grown)
    lines = [title, *_side_by_side([[m.name] for m in measured], widths)]
    lines += _side_by_side([["-" * w] for w in widths], widths)
    laid_out = list(zip(measured, widths, strict=True))
    for row in rows:
        lines += _side_by_side([_cell_lines(row[m.index], w, m.wraps) for m, w in laid_out], widths)
    if dropped:
        note = f"(not shown at {width} columns: {', '.join(dropped)}; --json gives every field)"
        lines += textwrap.wrap(note, width, break_long_words=False, break_on_hyphens=False)
    return lines


def _side_by_side(cells: Sequence[list[str]], widths: Sequence[int]) -> list[str]:
    """The lines of one row whose cells are each a list of lines."""
    height = max(len(lines) for lines in cells)
    padded = [lines + [""] * (height - len(lines)) for lines in cells]
    pairs = list(zip(padded, widths, strict=True))
    return [GAP.join(lines[at].ljust(w) for lines, w in pairs).rstrip() for at in range(height)]
