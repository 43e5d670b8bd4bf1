"""Stores that keep everything in memory: for tests and throwaway runs, nothing survives a restart."""

from __future__ import annotations

from collections.abc import Iterator

from trading_orders.application.errors import InvalidCursor
from trading_orders.application.ports import StoredPositions
from trading_orders.domain.model import OrderLogEntry, Position, PositionChange, Trade


class InMemoryPositionStore:
    """Open positions in a dict; same contract as the file store, without durability."""

    def __init__(self) -> None:
        """Start empty."""
        self._positions: dict[Position, None] = {}
        self._applied_sequence = 0

    def load(self) -> StoredPositions:
        """Every stored open position and the sequence of the last order applied."""
        return StoredPositions(tuple(self._positions), self._applied_sequence)

    def apply(self, change: PositionChange, sequence: int) -> None:
        """Record ``change`` and ``sequence`` together."""
        missing = [p for p in change.closed if p not in self._positions]
        if missing:
            raise ValueError(f"cannot close {missing[0]}: it is not stored")
        for position in change.closed:
            del self._positions[position]
        self._positions.update(dict.fromkeys(change.opened))
        self._applied_sequence = sequence

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

    def append(self, trades: tuple[Trade, ...], sequence: int) -> None:
        """Record the trades SELL ``sequence`` made."""
        if sequence <= self.last_sequence():
            raise ValueError(f"trade log is at sequence {self.last_sequence()}, cannot append {sequence}")
        self.trades.extend((sequence, trade) for trade in trades)

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
    if not cursor.isdigit() or int(cursor) > size:
        raise InvalidCursor(f"cursor {cursor!r} was not handed out by this service")
    return int(cursor)


class InMemoryOrderLog:
    """The order log as a list; same contract as the file log, without durability."""

    def __init__(self) -> None:
        """Start empty."""
        self._entries: list[OrderLogEntry] = []
        self._by_key: dict[str, OrderLogEntry] = {}

    def last_sequence(self) -> int:
        """The sequence of the newest entry, 0 when the log is empty."""
        return self._entries[-1].sequence if self._entries else 0

    def append(self, entry: OrderLogEntry) -> None:
        """Append ``entry``; its sequence must be one past the last."""
        if entry.sequence != self.last_sequence() + 1:
            raise ValueError(f"order log is at sequence {self.last_sequence()}, cannot append {entry.sequence}")
        self._entries.append(entry)
        if entry.idempotency_key is not None:
            self._by_key[entry.idempotency_key] = entry

    def entries_after(self, sequence: int) -> Iterator[OrderLogEntry]:
        """The entries with a sequence above ``sequence``, oldest first."""
        # Sequences are 1, 2, 3, ...: entry n sits at index n - 1.
        return iter(self._entries[max(sequence, 0) :])

    def find_by_idempotency_key(self, key: str) -> OrderLogEntry | None:
        """The entry recorded with idempotency key ``key``, if any."""
        return self._by_key.get(key)

    def reachable(self) -> bool:
        """Always: memory does not go away."""
        return True

    def newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, OrderLogEntry]]:
        """(cursor, entry) newest first; a cursor is the entry's index."""
        end = _index(cursor, len(self._entries))
        for index in range(end - 1, -1, -1):
            yield str(index), self._entries[index]

    def find_by_order_id(self, order_id: str) -> OrderLogEntry | None:
        """The entry of order ``order_id``, searched newest first."""
        return next((e for e in reversed(self._entries) if e.decision.order_id == order_id), None)

    def close(self) -> None:
        """Nothing to release."""
