"""In-memory stand-ins for the application's ports: the profile, the clock, the ids, and the order store.

FakeOrderStore is the store as the application sees it (the OrderStore and
OrderLogReader ports) over a list and a dict, as cosmicpython's
FakeUnitOfWork is: no log, snapshot or index of any real store, and nothing
kept unless a transaction commits. Trades are the read side's (TradeLogReader),
which no service test reads.
"""

from __future__ import annotations

import asyncio
import errno
import re
import threading
from collections.abc import AsyncIterator, Collection, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from trading_orders.application.errors import DamagedLogEntry, InvalidCursor, StorageUnavailable
from trading_orders.application.order_service import OrderService, PlacedOrder
from trading_orders.application.ports import Clock, StoreState
from trading_orders.domain.controls import (
    NO_CONTROLS,
    ControlChange,
    ControlLogEntry,
    Controls,
    ControlScope,
    LogEntry,
    RateBucket,
    entry_id,
    entry_time,
)
from trading_orders.domain.model import Order, OrderLogEntry, Position, PositionScope
from trading_orders.domain.portfolio import Portfolio, PortfolioSlice
from trading_orders.domain.profile import Profile


class FixedProfile:
    """A profile source that answers a profile given in the test."""

    def __init__(self, universes: dict[str, dict[str, list[str]]]) -> None:
        self.profile = Profile(universes)

    def load(self) -> Profile:
        """The test's profile."""
        return self.profile


class SteppingClock:
    """A clock that moves one second per reading."""

    def __init__(self) -> None:
        self._now = datetime(2026, 11, 24, 9, 15, tzinfo=UTC)

    def now(self) -> datetime:
        """One second later than the previous reading."""
        self._now += timedelta(seconds=1)
        return self._now


class CountingIds:
    """Order ids o1, o2, ... (after a prefix, for several services writing one log)."""

    def __init__(self, prefix: str = "") -> None:
        self._prefix = prefix
        self._count = 0

    def next_id(self) -> str:
        """The next id."""
        self._count += 1
        return f"{self._prefix}o{self._count}"


def disk_full() -> StorageUnavailable:
    """The failure a store reports when the disk is full."""
    return StorageUnavailable(f"no space left on device (errno {errno.ENOSPC})")


class FakeTransaction:
    """One order's unit of work on a FakeOrderStore: it hands out copies, and only commit() writes back."""

    def __init__(
        self, store: FakeOrderStore, strategy: str, instrument: str, users: Collection[str], key: str | None
    ) -> None:
        self._store = store
        self._key = key
        self.recorded = store.keys.get(key) if key is not None else None
        self.portfolio: PortfolioSlice = Portfolio(store.scope, store.open).slice(
            users, strategy, instrument, store.controls(), store.buckets.get(strategy)
        )
        self.last_received_at = entry_time(store.entries[-1]) if store.entries else None

    async def commit(self) -> OrderLogEntry:
        """Record the decision applied to ``portfolio``; StorageUnavailable, keeping nothing, while failures remain."""
        (applied,) = self.portfolio.take_unsaved()
        store = self._store
        if store.commit_failures:
            store.commit_failures -= 1
            raise disk_full()
        entry = OrderLogEntry(len(store.entries) + 1, applied.decision, self._key)
        store.entries.append(entry)
        if self._key is not None:
            store.keys[self._key] = entry
        store.open = [p for p in store.open if p not in applied.change.closed] + list(applied.change.opened)
        if applied.rate_bucket is not None:
            store.buckets[applied.decision.order.strategy] = applied.rate_bucket
        return entry


class FakeControlTransaction:
    """One control change's unit of work on a FakeOrderStore; only commit() writes back."""

    def __init__(self, store: FakeOrderStore, key: str | None) -> None:
        self._store = store
        self._key = key
        self.recorded = store.keys.get(key) if key is not None else None
        self.controls = store.controls()
        self.last_received_at = entry_time(store.entries[-1]) if store.entries else None

    async def positions_in(self, scope: ControlScope) -> list[Position]:
        """The open positions in ``scope``."""
        return [p for p in self._store.open if scope.holds(p)]

    async def commit(self, change: ControlChange) -> ControlLogEntry:
        """Record ``change``; StorageUnavailable, keeping nothing, while failures remain."""
        store = self._store
        if store.commit_failures:
            store.commit_failures -= 1
            raise disk_full()
        entry = ControlLogEntry(len(store.entries) + 1, change, self._key)
        closed = Portfolio(store.scope, store.open).apply_control(change)
        store.entries.append(entry)
        store.in_force = store.in_force.with_entry(entry)
        if self._key is not None:
            store.keys[self._key] = entry
        store.open = [p for p in store.open if p not in closed.closed]
        return entry


