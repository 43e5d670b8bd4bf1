"""The TinyDB store as container resources: opened when first needed, closed when the service stops."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from trading_orders.adapters.storage.tinydb_store.backoff import Backoff
from trading_orders.adapters.storage.tinydb_store.checkpoints import CheckpointPolicy
from trading_orders.adapters.storage.tinydb_store.memory import (
    InMemoryOrderLog,
    InMemoryPositionStore,
    InMemoryTradeLog,
)
from trading_orders.adapters.storage.tinydb_store.order_log import JsonLinesOrderLog
from trading_orders.adapters.storage.tinydb_store.position_snapshots import TinyDBPositionStore
from trading_orders.adapters.storage.tinydb_store.replay import replay_log_tail
from trading_orders.adapters.storage.tinydb_store.store import TinyDBOrderStore
from trading_orders.adapters.storage.tinydb_store.trade_log import JsonLinesTradeLog
from trading_orders.domain.controls import LogEntry
from trading_orders.domain.model import Position, PositionScope


def open_tinydb_store(
    directory: Path, scope: PositionScope, policy: CheckpointPolicy, restarts: Backoff | None = None
) -> Iterator[TinyDBOrderStore]:
    """The TinyDB store over the files in ``directory``; at shutdown a last checkpoint, then the files close."""
    snapshots = TinyDBPositionStore(directory)
    try:
        order_log = JsonLinesOrderLog(directory)
        try:
            trade_log = JsonLinesTradeLog(directory, holds_through=snapshots.load().trades_through)
            try:
                store = TinyDBOrderStore(snapshots, order_log, trade_log, scope, policy, restarts)
                try:
                    yield store
                finally:
                    store.close()
            finally:
                trade_log.close()
        finally:
            order_log.close()
    finally:
        snapshots.close()


def open_memory_store(
    scope: PositionScope, policy: CheckpointPolicy, restarts: Backoff | None = None
) -> Iterator[TinyDBOrderStore]:
    """The TinyDB store's machinery over lists in memory: nothing survives the process."""
    store = TinyDBOrderStore(InMemoryPositionStore(), InMemoryOrderLog(), InMemoryTradeLog(), scope, policy, restarts)
    try:
        yield store
    finally:
        store.close()


def open_read_only_files(
    directory: Path, scope: PositionScope
) -> Iterator[tuple[Iterator[LogEntry], list[Position], int]]:
    """The order log's entries, the open positions at its end and its length, read without a lock.

    Safe beside a service: the log is read up to the end its writer had made
    durable when it was opened (durable_end.py), and the positions are
    replayed to that same end.
    """
    # The snapshot before the log, as in verify_directory: the log only
    # grows, so one opened after the snapshot holds everything it applied.
    stored = TinyDBPositionStore(directory, read_only=True).load()
    order_log = JsonLinesOrderLog(directory, read_only=True)
    try:
        order_log.check(stored.applied_sequence, stored.log_offset)
        # The snapshot may be some orders behind the log: replay them in
        # memory (their trades are already in the trade log or will be).
        portfolio, _, _ = replay_log_tail(stored, order_log, InMemoryTradeLog(), scope)
        yield order_log.entries_after(0), list(portfolio), order_log.last_sequence()
    finally:
        order_log.close()
