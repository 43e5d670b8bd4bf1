"""In-memory stand-ins for the ports, with switches that make them fail like a full disk."""

import asyncio
import errno
from datetime import UTC, datetime, timedelta

from trading_orders.adapters.storage.tinydb_store.checkpoints import CheckpointPolicy
from trading_orders.adapters.storage.tinydb_store.memory import (
    InMemoryOrderLog,
    InMemoryPositionStore,
    InMemoryTradeLog,
)
from trading_orders.adapters.storage.tinydb_store.parts import OrderLog, PositionSnapshots, StoredPositions, TradeLog
from trading_orders.adapters.storage.tinydb_store.store import TinyDBOrderStore
from trading_orders.application.errors import StorageUnavailable
from trading_orders.application.order_service import OrderService, PlacedOrder
from trading_orders.application.ports import Clock
from trading_orders.domain.model import Order, OrderLogEntry, PositionScope, Trade
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


# Intervals no test reaches, so snapshots are taken when a test asks.
MANUAL_CHECKPOINTS = CheckpointPolicy(every_orders=10**9, every_seconds=10**6)


def disk_full() -> StorageUnavailable:
    """The failure a store reports when the disk is full."""
    return StorageUnavailable(f"no space left on device (errno {errno.ENOSPC})")


class FlakyPositionStore(InMemoryPositionStore):
    """An in-memory position store whose next ``failures`` writes fail."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    def save(self, snapshot: StoredPositions) -> None:
        """Fail while failures remain, else keep the snapshot."""
        if self.failures:
            self.failures -= 1
            raise disk_full()
        super().save(snapshot)


class FlakyOrderLog(InMemoryOrderLog):
    """An in-memory order log whose next ``failures`` writes fail."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    def write(self, entry: OrderLogEntry) -> None:
        """Fail while failures remain, else append."""
        if self.failures:
            self.failures -= 1
            raise disk_full()
        super().write(entry)


class FlakyTradeLog(InMemoryTradeLog):
    """An in-memory trade log whose next ``failures`` writes fail."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    def write(self, trades: tuple[Trade, ...], sequence: int) -> None:
        """Fail while failures remain, else record."""
        if self.failures:
            self.failures -= 1
            raise disk_full()
        super().write(trades, sequence)


def build_service(
    universes: dict[str, dict[str, list[str]]],
    scope: PositionScope = PositionScope.STRATEGY,
    store: InMemoryPositionStore | None = None,
    log: InMemoryOrderLog | None = None,
    trades: InMemoryTradeLog | None = None,
) -> tuple[OrderService, InMemoryPositionStore, InMemoryOrderLog]:
    """A service over in-memory ports, not yet started."""
    store = store if store is not None else FlakyPositionStore()
    log = log if log is not None else FlakyOrderLog()
    trades = trades if trades is not None else FlakyTradeLog()
    return service_over(universes, store, log, trades, scope)[0], store, log


def service_over(
    universes: dict[str, dict[str, list[str]]],
    position_store: PositionSnapshots,
    order_log: OrderLog,
    trade_log: TradeLog,
    scope: PositionScope = PositionScope.STRATEGY,
    clock: Clock | None = None,
) -> tuple[OrderService, TinyDBOrderStore]:
    """A service over the TinyDB store made of these three parts, not yet started, and that store.

    The store checkpoints only when a test calls checkpoint() (or closes it).
    """
    store = TinyDBOrderStore(position_store, order_log, trade_log, scope, MANUAL_CHECKPOINTS)
    service = OrderService(FixedProfile(universes), store, clock or SteppingClock(), CountingIds(), scope)
    return service, store


def place(service: OrderService, order: Order, idempotency_key: str | None = None) -> PlacedOrder:
    """Place ``order`` from synchronous test code: on an event loop of its own, until it is durable."""
    return asyncio.run(service.place_order(order, idempotency_key))
