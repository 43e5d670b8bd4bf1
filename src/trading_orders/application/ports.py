"""The ports the order service drives; adapters implement them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from trading_orders.domain.model import OrderDecision, OrderLogEntry, Position, PositionChange, Trade
from trading_orders.domain.profile import Profile


class Clock(Protocol):
    """Tells the time."""

    def now(self) -> datetime:
        """The current time, time-zone aware, in UTC."""
        ...


class OrderIds(Protocol):
    """Hands out order ids."""

    def next_id(self) -> str:
        """A new opaque id, never handed out before."""
        ...


class ProfileSource(Protocol):
    """Where the user profiles come from."""

    def load(self) -> Profile:
        """The current profile; raises ProfileUnavailable with a clear message when it cannot."""
        ...


@dataclass(frozen=True, slots=True)
class StoredPositions:
    """A snapshot of the open positions: those the order log implies up to ``applied_sequence``.

    ``log_offset`` is where, in the order log's own terms, the entry after
    ``applied_sequence`` starts; None when unknown (replay then reads the
    log from its start).
    """

    positions: tuple[Position, ...]
    applied_sequence: int
    log_offset: int | None = None


class PositionStore(Protocol):
    """Keeps a snapshot of the open positions, stamped with the order-log sequence it includes."""

    def load(self) -> StoredPositions:
        """The latest snapshot (empty, at sequence 0, when none was saved)."""
        ...

    def save(self, snapshot: StoredPositions) -> None:
        """Replace the snapshot with ``snapshot``, all or nothing; durable on return."""
        ...


class OrderLogReader(Protocol):
    """Reads the order log newest first, for the read side."""

    def newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, OrderLogEntry]]:
        """(cursor, entry) newest first; from an entry's cursor, the entries older than it.

        Raises InvalidCursor for a cursor this log did not hand out. Costs the
        entries read, however deep the cursor.
        """
        ...

    def find_by_order_id(self, order_id: str) -> OrderLogEntry | None:
        """The entry of order ``order_id``, if any."""
        ...

    def entries_after(self, sequence: int) -> Iterator[OrderLogEntry]:
        """The entries with a sequence above ``sequence``, oldest first."""
        ...


class TradeLogReader(Protocol):
    """Reads the trades newest first, for the read side."""

    def newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, Trade]]:
        """(cursor, trade) newest first; from a trade's cursor, the trades older than it (InvalidCursor if unknown)."""
        ...


class OrderLog(OrderLogReader, Protocol):
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

    def write(self, entry: OrderLogEntry) -> None:
        """Add ``entry`` (its sequence one past the last), not yet durable; nothing kept on failure."""
        ...

    def sync(self) -> int:
        """Make every entry written so far durable; returns the newest durable sequence."""
        ...

    def roll_back(self, error: BaseException) -> None:
        """Drop the entries written after the newest durable one, which ``error`` put in doubt."""
        ...

    def append(self, entry: OrderLogEntry) -> None:
        """Write ``entry`` and make it durable; nothing kept on failure."""
        ...

    def index_through(self, sequence: int) -> None:
        """Let the entries up to ``sequence`` leave memory for the log's on-disk index, if it has one."""
        ...

    def find_by_idempotency_key(self, key: str) -> OrderLogEntry | None:
        """The entry written with idempotency key ``key``, if any."""
        ...

    def reachable(self) -> bool:
        """True while the log can take appends: its file is still the one on disk."""
        ...


class TradeLog(TradeLogReader, Protocol):
    """Keeps every closed round trip, grouped by the sequence of the SELL that closed it."""

    def last_sequence(self) -> int:
        """The sequence of the newest SELL with trades recorded, 0 when none."""
        ...

    def write(self, trades: tuple[Trade, ...], sequence: int) -> None:
        """Record the trades SELL ``sequence`` made, all or nothing; durable after the next sync()."""
        ...

    def sync(self) -> None:
        """Make every trade written so far durable."""
        ...


class OrderMetrics(Protocol):
    """Counts and times what the service does, for monitoring."""

    def order_recorded(self, entry: OrderLogEntry, seconds: float) -> None:
        """One order decided and made durable in ``seconds``."""
        ...

    def state(self, open_positions: int, last_sequence: int) -> None:
        """The current number of open positions and length of the order log."""
        ...


@dataclass(frozen=True, slots=True)
class StoreState:
    """Where a store stands: its log's length, its open positions, and whether it can take orders."""

    last_sequence: int
    open_positions: int
    reachable: bool


class OrderTransaction(Protocol):
    """One order's reads and writes, all in one transaction: what it sees no other order changes meanwhile."""

    def recorded(self, idempotency_key: str) -> OrderLogEntry | None:
        """The entry recorded with ``idempotency_key``, if any."""
        ...

    def held(self, users: Iterable[str], strategy: str, instrument: str) -> list[Position]:
        """The open positions an order in ``strategy`` for ``instrument`` could meet for these users."""
        ...

    def last_received_at(self) -> datetime | None:
        """When the newest recorded order was received, None when there is none."""
        ...

    def record(self, decision: OrderDecision, change: PositionChange, idempotency_key: str | None) -> OrderLogEntry:
        """Record the decision (the log entry with the next sequence), its trades and positions.

        Durable once the transaction's block has exited without an error.
        """
        ...


class OrderStore(Protocol):
    """Keeps the order log, trades, positions and idempotency keys, and serializes orders over them."""

    def recover(self) -> int:
        """Make the store ready after a start or a crash; returns how many logged orders were replayed."""
        ...

    def transaction(self) -> AbstractContextManager[OrderTransaction]:
        """A transaction for one order; what it recorded or read is durable when its block exits.

        Nothing is kept unless record() returned inside it; leaving the block
        raises StorageUnavailable if what it recorded could not be made durable.
        """
        ...

    def positions(
        self, user: str | None = None, strategy: str | None = None, instrument: str | None = None
    ) -> list[Position]:
        """The open positions matching every filter given, in the order they were opened."""
        ...

    def state(self) -> StoreState:
        """Where the store stands now."""
        ...


# Where an order's entry stands in a store's log: (sequence, epoch of the store's commits).
DurabilityTicket = tuple[int, int]


class PendingTransaction(Protocol):
    """A transaction whose block exits without waiting for the disk; ``ticket`` says what to wait for."""

    ticket: DurabilityTicket

    def __enter__(self) -> OrderTransaction:
        """Begin: take the store's lock."""
        ...

    def __exit__(self, *exc_info: object) -> None:
        """End: note the ticket and release the lock, without waiting for the disk."""
        ...


@runtime_checkable
class InMemoryOrderStore(OrderStore, Protocol):
    """A store that decides orders in memory without blocking I/O, so an event loop can run its transactions.

    Durability is awaited separately, and many orders share one sync.
    """

    def pending_transaction(self) -> PendingTransaction:
        """A transaction for one order that does not wait for the disk when its block exits."""
        ...

    async def durable(self, ticket: DurabilityTicket) -> None:
        """Return once what the transaction of ``ticket`` wrote or read is durable; raises StorageUnavailable."""
        ...
