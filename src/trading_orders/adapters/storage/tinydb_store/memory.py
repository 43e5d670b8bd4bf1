"""Stores that keep everything in memory: for tests and throwaway runs, nothing survives a restart."""

from __future__ import annotations

from collections.abc import Iterator

from trading_orders.adapters.storage.cursors import decimal_cursor, not_handed_out
from trading_orders.adapters.storage.tinydb_store.parts import StoredPositions
from trading_orders.domain.controls import LogEntry, entry_id
from trading_orders.domain.model import Trade


class InMemoryPositionStore:
    """Open positions in a dict; same contract as the TinyDB files, without durability."""

    def __init__(self) -> None:
        """Start empty."""
        self._snapshot = StoredPositions((), 0)

    def load(self) -> StoredPositions:
        """The latest snapshot."""
        return self._snapshot

    def save(self, snapshot: StoredPositions) -> None:
        """Keep ``snapshot`` as the latest."""
        self._snapshot = snapshot

    def close(self) -> None:
        """Nothing to release."""


class InMemoryTradeLog:
    """Trades in a list; same contract as the file log, without durability."""

    def __init__(self) -> None:
        """Start empty."""
        self.trades: list[tuple[int, Trade]] = []

    def last_sequence(self) -> int:
        """The sequence of the newest SELL with trades recorded, 0 when none."""
        return self.trades[-1][0] if self.trades else 0

    def write(self, trades: tuple[Trade, ...], sequence: int) -> None:
        """Record the trades SELL ``sequence`` made."""
        if sequence <= self.last_sequence():
            raise ValueError(f"trade log is at sequence {self.last_sequence()}, cannot append {sequence}")
        self.trades.extend((sequence, trade) for trade in trades)

    def sync(self) -> int:
        """Nothing to do: memory is as durable as it gets; returns the newest SELL with trades."""
        return self.last_sequence()

    def newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, Trade]]:
        """(cursor, trade) newest first; a cursor is the trade's index."""
        end = _index(cursor, len(self.trades))
        for index in range(end - 1, -1, -1):
            yield str(index), self.trades[index][1]

    def close(self) -> None:
        """Nothing to release."""


def _index(cursor: str | None, size: int) -> int:
    if cursor is None:
        return size
    index = decimal_cursor(cursor)
    # A cursor names an entry: one at or past the end names none.
    if index >= size:
        raise not_handed_out(cursor)
    return index


class InMemoryOrderLog:
    """The order log as a list; same contract as the file log, without durability."""

    def __init__(self) -> None:
        """Start empty."""
        self._entries: list[LogEntry] = []
        self._by_key: dict[str, LogEntry] = {}

    def check(self, sequence: int = 0, offset: int | None = None) -> None:
        """Nothing to check: entries were checked on their way in."""

    def last_sequence(self) -> int:
        """The sequence of the newest entry, 0 when the log is empty."""
        return self._entries[-1].sequence if self._entries else 0

    def durable_sequence(self) -> int:
        """The newest entry's sequence: written is as durable as memory gets."""
        return self.last_sequence()

    def end_offset(self) -> int:
        """The index the next entry will take."""
        return len(self._entries)

    def write(self, entry: LogEntry) -> None:
        """Append ``entry``; its sequence must be one past the last."""
        self.append(entry)

    def sync(self) -> int:
        """Nothing to do; returns the newest sequence."""
        return self.last_sequence()

    def roll_back(self, error: BaseException) -> None:
        """Nothing to drop: every entry written is as durable as memory gets."""

    def index_through(self, sequence: int) -> None:
        """Nothing to move: this log is all memory."""

    def append(self, entry: LogEntry) -> None:
        """Append ``entry``; its sequence must be one past the last."""
        if entry.sequence != self.last_sequence() + 1:
            raise ValueError(f"order log is at sequence {self.last_sequence()}, cannot append {entry.sequence}")
        self._entries.append(entry)
        if entry.idempotency_key is not None:
            self._by_key[entry.idempotency_key] = entry

    def entries_after(self, sequence: int) -> Iterator[LogEntry]:
        """The entries with a sequence above ``sequence``, oldest first."""
        # Sequences are 1, 2, 3, ...: entry n sits at index n - 1. By index,
        # not a slice: a follower reading 500 at a time must not copy the log each time.
        entries = self._entries
        return (entries[index] for index in range(max(sequence, 0), len(entries)))

    def find_by_idempotency_key(self, key: str) -> LogEntry | None:
        """The entry recorded with idempotency key ``key``, if any."""
        return self._by_key.get(key)

    def reachable(self) -> bool:
        """Always: memory does not go away."""
        return True

    def newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, LogEntry]]:
        """(cursor, entry) newest first; a cursor is the entry's index."""
        end = _index(cursor, len(self._entries))
        for index in range(end - 1, -1, -1):
            yield str(index), self._entries[index]

    def find_by_order_id(self, order_id: str) -> LogEntry | None:
        """The entry of order ``order_id``, searched newest first."""
        return next((e for e in reversed(self._entries) if entry_id(e) == order_id), None)

    def close(self) -> None:
        """Nothing to release."""
