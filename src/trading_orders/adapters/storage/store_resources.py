"""File stores as container resources: opened when first needed, closed when the service stops."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from trading_orders.adapters.storage.embedded_store import CheckpointPolicy, EmbeddedOrderStore
from trading_orders.adapters.storage.jsonl_order_log import JsonLinesOrderLog
from trading_orders.adapters.storage.jsonl_trade_log import JsonLinesTradeLog
from trading_orders.adapters.storage.memory import InMemoryOrderLog, InMemoryPositionStore, InMemoryTradeLog
from trading_orders.adapters.storage.postgres_store import PostgresOrderStore
from trading_orders.adapters.storage.tinydb_position_store import TinyDBPositionStore
from trading_orders.domain.model import PositionScope


def open_postgres_store(url: str, scope: PositionScope) -> Iterator[PostgresOrderStore]:
    """The PostgreSQL store at ``url``, its connection pool closed when the resource is shut down."""
    store = PostgresOrderStore(url, scope)
    try:
        yield store
    finally:
        store.close()


def open_file_store(directory: Path, scope: PositionScope, policy: CheckpointPolicy) -> Iterator[EmbeddedOrderStore]:
    """The embedded store over the files in ``directory``; at shutdown a last checkpoint, then the files close."""
    position_store = TinyDBPositionStore(directory)
    try:
        order_log = JsonLinesOrderLog(directory)
        try:
            trade_log = JsonLinesTradeLog(directory)
            try:
                store = EmbeddedOrderStore(position_store, order_log, trade_log, scope, policy)
                try:
                    yield store
                finally:
                    store.close()
            finally:
                trade_log.close()
        finally:
            order_log.close()
    finally:
        position_store.close()


def open_memory_store(scope: PositionScope, policy: CheckpointPolicy) -> Iterator[EmbeddedOrderStore]:
    """The embedded store in memory: nothing survives the process."""
    store = EmbeddedOrderStore(InMemoryPositionStore(), InMemoryOrderLog(), InMemoryTradeLog(), scope, policy)
    try:
        yield store
    finally:
        store.close()
