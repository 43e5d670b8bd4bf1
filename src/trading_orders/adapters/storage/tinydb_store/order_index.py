"""An index of the order log on disk: order id, idempotency key and sequence -> the entry's byte offset.

It is derived from the log and can always be rebuilt from it, so it is
written in batches off the request path with relaxed durability: after a
crash it may be behind the log, never ahead of what the log holds. A file
found damaged at opening is set aside and a new one rebuilt from the log.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from trading_orders.application.errors import StartupError

logger = logging.getLogger(__name__)

INDEX_FILE = "order_index.sqlite3"
# SQLite's own names for its companions: a database set aside keeps them, so it can still be opened.
_COMPANIONS = ("", "-wal", "-shm")
_DAMAGE_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)

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
_COLUMNS = ["sequence", "offset", "order_id", "idempotency_key"]


def is_damage(error: sqlite3.Error) -> bool:
    """True when ``error`` says the database file itself is damaged, not that it could not be reached."""
    # The extended code's low byte is the primary one (SQLITE_CORRUPT_INDEX is a SQLITE_CORRUPT).
    return error.sqlite_errorcode & 0xFF in _DAMAGE_CODES


def index_damage(connection: sqlite3.Connection) -> str | None:
    """What is wrong with the index ``connection`` reads, None when it is sound; raises what is not damage."""
    try:
        found = [str(row[0]) for row in connection.execute("PRAGMA quick_check")]
        if found != ["ok"]:
            return "; ".join(found[:3])
        columns = [str(row[1]) for row in connection.execute("PRAGMA table_info(entries)")]
    except sqlite3.Error as error:
        if is_damage(error):
            return str(error)
        raise
    if columns and columns != _COLUMNS:
        return f"its entries table has columns {columns}, not {_COLUMNS}"
    return None


def inspect_index(directory: Path, log_rows: Mapping[int, IndexRow]) -> str | None:
    """What is wrong with the index in ``directory``, None when it is sound or absent; changes nothing.

    Each indexed entry found in ``log_rows`` (the log's rows by sequence)
    must match it; entries indexed after the log was read are a running
    service's and are not judged. Raises StartupError if the file cannot be read.
    """
    path = directory / INDEX_FILE
    if not path.exists():
        return None
    connection = _connect_read_only(path)
    try:
        damage = index_damage(connection)
        if damage is not None:
            return damage
        for row in connection.execute("SELECT sequence, offset, order_id, idempotency_key FROM entries"):
            expected = log_rows.get(row[0])
            if expected is not None and tuple(row) != expected:
                return f"it has entry #{row[0]} at byte {row[1]} for order {row[2]!r}, the log at byte {expected[1]}"
        return None
    except sqlite3.Error as error:
        if is_damage(error):
            return str(error)
        raise StartupError(f"cannot read {path}: {error}") from error
    finally:
        connection.close()


def newest_indexed(directory: Path) -> int:
    """The sequence of the newest entry the index in ``directory`` holds; 0 when none, or when it is damaged."""
    path = directory / INDEX_FILE
    if not path.exists():
        return 0
    connection = _connect_read_only(path)
    try:
        row = connection.execute("SELECT max(sequence) FROM entries").fetchone()
        return int(row[0] or 0)
    except sqlite3.Error as error:
        if is_damage(error):
            return 0  # inspect_index reports the damage
        raise StartupError(f"cannot read {path}: {error}") from error
    finally:
        connection.close()


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that reads ``path`` and writes nothing beside it; raises StartupError if it cannot open."""
    # Without a write-ahead log no process writes the file, and read-only
    # SQLite would create one (owned by whoever runs verify, which can stop
    # the service opening it); with one, reading through it sees what the
    # service wrote, and is safe beside it.
    immutable = "" if path.with_name(INDEX_FILE + "-wal").exists() else "&immutable=1"
    try:
        return sqlite3.connect(f"{path.as_uri()}?mode=ro{immutable}", uri=True)
    except sqlite3.Error as error:
        raise StartupError(f"cannot read {path}: {error}") from error


class OrderIndex:
    """The index in ``<directory>/order_index.sqlite3``; one process writes it (the log's owner)."""

    def __init__(self, directory: Path, *, read_only: bool = False) -> None:
        """Open (or create) the index; ``read_only`` leaves the file alone and starts an empty one in memory.

        A damaged file is set aside as ``order_index.sqlite3.damaged`` and a
        new, empty index takes its place (``rebuilt`` says so); the order log
        fills it. Raises StartupError when the file cannot be opened at all.
        """
        self.path = directory / INDEX_FILE
        self.rebuilt = False
        self._reader_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        if read_only:
            # A reader of a running service's files checks the whole log
            # anyway, and must not touch the index's write-ahead log.
            self._reader = sqlite3.connect(":memory:", check_same_thread=False)
            self._reader.execute(_SCHEMA)
            return
        try:
            damage = self._open_checked()
        except sqlite3.Error as error:
            raise StartupError(f"cannot open {self.path}: {error}") from error
        if damage is None:
            return
        aside = self._set_aside()
        logger.warning(
            "%s is damaged (%s): set aside as %s; rebuilding it from the order log", self.path, damage, aside
        )
        self.rebuilt = True
        try:
            self._open()
        except sqlite3.Error as error:
            raise StartupError(f"cannot create {self.path} anew: {error}") from error

    def _open_checked(self) -> str | None:
        """Open the file; what is damaged in it (connections closed), or None with the index ready."""
        try:
            self._open()
        except sqlite3.Error as error:
            if not is_damage(error):
                raise
            return str(error)
        try:
            damage = index_damage(self._reader)
        except BaseException:
            self.close()
            raise
        if damage is not None:
            self.close()
        return damage

    def _open(self) -> None:
        writer = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            # WAL lets request threads look keys up while a batch is being written.
            writer.execute("PRAGMA journal_mode=WAL")
            writer.execute("PRAGMA synchronous=NORMAL")
            writer.execute(_SCHEMA)
        except BaseException:
            writer.close()
            raise
        self._writer, self._reader = writer, sqlite3.connect(self.path, check_same_thread=False)

    def _set_aside(self) -> Path:
        """Move the damaged database, with its write-ahead log, out of the way; returns where it went."""
        aside = self.path.with_name(f"{INDEX_FILE}.damaged")
        for companion in _COMPANIONS:
            source, target = self.path.with_name(INDEX_FILE + companion), aside.with_name(aside.name + companion)
            # An earlier damaged copy's write-ahead log must not pair with this one.
            target.unlink(missing_ok=True)
            if source.exists():
                os.replace(source, target)
        return aside

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
