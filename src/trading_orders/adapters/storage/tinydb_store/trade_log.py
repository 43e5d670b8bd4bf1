"""The default trade log: one JSON line per closing SELL, holding every trade it made."""

from __future__ import annotations

import logging
import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

from trading_orders.adapters.storage.cursors import hexadecimal_and_decimal_cursor, not_handed_out
from trading_orders.adapters.storage.file_lock import ExclusiveFileLock
from trading_orders.adapters.storage.tinydb_store.json_lines import DamagedLine, JsonLinesFile, visible_line_start
from trading_orders.application.errors import CorruptStore
from trading_orders.domain.model import DomainError, Trade
from trading_orders.json_records import trade_from_dict, trade_to_dict

TRADE_LOG_FILE = "trades.jsonl"
_KIND = "trade-log line"

logger = logging.getLogger(__name__)


def _check_line(offset: int, record: dict[str, Any], previous: int) -> int:
    sequence = record["sequence"]
    if not isinstance(sequence, int) or sequence <= previous:
        raise ValueError(f"sequence {sequence!r} does not follow {previous}")
    # Each line names the SELL of the line written before it, so a line lost
    # from the middle is found here, at the cost of one comparison. Lines
    # written before the field existed have none and are taken as they are,
    # so an older file stays readable (only verify finds a line lost among them).
    if "after" in record and (type(record["after"]) is not int or record["after"] != previous):
        before = f"the line before holds order {previous}" if previous else "it is the first line"
        raise ValueError(
            f"it was written after the trades of order {record['after']!r}, but {before}: the lines between were lost"
        )
    trades = [trade_from_dict(trade) for trade in record["trades"]]
    if not trades:
        raise ValueError("a line holds at least one trade")
    return sequence


def trade_log_damage(directory: Path, holds_through: int | None) -> str | None:
    """What is wrong with the trade log in ``directory``, None when it is sound; changes nothing.

    ``holds_through`` is the newest SELL whose trades the position snapshot
    found durable in it (None when unknown): a trade log ending before that
    has lost lines, even if a crash's torn last line is all that is left of them.
    """
    path = directory / TRADE_LOG_FILE
    if not path.exists():
        if holds_through:
            return (
                f"it is missing, but the position snapshot found the trades of SELLs up to order {holds_through} in it"
            )
        return None
    try:
        lines = JsonLinesFile(path, _check_line, _KIND, read_only=True, derived=True)
        lines.check()
    except CorruptStore as damage:
        return str(damage).removeprefix(f"{path}: ")
    if holds_through is not None and lines.last_sequence < holds_through:
        return (
            f"it holds the trades of SELLs up to order {lines.last_sequence}, but the position snapshot "
            f"found them up to order {holds_through}: it lost lines"
        )
    return None


class JsonLinesTradeLog:
    """Trades in ``<directory>/trades.jsonl``; one writing process at a time.

    The trades are derived from the order log: a writer that finds the file
    damaged (a line lost from its middle too: each line names the SELL of
    the line before it), or shorter than the position snapshot found it,
    sets it aside as ``trades.jsonl.damaged`` and starts an empty one, which
    the store's recovery fills again by replaying the whole order log.
    """

    def __init__(self, directory: Path, *, read_only: bool = False, holds_through: int | None = None) -> None:
        """Open (or create) the trade log; a writer checks it against ``holds_through`` (see trade_log_damage)."""
        if not read_only:
            _set_aside_if_damaged(directory, holds_through)
        # Trades are written only for orders already durable in the order
        # log, so readers may see them before this file's own fsync.
        self._file = JsonLinesFile(
            directory / TRADE_LOG_FILE, _check_line, _KIND, read_only=read_only, visible_unsynced=True
        )

    def check(self) -> None:
        """Check every line; raises CorruptStore naming the first bad one."""
        self._file.check()

    def last_sequence(self) -> int:
        """The sequence of the newest SELL with trades recorded, 0 when none."""
        return self._file.last_sequence

    def write(self, trades: tuple[Trade, ...], sequence: int) -> None:
        """Record the trades SELL ``sequence`` made in one line, not yet durable (see sync())."""
        self._file.write(self._line(trades, sequence), sequence)

    def sync(self) -> int:
        """Make every line written so far durable; returns the newest SELL whose trades are durable."""
        return self._file.sync()

    def append(self, trades: tuple[Trade, ...], sequence: int) -> None:
        """Record the trades SELL ``sequence`` made in one line, so a crash keeps all of them or none; durable."""
        self._file.append(self._line(trades, sequence), sequence)

    def _line(self, trades: tuple[Trade, ...], sequence: int) -> dict[str, Any]:
        """The line that records ``trades`` of SELL ``sequence``, after the file's last line (see _check_line)."""
        return {"sequence": sequence, "after": self._file.last_sequence, "trades": [trade_to_dict(t) for t in trades]}

    def oldest_first(self) -> Generator[tuple[int, list[Trade]], None, None]:
        """(SELL sequence, its trades) of each line, oldest first, up to the end found at opening; close() ends it."""
        for offset, record in self._file.forward():
            yield record["sequence"], self._trades(offset, record)

    def newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, Trade]]:
        """(cursor, trade) newest first; a cursor is "<line offset>.<index in the line>"."""
        before: int | None = None
        if cursor is not None:
            before, index = hexadecimal_and_decimal_cursor(cursor)
            trades = self._trades(before, self._file.read_at(visible_line_start(self._file, before, cursor)))
            # A cursor names one of the line's trades: an index past them names none.
            if index >= len(trades):
                raise not_handed_out(cursor)
            for position in range(index - 1, -1, -1):
                yield f"{before:x}.{position}", trades[position]
        for offset, record in self._file.backward(before):
            trades = self._trades(offset, record)
            for position in range(len(trades) - 1, -1, -1):
                yield f"{offset:x}.{position}", trades[position]

    def _trades(self, offset: int, record: dict[str, Any]) -> list[Trade]:
        """The trades of the line at ``offset``; raises DamagedLine if it holds none it could have written."""
        try:
            return [trade_from_dict(trade) for trade in record["trades"]]
        except (DomainError, KeyError, TypeError, ValueError) as error:
            raise DamagedLine(self._file.path, offset, _KIND, error) from error

    def close(self) -> None:
        """Close the file and release it for another process."""
        self._file.close()


def _set_aside_if_damaged(directory: Path, holds_through: int | None) -> None:
    """Move a damaged trade log to ``trades.jsonl.damaged`` (replacing an earlier one), with a WARNING."""
    path = directory / TRADE_LOG_FILE
    directory.mkdir(parents=True, exist_ok=True)
    # Held while the file is judged and moved: another service's file is never set aside.
    lock = ExclusiveFileLock(path)
    try:
        damage = trade_log_damage(directory, holds_through)
        if damage is None:
            return
        if not path.exists():
            logger.warning("%s: %s; rebuilding it from the whole order log", path, damage)
            return
        aside = path.with_name(f"{TRADE_LOG_FILE}.damaged")
        os.replace(path, aside)
    finally:
        lock.close()
    logger.warning(
        "%s is damaged (%s): set aside as %s; rebuilding it from the whole order log",
        path,
        damage,
        aside,
    )
