"""The TinyDB store over in-memory parts, with switches that make each part fail like a full disk."""

from tests.service.fakes import CountingIds, FixedProfile, SteppingClock, disk_full
from trading_orders.adapters.storage.tinydb_store.checkpoints import CheckpointPolicy
from trading_orders.adapters.storage.tinydb_store.memory import (
    InMemoryOrderLog,
    InMemoryPositionStore,
    InMemoryTradeLog,
)
from trading_orders.adapters.storage.tinydb_store.parts import OrderLog, PositionSnapshots, StoredPositions, TradeLog
from trading_orders.adapters.storage.tinydb_store.store import TinyDBOrderStore
from trading_orders.application.order_service import OrderService
from trading_orders.application.ports import Clock
from trading_orders.domain.controls import LogEntry
from trading_orders.domain.model import PositionScope, Trade

# Intervals no test reaches, so snapshots are taken when a test asks.
MANUAL_CHECKPOINTS = CheckpointPolicy(every_orders=10**9, every_seconds=10**6)


class FullDiskSwitch:
    """A part whose next ``failures`` writes fail like a full disk."""

    failures = 0

    def fail_while_failures_remain(self) -> None:
        """Raise the full disk's failure, one fewer to go, while any remain."""
        if self.failures:
            self.failures -= 1
            raise disk_full()


class FlakyPositionStore(FullDiskSwitch, InMemoryPositionStore):
    """An in-memory position store whose next ``failures`` snapshots fail."""

    def save(self, snapshot: StoredPositions) -> None:
        """Fail while failures remain, else keep the snapshot."""
        self.fail_while_failures_remain()
        super().save(snapshot)


class FlakyOrderLog(FullDiskSwitch, InMemoryOrderLog):
    """An in-memory order log whose next ``failures`` appends fail."""

    def write(self, entry: LogEntry) -> None:
        """Fail while failures remain, else append."""
        self.fail_while_failures_remain()
        super().write(entry)


class FlakyTradeLog(FullDiskSwitch, InMemoryTradeLog):
    """An in-memory trade log whose next ``failures`` writes fail."""

    def write(self, trades: tuple[Trade, ...], sequence: int) -> None:
        """Fail while failures remain, else record."""
        self.fail_while_failures_remain()
        super().write(trades, sequence)


def build_tinydb_service(
    universes: dict[str, dict[str, list[str]]],
    scope: PositionScope = PositionScope.STRATEGY,
    store: InMemoryPositionStore | None = None,
    log: InMemoryOrderLog | None = None,
    trades: InMemoryTradeLog | None = None,
) -> tuple[OrderService, InMemoryPositionStore, InMemoryOrderLog]:
    """A service over the TinyDB store made of flaky in-memory parts (or the ones given), not yet started."""
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
