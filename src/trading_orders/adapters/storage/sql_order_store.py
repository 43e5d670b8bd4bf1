"""What the SQL order stores share: the transaction of one order, the queries, the read side.

Statements use ``?`` placeholders; each database's ``Sql`` turns them into its own.
"""

from __future__ import annotations

import asyncio
import json
import sys
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, TypeVar

from trading_orders.adapters.storage.codec import entry_from_dict, entry_to_dict, format_time, parse_time
from trading_orders.application.errors import InvalidCursor, StartupError
from trading_orders.application.ports import StoreState
from trading_orders.domain.model import AppliedDecision, OrderLogEntry, Position, PositionScope, Trade
from trading_orders.domain.portfolio import PortfolioSlice

_BATCH = 200

Done = TypeVar("Done")


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
    """One order's unit of work inside a database transaction, its blocking calls on a worker thread.

    Orders of one process take the store's writer lock in turn before they
    open their database transaction: a transaction waiting for the
    database's own lock would otherwise hold a worker thread that the
    transaction ahead of it needs to commit. Across processes the database's
    locks serialize them.
    """

    def __init__(
        self, store: SqlOrderStore, strategy: str, instrument: str, users: Collection[str], key: str | None
    ) -> None:
        """Prepare a transaction on ``store``; nothing is opened until it is entered."""
        self._store = store
        self._what = strategy, instrument, tuple(users)
        self._key = key
        self._work = ExitStack()
        self._sql: Sql | None = None
        self._writer: asyncio.Lock | None = None
        self._committed = False
        # Handed out on entering.
        self.recorded: OrderLogEntry | None
        self.portfolio: PortfolioSlice
        self.last_received_at: datetime | None

    async def __aenter__(self) -> SqlOrderTransaction:
        """Open the database transaction and read what the order needs."""
        self._writer = self._store._writer_lock()
        await self._writer.acquire()
        try:
            await self._in_thread(self._begin)
        except asyncio.CancelledError:
            raise  # _end_abandoned lets the next order in
        except BaseException:
            self._release_writer()
            raise
        return self

    async def _in_thread(self, work: Callable[..., Done], *args: object) -> Done:
        """Run ``work`` on a worker thread; if the order is cancelled meanwhile, end its transaction after it."""
        task = asyncio.ensure_future(asyncio.to_thread(work, *args))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(self._end_abandoned)
            raise

    async def _last_step(self, work: Callable[..., Done], *args: object) -> Done:
        """Run the transaction's last step on a worker thread, then let the next order in."""
        try:
            done = await self._in_thread(work, *args)
        except asyncio.CancelledError:
            raise  # _end_abandoned lets the next order in once the thread is done
        except BaseException:
            self._release_writer()
            raise
        self._release_writer()
        return done

    def _end_abandoned(self, _: asyncio.Future[Any]) -> None:
        # The thread went on after its order was cancelled: close what is left
        # of the transaction (nothing, once it committed) before the next order.
        ending = asyncio.ensure_future(asyncio.to_thread(self._work.close))
        ending.add_done_callback(lambda _: self._release_writer())

    def _release_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.release()

    def _begin(self) -> None:
        sql = self._sql = self._work.enter_context(self._store._writing())
        try:
            strategy, instrument, users = self._what
            self.recorded = _recorded(sql, self._key) if self._key is not None else None
            self.portfolio = PortfolioSlice(
                self._store.scope, _held(sql, self._store.scope, users, strategy, instrument)
            )
            rows = sql.rows("SELECT received_at FROM orders ORDER BY sequence DESC LIMIT 1")
            self.last_received_at = parse_time(rows[0][0]) if rows else None
        except BaseException:
            if not self._work.__exit__(*sys.exc_info()):
                raise

    async def commit(self) -> OrderLogEntry:
        """Insert the order with the next sequence, its trades and position changes; returns once committed."""
        (applied,) = self.portfolio.take_unsaved()
        self._committed = True
        return await self._last_step(self._save, applied)

    def _save(self, applied: AppliedDecision) -> OrderLogEntry:
        try:
            assert self._sql is not None, "entered before it commits"
            entry = _insert(self._sql, self._store.scope, applied, self._key)
        except BaseException:
            if not self._work.__exit__(*sys.exc_info()):
                raise
            raise
        self._work.close()
        return entry

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Without commit(): end the database transaction, keeping nothing it did not commit."""
        if self._committed or self._writer is None:
            return
        await self._last_step(self._work.__exit__, kind, error, traceback)


def _recorded(sql: Sql, idempotency_key: str) -> OrderLogEntry | None:
    rows = sql.rows("SELECT entry FROM orders WHERE idempotency_key = ?", (idempotency_key,))
    return entry_from_dict(json.loads(rows[0][0])) if rows else None


def _held(sql: Sql, scope: PositionScope, users: Sequence[str], strategy: str, instrument: str) -> list[Position]:
    keys = [holding_key(scope, user, strategy, instrument) for user in users]
    if not keys:
        return []
    rows = sql.rows(
        "SELECT username, strategy, instrument, order_id, opened_at FROM positions "
        f"WHERE holding_key IN ({', '.join('?' * len(keys))})",
        keys,
    )
    return [_position(row) for row in rows]


def _insert(sql: Sql, scope: PositionScope, applied: AppliedDecision, idempotency_key: str | None) -> OrderLogEntry:
    """Insert the order with the next sequence, its trades, and its position changes."""
    decision, change = applied.decision, applied.change
    sequence = sql.rows("SELECT COALESCE(MAX(sequence), 0) + 1 FROM orders")[0][0]
    entry = OrderLogEntry(sequence, decision, idempotency_key)
    sql.run(
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
        sql.run(
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
        sql.run(
            "DELETE FROM positions WHERE holding_key = ? AND order_id = ?",
            (_key_of(scope, position), position.order_id),
        )
    for position in change.opened:
        sql.run(
            "INSERT INTO positions (holding_key, username, strategy, instrument, order_id, opened_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                _key_of(scope, position),
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
        self.scope = scope
        self.where = where
        self._writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()

    def _writer_lock(self) -> asyncio.Lock:
        """The writer lock of the running event loop (an asyncio lock serves one loop)."""
        loop = asyncio.get_running_loop()
        lock = self._writers.get(loop)
        if lock is None:
            lock = self._writers[loop] = asyncio.Lock()
        return lock

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
            if stored and stored[0][0] != self.scope.value and held:
                raise StartupError(
                    f"{self.where} holds {held} positions opened under position scope {stored[0][0]!r}; "
                    f"start with that scope, not {self.scope.value!r}"
                )
            sql.run(
                "INSERT INTO meta (name, value) VALUES ('position_scope', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (self.scope.value,),
            )
        return 0

    def transaction(
        self, strategy: str, instrument: str, users: Collection[str], idempotency_key: str | None = None
    ) -> SqlOrderTransaction:
        """One order's unit of work: a database transaction; nothing is kept unless it commits."""
        return SqlOrderTransaction(self, strategy, instrument, users, idempotency_key)

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


def open_export_view(store: SqlOrderStore) -> Iterator[tuple[SqlOrderStore, list[Position], int]]:
    """The store as an export reads it: its order log, its open positions, and the log's length."""
    store.recover()
    yield store, store.positions(), store.state().last_sequence


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
