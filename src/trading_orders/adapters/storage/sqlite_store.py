"""The SQLite order store: one transaction per order, safe for several processes on one host."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trading_orders.adapters.storage.sql_order_store import SqlOrderStore
from trading_orders.application.errors import StorageUnavailable
from trading_orders.domain.model import PositionScope

logger = logging.getLogger(__name__)

SQLITE_FILE = "trading_orders.sqlite3"

# Each step brings a database from the version before it to its own; a new
# database runs them all, an old one the ones it lacks (PRAGMA user_version).
_MIGRATIONS = (
    (
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE orders (sequence INTEGER PRIMARY KEY, order_id TEXT NOT NULL UNIQUE, "
        "received_at TEXT NOT NULL, idempotency_key TEXT UNIQUE, entry TEXT NOT NULL)",
        "CREATE TABLE positions (id INTEGER PRIMARY KEY, holding_key TEXT NOT NULL UNIQUE, username TEXT NOT NULL, "
        "strategy TEXT NOT NULL, instrument TEXT NOT NULL, order_id TEXT NOT NULL, opened_at TEXT NOT NULL)",
        "CREATE TABLE trades (id INTEGER PRIMARY KEY, sequence INTEGER NOT NULL REFERENCES orders (sequence), "
        "username TEXT NOT NULL, strategy TEXT NOT NULL, instrument TEXT NOT NULL, buy_order_id TEXT NOT NULL, "
        "bought_at TEXT NOT NULL, sell_order_id TEXT NOT NULL, sold_at TEXT NOT NULL)",
    ),
)


class _SqliteSql:
    """A sqlite3 connection as the stores' Sql."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def rows(self, statement: str, values: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """The rows a query answers."""
        return self._connection.execute(statement, values).fetchall()

    def run(self, statement: str, values: Sequence[object] = ()) -> None:
        """Execute a statement that answers no rows."""
        self._connection.execute(statement, values)


class SqliteOrderStore(SqlOrderStore):
    """Orders, trades, positions and idempotency keys in ``<directory>/trading_orders.sqlite3``.

    WAL mode with synchronous=FULL: a committed order survives a crash. Each
    order is one BEGIN IMMEDIATE ... COMMIT, so SQLite's own write lock
    serializes orders across threads and processes.
    """

    def __init__(self, directory: Path, scope: PositionScope) -> None:
        """Use (or create) the database in ``directory`` for positions held under ``scope``."""
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / SQLITE_FILE
        super().__init__(scope, str(self.path))
        self._local = threading.local()
        # Writers: a transaction may begin on one worker thread and commit on
        # another, so its connection is shared across threads (never by two
        # transactions at once) and kept for the next one.
        self._idle_writers: list[sqlite3.Connection] = []
        self._idle_lock = threading.Lock()

    def _connect(self, *, shared: bool) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=not shared)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as error:
            raise StorageUnavailable(f"cannot open {self.path}: {error}") from error
        return connection

    def _connection(self) -> sqlite3.Connection:
        # Readers: one connection per thread, as sqlite3 connections are not shared by default.
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connect(shared=False)
        return connection

    @contextmanager
    def _reading(self) -> Iterator[_SqliteSql]:
        yield _SqliteSql(self._connection())

    @contextmanager
    def _writing(self) -> Iterator[_SqliteSql]:
        with self._idle_lock:
            connection = self._idle_writers.pop() if self._idle_writers else None
        if connection is None:
            connection = self._connect(shared=True)
        try:
            with self._transaction(connection) as sql:
                yield sql
        finally:
            with self._idle_lock:
                self._idle_writers.append(connection)

    @contextmanager
    def _transaction(self, connection: sqlite3.Connection) -> Iterator[_SqliteSql]:
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise StorageUnavailable(f"cannot begin a transaction on {self.path}: {error}") from error
        try:
            yield _SqliteSql(connection)
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise StorageUnavailable(f"the order was not recorded in {self.path}: {error}") from error
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def _migrate(self) -> None:
        with self._writing() as sql:
            version = sql.rows("PRAGMA user_version")[0][0]
            for number, statements in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    sql.run(statement)
                sql.run(f"PRAGMA user_version = {number}")
                logger.info("%s: schema migrated to version %d", self.path, number)

    def close(self) -> None:
        """Close the writers' connections and this thread's reader."""
        with self._idle_lock:
            writers, self._idle_writers = self._idle_writers, []
        for writer in writers:
            writer.close()
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
