"""What the SQL order stores share: the transaction of one order, the queries, the read side.

Statements use ``?`` placeholders; each database's ``Sql`` turns them into its own.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, Protocol

from trading_orders.adapters.storage.codec import entry_from_dict, entry_to_dict, format_time, parse_time
from trading_orders.application.errors import InvalidCursor, StartupError
from trading_orders.application.ports import StoreState
from trading_orders.domain.model import OrderDecision, OrderLogEntry, Position, PositionChange, PositionScope, Trade

_BATCH = 200


class Sql(Protocol):
    """One connection's statements, with ``?`` placeholders."""

    def rows(self, statement: str, values: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """The rows a query answers."""
        ...

    def run(self, statement: str, values: Sequence[object] = ()) -> None:
        """Execute a statement that answers no rows."""
        ...


def holding_key(scope: PositionScope, user: str, strategy: str, instrument: str) -> str:
    """The key no two open positions may share under ``scope`` (the positions table's unique constraint)."""
    parts = (user, instrument) if scope is PositionScope.USER else (user, strategy, instrument)
    return json.dumps(parts)


class SqlOrderTransaction:
    """One order's reads and writes inside a database transaction."""

    def __init__(self, sql: Sql, scope: PositionScope) -> None:
        """Work on ``sql``, inside a transaction its store opened."""
        self._sql = sql
        self._scope = scope

    def recorded(self, idempotency_key: str) -> OrderLogEntry | None:
        """The entry recorded with ``idempotency_key``, if any."""
        rows = self._sql.rows("SELECT entry FROM orders WHERE idempotency_key = ?", (idempotency_key,))
        return entry_from_dict(json.loads(rows[0][0])) if rows else None

    def held(self, users: Iterable[str], strategy: str, instrument: str) -> list[Position]:
        """The open positions an order in ``strategy`` for ``instrument`` could meet for these users."""
        keys = [holding_key(self._scope, user, strategy, instrument) for user in users]
        if not keys:
            return []
        rows = self._sql.rows(
            "SELECT username, strategy, instrument, order_id, opened_at FROM positions "
            f"WHERE holding_key IN ({', '.join('?' * len(keys))})",
            keys,
        )
        return [_position(row) for row in rows]

    def last_received_at(self) -> datetime | None:
        """When the newest recorded order was received."""
        rows = self._sql.rows("SELECT received_at FROM orders ORDER BY sequence DESC LIMIT 1")
        return parse_time(rows[0][0]) if rows else None

    def record(self, decision: OrderDecision, change: PositionChange, idempotency_key: str | None) -> OrderLogEntry:
        """Insert the order with the next sequence, its trades, and its position changes."""
        sequence = self._sql.rows("SELECT COALESCE(MAX(sequence), 0) + 1 FROM orders")[0][0]
        entry = OrderLogEntry(sequence, decision, idempotency_key)
        self._sql.run(
            "INSERT INTO orders (sequence, order_id, received_at, idempotency_key, entry) VALUES (?, ?, ?, ?, ?)",
            (
                sequence,
                decision.order_id,
                format_time(decision.received_at),
                idempotency_key,
                json.dumps(entry_to_dict(entry), separators=(",", ":")),
            ),
        )
        for trade in change.trades:
            self._sql.run(
                "INSERT INTO trades (sequence, username, strategy, instrument, buy_order_id, bought_at, "
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
            self._sql.run(
                "DELETE FROM positions WHERE holding_key = ? AND order_id = ?",
                (_key_of(self._scope, position), position.order_id),
            )
        for position in change.opened:
            self._sql.run(
                "INSERT INTO positions (holding_key, username, strategy, instrument, order_id, opened_at) "
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


class SqlOrderStore(ABC):
    """An order store in a SQL database: one transaction per order, the database's locks and constraints.

    Subclasses say how to connect, how to open a transaction that serializes
    orders, and how to create or migrate the schema.
    """

    def __init__(self, scope: PositionScope, where: str) -> None:
        """Hold positions under ``scope``; ``where`` names the database in messages."""
        self._scope = scope
        self.where = where

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Sql]:
        """A connection to read with, outside any order's transaction."""

    @abstractmethod
    def _writing(self) -> AbstractContextManager[Sql]:
        """A transaction that orders are serialized by; commits on exit, rolls back on error."""

    @abstractmethod
    def _migrate(self) -> None:
        """Create the schema, or bring an older one up to date."""

    def recover(self) -> int:
        """Create or migrate the schema and check the scope; nothing to replay (each order is one transaction)."""
        self._migrate()
        with self._writing() as sql:
            stored = sql.rows("SELECT value FROM meta WHERE name = 'position_scope'")
            held = sql.rows("SELECT COUNT(*) FROM positions")[0][0]
            if stored and stored[0][0] != self._scope.value and held:
                raise StartupError(
                    f"{self.where} holds {held} positions opened under position scope {stored[0][0]!r}; "
                    f"start with that scope, not {self._scope.value!r}"
                )
            sql.run(
                "INSERT INTO meta (name, value) VALUES ('position_scope', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (self._scope.value,),
            )
        return 0

    @contextmanager
    def transaction(self) -> Iterator[SqlOrderTransaction]:
        """One order's transaction; nothing is kept if it ends in an error."""
        with self._writing() as sql:
            yield SqlOrderTransaction(sql, self._scope)

    def positions(
        self, user: str | None = None, strategy: str | None = None, instrument: str | None = None
    ) -> list[Position]:
        """The open positions matching every filter given, in the order they were opened."""
        clauses, values = [], []
        for column, value in (("username", user), ("strategy", strategy), ("instrument", instrument)):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._reading() as sql:
            rows = sql.rows(
                f"SELECT username, strategy, instrument, order_id, opened_at FROM positions {where} ORDER BY id",
                values,
            )
        return [_position(row) for row in rows]

    def state(self) -> StoreState:
        """The log's length, the open positions, and whether the database answers."""
        try:
            with self._reading() as sql:
                last = sql.rows("SELECT COALESCE(MAX(sequence), 0) FROM orders")[0][0]
                held = sql.rows("SELECT COUNT(*) FROM positions")[0][0]
        except Exception:
            return StoreState(0, 0, reachable=False)
        return StoreState(last, held, reachable=True)

    def newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, OrderLogEntry]]:
        """(cursor, entry) newest first; a cursor is the entry's sequence, looked up by primary key."""
        before = _cursor(cursor)
        while True:
            with self._reading() as sql:
                rows = sql.rows(
                    "SELECT sequence, entry FROM orders WHERE sequence < ? ORDER BY sequence DESC LIMIT ?",
                    (before, _BATCH),
                )
            for sequence, entry in rows:
                yield str(sequence), entry_from_dict(json.loads(entry))
            if len(rows) < _BATCH:
                return
            before = rows[-1][0]

    def entries_after(self, sequence: int) -> Iterator[OrderLogEntry]:
        """The entries with a sequence above ``sequence``, oldest first, read in batches."""
        after = sequence
        while True:
            with self._reading() as sql:
                rows = sql.rows(
                    "SELECT sequence, entry FROM orders WHERE sequence > ? ORDER BY sequence LIMIT ?", (after, _BATCH)
                )
            for _, entry in rows:
                yield entry_from_dict(json.loads(entry))
            if len(rows) < _BATCH:
                return
            after = rows[-1][0]

    def find_by_order_id(self, order_id: str) -> OrderLogEntry | None:
        """The entry of order ``order_id``, if any (by its unique index)."""
        with self._reading() as sql:
            rows = sql.rows("SELECT entry FROM orders WHERE order_id = ?", (order_id,))
        return entry_from_dict(json.loads(rows[0][0])) if rows else None

    def trades_newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, Trade]]:
        """(cursor, trade) newest first; a cursor is the trade's row id."""
        before = _cursor(cursor)
        while True:
            with self._reading() as sql:
                rows = sql.rows(
                    "SELECT id, username, strategy, instrument, buy_order_id, bought_at, sell_order_id, sold_at "
                    "FROM trades WHERE id < ? ORDER BY id DESC LIMIT ?",
                    (before, _BATCH),
                )
            for row in rows:
                yield str(row[0]), Trade(row[1], row[2], row[3], row[4], parse_time(row[5]), row[6], parse_time(row[7]))
            if len(rows) < _BATCH:
                return
            before = rows[-1][0]


class SqlTradeReader:
    """The trades of a SQL order store, as the read side's TradeLogReader."""

    def __init__(self, store: SqlOrderStore) -> None:
        """Read the trades of ``store``."""
        self._store = store

    def newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, Trade]]:
        """(cursor, trade) newest first."""
        return self._store.trades_newest_first(cursor)


def _key_of(scope: PositionScope, position: Position) -> str:
    return holding_key(scope, position.user, position.strategy, position.instrument)


def _position(row: Sequence[Any]) -> Position:
    return Position(row[0], row[1], row[2], row[3], parse_time(row[4]))


def _cursor(cursor: str | None) -> int:
    if cursor is None:
        return 2**62
    if not cursor.isdigit() or len(cursor) > 18:
        raise InvalidCursor(f"cursor {cursor!r} was not handed out by this service")
    return int(cursor)
