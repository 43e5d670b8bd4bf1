"""File stores as container resources: opened when first needed, closed when the service stops."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

from trading_orders.adapters.storage.postgres_store import PostgresOrderStore
from trading_orders.domain.model import PositionScope


class Closable(Protocol):
    """A store that holds files open until closed."""

    def close(self) -> None:
        """Release the store's files and locks."""
        ...


StoreT = TypeVar("StoreT", bound=Closable)


def open_store(open_in: Callable[[Path], StoreT], directory: Path) -> Iterator[StoreT]:
    """The store ``open_in(directory)`` opens, closed when the resource is shut down."""
    store = open_in(directory)
    try:
        yield store
    finally:
        store.close()


def open_postgres_store(url: str, scope: PositionScope) -> Iterator[PostgresOrderStore]:
    """The PostgreSQL store at ``url``, its connection pool closed when the resource is shut down."""
    store = PostgresOrderStore(url, scope)
    try:
        yield store
    finally:
        store.close()
