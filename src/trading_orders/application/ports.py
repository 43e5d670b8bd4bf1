"""The ports the order service drives; adapters implement them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

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
    """The open positions a store holds and the last order-log sequence they include."""

    positions: tuple[Position, ...]
    applied_sequence: int


class PositionStore(Protocol):
    """Keeps the open positions; a copy of what the order log implies, stamped with its sequence."""

    def load(self) -> StoredPositions:
        """Every stored open position and the sequence of the last order applied."""
        ...

    def apply(self, change: PositionChange, sequence: int) -> None:
        """Record ``change`` and ``sequence`` together, all or nothing; durable on return."""
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
    """The order log, the source of truth: every order decided, in sequence order."""

    def last_sequence(self) -> int:
        """The sequence of the newest entry, 0 when the log is empty."""
        ...

    def append(self, entry: OrderLogEntry) -> None:
        """Add ``entry`` (its sequence one past the last); durable on return, nothing kept on failure."""
        ...

    def find_by_idempotency_key(self, key: str) -> OrderLogEntry | None:
        """The entry recorded with idempotency key ``key``, if any."""
        ...

    def reachable(self) -> bool:
        """True while the log can take appends: its file is still the one on disk."""
        ...


class TradeLog(TradeLogReader, Protocol):
    """Keeps every closed round trip, grouped by the sequence of the SELL that closed it."""

    def last_sequence(self) -> int:
        """The sequence of the newest SELL with trades recorded, 0 when none."""
        ...

    def append(self, trades: tuple[Trade, ...], sequence: int) -> None:
        """Record the trades SELL ``sequence`` made, all or nothing; durable on return."""
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
        """Record the decision (the log entry with the next sequence), its trades and positions; durable on return."""
        ...


class OrderStore(Protocol):
    """Keeps the order log, trades, positions and idempotency keys, and serializes orders over them."""

    def recover(self) -> int:
        """Make the store ready after a start or a crash; returns how many logged orders were replayed."""
        ...

    def transaction(self) -> AbstractContextManager[OrderTransaction]:
        """A transaction for one order; nothing is kept unless record() returned inside it."""
        ...

    def positions(
        self, user: str | None = None, strategy: str | None = None, instrument: str | None = None
    ) -> list[Position]:
        """The open positions matching every filter given, in the order they were opened."""
        ...

    def state(self) -> StoreState:
        """Where the store stands now."""
        ...
