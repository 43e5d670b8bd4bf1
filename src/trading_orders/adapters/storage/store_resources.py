"""File stores as container resources: opened when first needed, closed when the service stops."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar


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
