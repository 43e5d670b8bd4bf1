"""An index of the order log on disk: order id, idempotency key and sequence -> the entry's byte offset.

It is derived from the log and can always be rebuilt from it, so it is
written in batches off the request path with relaxed durability: after a
crash it may be behind the log, never ahead of what the log holds.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

INDEX_FILE = "order_index.sqlite3"

# (sequence, offset, order id, idempotency key or None)
IndexRow = tuple[int, int, str, str | None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    sequence INTEGER PRIMARY KEY,
    offset INTEGER NOT NULL,
    order_id TEXT NOT NULL UNIQUE,
    idempotency_key TEXT UNIQUE
)
"""


class OrderIndex:
    """The index in ``<directory>/order_index.sqlite3``; one process writes it (the log's owner)."""

    def __init__(self, directory: Path, *, read_only: bool = False) -> None:
        """Open (or create) the index; ``read_only`` leaves the file alone and starts an empty one in memory."""
        self.path = directory / INDEX_FILE
        self._reader_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        if read_only:
            # A reader of a running service's files checks the whole log
            # anyway, and must not touch the index's write-ahead log.
            self._reader = sqlite3.connect(":memory:", check_same_thread=False)
            self._reader.execute(_SCHEMA)
            return
        self._writer = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        # WAL lets request threads look keys up while a batch is being written.
        self._writer.execute("PRAGMA journal_mode=WAL")
        self._writer.execute("PRAGMA synchronous=NORMAL")
        self._writer.execute(_SCHEMA)
        self._reader = sqlite3.connect(self.path, check_same_thread=False)

    def last(self) -> tuple[int, int] | None:
        """(sequence, offset) of the newest indexed entry, None when the index is empty."""
        row = self._read("SELECT sequence, offset FROM entries ORDER BY sequence DESC LIMIT 1", ())
        return None if row is None else (int(row[0]), int(row[1]))

    def offset_of_key(self, key: str) -> int | None:
        """The offset of the entry recorded with idempotency key ``key``."""
        return self._offset("SELECT offset FROM entries WHERE idempotency_key = ?", key)

    def offset_of_order(self, order_id: str) -> int | None:
        """The offset of the entry of order ``order_id``."""
        return self._offset("SELECT offset FROM entries WHERE order_id = ?", order_id)

    def offset_of_sequence(self, sequence: int) -> int | None:
        """The offset of the entry with ``sequence``."""
        return self._offset("SELECT offset FROM entries WHERE sequence = ?", sequence)

    def sequence_at(self, offset: int) -> int | None:
        """The sequence of the entry at byte ``offset``."""
        row = self._read("SELECT sequence FROM entries WHERE offset = ?", (offset,))
        return None if row is None else int(row[0])

    def add(self, rows: Iterable[IndexRow]) -> None:
        """Index ``rows`` in one transaction."""
        writer = self._writable()
        writer.execute("BEGIN")
        try:
            writer.executemany("INSERT INTO entries VALUES (?, ?, ?, ?)", rows)
        except BaseException:
            writer.execute("ROLLBACK")
            raise
        writer.execute("COMMIT")

    def clear(self) -> None:
        """Forget every row, to rebuild the index from the log."""
        self._writable().execute("DELETE FROM entries")

    def close(self) -> None:
        """Close the connections."""
        self._reader.close()
        if self._writer is not None:
            self._writer.close()

    def _writable(self) -> sqlite3.Connection:
        if self._writer is None:
            raise PermissionError(f"{self.path} was opened read-only")
        return self._writer

    def _offset(self, query: str, value: str | int) -> int | None:
        row = self._read(query, (value,))
        return None if row is None else int(row[0])

    def _read(self, query: str, parameters: tuple[str | int, ...]) -> tuple[int, ...] | None:
        with self._reader_lock:
            row: tuple[int, ...] | None = self._reader.execute(query, parameters).fetchone()
            return row
