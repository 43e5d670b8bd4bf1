"""The SQLite order store: one transaction per order, safe for several processes on one host."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from trading_orders.adapters.storage.codec import entry_from_dict, entry_to_dict, format_time, parse_time
from trading_orders.application.errors import InvalidCursor, StartupError, StorageUnavailable
from trading_orders.application.ports import StoreState
from trading_orders.domain.model import OrderDecision, OrderLogEntry, Position, PositionChange, PositionScope, Trade

logger = logging.getLogger(__name__)

SQLITE_FILE = "trading_orders.sqlite3"
_BATCH = 200

# Each step brings a database from the version before it to its own; a new
# database runs them all, an old one the ones it lacks (PRAGMA user_version).
_MIGRATIONS = (
    """
    CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE orders (
        sequence INTEGER PRIMARY KEY,
        order_id TEXT NOT NULL UNIQUE,
        received_at TEXT NOT NULL,
        strategy TEXT NOT NULL,
        instrument TEXT NOT NULL,
        idempotency_key TEXT UNIQUE,
        entry TEXT NOT NULL
    );
    CREATE TABLE positions (
        id INTEGER PRIMARY KEY,
        holding_key TEXT NOT NULL UNIQUE,
        user TEXT NOT NULL,
        strategy TEXT NOT NULL,
        instrument TEXT NOT NULL,
        order_id TEXT NOT NULL,
        opened_at TEXT NOT NULL
    );
    CREATE INDEX positions_by_instrument ON positions (instrument, user);
    CREATE TABLE trades (
        id INTEGER PRIMARY KEY,
        sequence INTEGER NOT NULL REFERENCES orders (sequence),
        user TEXT NOT NULL,
        strategy TEXT NOT NULL,
        instrument TEXT NOT NULL,
        buy_order_id TEXT NOT NULL,
        bought_at TEXT NOT NULL,
        sell_order_id TEXT NOT NULL,
        sold_at TEXT NOT NULL
    );
    """,
)


def holding_key(scope: PositionScope, user: str, strategy: str, instrument: str) -> str:
    """The key no two open positions may share under ``scope`` (the table's unique constraint)."""
    parts = (user, instrument) if scope is PositionScope.USER else (user, strategy, instrument)
    return json.dumps(parts)


class SqliteOrderStore:
    """Orders, trades, positions and idempotency keys in ``<directory>/trading_orders.sqlite3``.

    WAL mode with synchronous=FULL: a committed order survives a crash.
    Each order is one BEGIN IMMEDIATE ... COMMIT: SQLite's own write lock
    serializes orders across threads and processes, and the unique key on
    open positions makes a double position impossible even so.
    """

    def __init__(self, directory: Path, scope: PositionScope) -> None:
        """Use (or create) the database in ``directory`` for positions held under ``scope``."""
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / SQLITE_FILE
        self._scope = scope
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        # One connection per thread: sqlite3 connections are not shared.
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            try:
                connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=True)
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=FULL")
                connection.execute("PRAGMA foreign_keys=ON")
            except sqlite3.Error as error:
                raise StorageUnavailable(f"cannot open {self.path}: {error}") from error
            self._local.connection = connection
        return connection

    def recover(self) -> int:
        """Create or migrate the schema and check the scope; nothing to replay (every order is one transaction)."""
        connection = self._connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            for number, migration in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in migration.split(";"):
                    if statement.strip():
                        connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {number}")
                logger.info("%s: schema migrated to version %d", self.path, number)
            stored = connection.execute("SELECT value FROM meta WHERE name = 'position_scope'").fetchone()
            held = connection.execute("SELECT COUNT(*) FROM positions").fetchone()[0]
            if stored is not None and stored[0] != self._scope.value and held:
                raise StartupError(
                    f"{self.path} holds {held} positions opened under position scope {stored[0]!r}; "
                    f"start with that scope, not {self._scope.value!r}"
                )
            connection.execute(
                "INSERT INTO meta (name, value) VALUES ('position_scope', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (self._scope.value,),
            )
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return 0

    @contextmanager
    def transaction(self) -> Iterator[_SqliteTransaction]:
        """BEGIN IMMEDIATE ... COMMIT around one order; an exception rolls everything back."""
        connection = self._connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise StorageUnavailable(f"cannot begin a transaction on {self.path}: {error}") from error
        try:
            yield _SqliteTransaction(connection, self._scope)
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise StorageUnavailable(f"the order was not recorded in {self.path}: {error}") from error
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def positions(
        self, user: str | None = None, strategy: str | None = None, instrument: str | None = None
    ) -> list[Position]:
        """The open positions matching every filter given, in the order they were opened."""
        clauses, values = [], []
        for column, value in (("user", user), ("strategy", strategy), ("instrument", instrument)):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._connection().execute(
            f"SELECT user, strategy, instrument, order_id, opened_at FROM positions {where} ORDER BY id", values
        )
        return [_position(row) for row in rows]

    def state(self) -> StoreState:
        """The log's length, the open positions, and whether the database answers."""
        try:
            connection = self._connection()
            last = connection.execute("SELECT COALESCE(MAX(sequence), 0) FROM orders").fetchone()[0]
            held = connection.execute("SELECT COUNT(*) FROM positions").fetchone()[0]
        except (sqlite3.Error, StorageUnavailable):
            return StoreState(0, 0, reachable=False)
        return StoreState(last, held, reachable=True)

    def newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, OrderLogEntry]]:
        """(cursor, entry) newest first; a cursor is the entry's sequence, looked up by primary key."""
        before = _position_cursor(cursor)
        while True:
            rows = (
                self._connection()
                .execute(
                    "SELECT sequence, entry FROM orders WHERE sequence < ? ORDER BY sequence DESC LIMIT ?",
                    (before, _BATCH),
                )
                .fetchall()
            )
            for sequence, entry in rows:
                yield str(sequence), entry_from_dict(json.loads(entry))
            if len(rows) < _BATCH:
                return
            before = rows[-1][0]

    def find_by_order_id(self, order_id: str) -> OrderLogEntry | None:
        """The entry of order ``order_id``, if any (by its unique index)."""
        row = self._connection().execute("SELECT entry FROM orders WHERE order_id = ?", (order_id,)).fetchone()
        return None if row is None else entry_from_dict(json.loads(row[0]))

    def trades_newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, Trade]]:
        """(cursor, trade) newest first; a cursor is the trade's row id."""
        before = _position_cursor(cursor)
        while True:
            rows = (
                self._connection()
                .execute(
                    "SELECT id, user, strategy, instrument, buy_order_id, bought_at, sell_order_id, sold_at "
                    "FROM trades WHERE id < ? ORDER BY id DESC LIMIT ?",
                    (before, _BATCH),
                )
                .fetchall()
            )
            for row in rows:
                trade = Trade(row[1], row[2], row[3], row[4], parse_time(row[5]), row[6], parse_time(row[7]))
                yield str(row[0]), trade
            if len(rows) < _BATCH:
                return
            before = rows[-1][0]

    def close(self) -> None:
        """Close this thread's connection."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


class SqliteTradeReader:
    """The trades of a SqliteOrderStore, as the read side's TradeLogReader."""

    def __init__(self, store: SqliteOrderStore) -> None:
        """Read the trades of ``store``."""
        self._store = store

    def newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, Trade]]:
        """(cursor, trade) newest first."""
        return self._store.trades_newest_first(cursor)


