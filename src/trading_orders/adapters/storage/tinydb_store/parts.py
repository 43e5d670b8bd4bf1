"""What the TinyDB store is built from: an order log, a trade log and position snapshots.

Files on disk and lists in memory both serve these; the store's group
commit, checkpoints and replay need nothing else of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from trading_orders.domain.controls import NO_CONTROLS, Controls, LogEntry
from trading_orders.domain.model import Position, Trade


@dataclass(frozen=True, slots=True)
class StoredPositions:
    """A snapshot of the open positions: those the order log implies up to ``applied_sequence``.

    ``log_offset`` is where, in the order log's own terms, the entry after
    ``applied_sequence`` starts; None when unknown (replay then reads the
    log from its start). ``trades_through`` is the newest SELL whose trades
    the trade log held, durable, when the snapshot was taken: a trade log
    that ends before it has lost trades. None when unknown (a snapshot
    older than the mark). ``controls`` are the operator controls in force
    after ``applied_sequence``.
    """

    positions: tuple[Position, ...]
    applied_sequence: int
    log_offset: int | None = None
    trades_through: int | None = None
    controls: Controls = NO_CONTROLS


class PositionSnapshots(Protocol):
    """Keeps a snapshot of the open positions, stamped with the order-log sequence it includes."""

    def load(self) -> StoredPositions:
        """The latest snapshot (empty, at sequence 0, when none was saved)."""
        ...

    def save(self, snapshot: StoredPositions) -> None:
        """Replace the snapshot with ``snapshot``, all or nothing; durable on return."""
        ...


class OrderLog(Protocol):
    """The order log, the source of truth: every order decided, in sequence order.

    write() hands an entry over; sync() makes every entry written so far
    durable at once, so orders that arrive while one sync runs share the next
    (group commit). Readers see durable entries only.
    """

    def check(self, sequence: int = 0, offset: int | None = None) -> None:
        """Check the entries after ``sequence`` (starting at ``offset``, or every entry); raises CorruptStore."""
        ...

    def last_sequence(self) -> int:
        """The sequence of the newest entry written, 0 when the log is empty."""
        ...

    def durable_sequence(self) -> int:
        """The sequence of the newest entry known to be durable."""
        ...

    def end_offset(self) -> int:
        """Where the entry after the newest one written will start (see StoredPositions.log_offset)."""
        ...

    def write(self, entry: LogEntry) -> None:
        """Add ``entry`` (its sequence one past the last), not yet durable; nothing kept on failure."""
        ...

    def sync(self) -> int:
        """Make every entry written so far durable; returns the newest durable sequence."""
        ...

    def roll_back(self, error: BaseException) -> None:
        """Drop the entries written after the newest durable one, which ``error`` put in doubt."""
        ...

    def index_through(self, sequence: int) -> None:
        """Let the entries up to ``sequence`` leave memory for the log's on-disk index, if it has one."""
        ...

    def find_by_idempotency_key(self, key: str) -> LogEntry | None:
        """The entry written with idempotency key ``key``, if any."""
        ...

    def reachable(self) -> bool:
        """True while the log can take appends: its file is still the one on disk."""
        ...

    def newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, LogEntry]]:
        """(cursor, entry) newest first; from an entry's cursor, the entries older than it."""
        ...

    def find_by_order_id(self, order_id: str) -> LogEntry | None:
        """The entry of order ``order_id``, if any."""
        ...

    def entries_after(self, sequence: int) -> Iterator[LogEntry]:
        """The entries with a sequence above ``sequence``, oldest first."""
        ...


class TradeLog(Protocol):
    """Keeps every closed round trip, grouped by the sequence of the SELL that closed it."""

    def last_sequence(self) -> int:
        """The sequence of the newest SELL with trades recorded, 0 when none."""
        ...

    def write(self, trades: tuple[Trade, ...], sequence: int) -> None:
        """Record the trades SELL ``sequence`` made, all or nothing; durable after the next sync()."""
        ...

    def sync(self) -> int:
        """Make every trade written so far durable; returns the newest SELL whose trades are durable."""
        ...

    def newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, Trade]]:
        """(cursor, trade) newest first; from a trade's cursor, the trades older than it."""
        ...