class FakeOrderStore:
    """The OrderStore and OrderLogReader ports in memory.

    The next ``commit_failures`` commits fail like a full disk, the next
    ``read_failures`` reads of the log like an unreachable database; a read
    of the log that reaches a sequence in ``damaged`` fails like a damaged entry.
    """

    def __init__(self, scope: PositionScope = PositionScope.STRATEGY) -> None:
        self.scope = scope
        self.entries: list[LogEntry] = []
        self.keys: dict[str, LogEntry] = {}
        self.in_force: Controls = NO_CONTROLS
        self.buckets: dict[str, RateBucket] = {}
        self.open: list[Position] = []
        self.commit_failures = 0
        self.read_failures = 0
        self.damaged: set[int] = set()
        # One order at a time, as every store serializes the orders that can meet a position;
        # a thread lock, since tests place orders from threads with an event loop each.
        self._one_at_a_time = threading.Lock()

    def recover(self) -> int:
        """Nothing to replay: the lists are the truth."""
        return 0

    @asynccontextmanager
    async def transaction(
        self, strategy: str, instrument: str, users: Collection[str], idempotency_key: str | None = None
    ) -> AsyncIterator[FakeTransaction]:
        """One order's unit of work; leaving it without commit() keeps nothing."""
        with self._one_at_a_time:
            yield FakeTransaction(self, strategy, instrument, users, idempotency_key)

    @asynccontextmanager
    async def control_transaction(self, idempotency_key: str | None = None) -> AsyncIterator[FakeControlTransaction]:
        """One control change's unit of work, serialized with the orders; leaving it without commit() keeps nothing."""
        with self._one_at_a_time:
            yield FakeControlTransaction(self, idempotency_key)

    def controls(self) -> Controls:
        """The controls in force."""
        return self.in_force

    def positions(
        self, user: str | None = None, strategy: str | None = None, instrument: str | None = None
    ) -> list[Position]:
        """The open positions matching every filter given, in the order they were opened."""
        wanted = {"user": user, "strategy": strategy, "instrument": instrument}
        return [p for p in self.open if all(v is None or getattr(p, k) == v for k, v in wanted.items())]

    def state(self) -> StoreState:
        """The log's length and the open positions; always reachable."""
        return StoreState(len(self.entries), len(self.open), reachable=True)

    def entries_after(self, sequence: int) -> Iterator[LogEntry]:
        """The entries after ``sequence``, oldest first; fails like an unreachable database while failures remain."""
        if self.read_failures:
            self.read_failures -= 1
            raise StorageUnavailable("the database is unreachable")
        return self._readable(self.entries[sequence:])

    def _readable(self, entries: list[LogEntry]) -> Iterator[LogEntry]:
        for entry in entries:
            if entry.sequence in self.damaged:
                raise DamagedLogEntry(f"entry {entry.sequence} is damaged", entry.sequence)
            yield entry

    def newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, LogEntry]]:
        """(cursor, entry) newest first; a cursor is an entry's sequence."""
        before = len(self.entries) + 1
        if cursor is not None:
            if not re.fullmatch(r"[0-9]{1,18}", cursor) or not 1 <= int(cursor) <= len(self.entries):
                raise InvalidCursor(f"cursor {cursor!r} was not handed out by this store")
            before = int(cursor)
        return ((str(e.sequence), e) for e in reversed(self.entries[: before - 1]))

    def find_by_order_id(self, order_id: str) -> LogEntry | None:
        """The entry of order (or control change) ``order_id``, if any."""
        return next((e for e in self.entries if entry_id(e) == order_id), None)


def build_service(
    universes: dict[str, dict[str, list[str]]],
    scope: PositionScope = PositionScope.STRATEGY,
    store: FakeOrderStore | None = None,
    clock: Clock | None = None,
) -> tuple[OrderService, FakeOrderStore]:
    """A service over a fake store (a new one, or ``store`` to share it as a restarted service would), not started."""
    store = store if store is not None else FakeOrderStore(scope)
    return OrderService(FixedProfile(universes), store, clock or SteppingClock(), CountingIds(), scope), store


def place(service: OrderService, order: Order, idempotency_key: str | None = None) -> PlacedOrder:
    """Place ``order`` from synchronous test code: on an event loop of its own, until it is durable."""
    return asyncio.run(service.place_order(order, idempotency_key))