class _SqliteTransaction:
    """One order's reads and writes inside BEGIN IMMEDIATE ... COMMIT."""

    def __init__(self, connection: sqlite3.Connection, scope: PositionScope) -> None:
        self._connection = connection
        self._scope = scope

    def recorded(self, idempotency_key: str) -> OrderLogEntry | None:
        """The entry recorded with ``idempotency_key``, if any."""
        row = self._connection.execute(
            "SELECT entry FROM orders WHERE idempotency_key = ?", (idempotency_key,)
        ).fetchone()
        return None if row is None else entry_from_dict(json.loads(row[0]))

    def held(self, users: Iterable[str], strategy: str, instrument: str) -> list[Position]:
        """The open positions an order in ``strategy`` for ``instrument`` could meet for these users."""
        keys = [holding_key(self._scope, user, strategy, instrument) for user in users]
        if not keys:
            return []
        rows = self._connection.execute(
            "SELECT user, strategy, instrument, order_id, opened_at FROM positions "
            f"WHERE holding_key IN ({', '.join('?' * len(keys))})",
            keys,
        )
        return [_position(row) for row in rows]

    def last_received_at(self) -> datetime | None:
        """When the newest recorded order was received."""
        row = self._connection.execute("SELECT received_at FROM orders ORDER BY sequence DESC LIMIT 1").fetchone()
        return None if row is None else parse_time(row[0])

    def record(self, decision: OrderDecision, change: PositionChange, idempotency_key: str | None) -> OrderLogEntry:
        """Insert the order with the next sequence, its trades, and its position changes."""
        sequence = self._connection.execute("SELECT COALESCE(MAX(sequence), 0) + 1 FROM orders").fetchone()[0]
        entry = OrderLogEntry(sequence, decision, idempotency_key)
        self._connection.execute(
            "INSERT INTO orders (sequence, order_id, received_at, strategy, instrument, idempotency_key, entry) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                sequence,
                decision.order_id,
                format_time(decision.received_at),
                decision.order.strategy,
                decision.order.instrument,
                idempotency_key,
                json.dumps(entry_to_dict(entry), separators=(",", ":")),
            ),
        )
        for trade in change.trades:
            self._connection.execute(
                "INSERT INTO trades (sequence, user, strategy, instrument, buy_order_id, bought_at, "
                "sell_order_id, sold_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sequence,
                    trade.user,
                    trade.strategy,
                    trade.instrument,
                    trade.buy_order_id,
                    format_time(trade.bought_at),
                    trade.sell_order_id,
                    format_time(trade.sold_at),
                ),
            )
        for position in change.closed:
            self._connection.execute(
                "DELETE FROM positions WHERE holding_key = ? AND order_id = ?",
                (_key_of(self._scope, position), position.order_id),
            )
        for position in change.opened:
            self._connection.execute(
                "INSERT INTO positions (holding_key, user, strategy, instrument, order_id, opened_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    _key_of(self._scope, position),
                    position.user,
                    position.strategy,
                    position.instrument,
                    position.order_id,
                    format_time(position.opened_at),
                ),
            )
        return entry


def _key_of(scope: PositionScope, position: Position) -> str:
    return holding_key(scope, position.user, position.strategy, position.instrument)


def _position(row: Any) -> Position:
    return Position(row[0], row[1], row[2], row[3], parse_time(row[4]))


def _position_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 2**62
    if not cursor.isdigit():
        raise InvalidCursor(f"cursor {cursor!r} was not handed out by this service")
    return int(cursor)
