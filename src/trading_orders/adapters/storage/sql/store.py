"""What the SQL order stores share: the transaction of one order, start-up, the queries, the read side."""

from __future__ import annotations

import asyncio
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager, nullcontext
from datetime import datetime
from typing import Any, TypeVar

from trading_orders.adapters.storage.cursors import decimal_cursor, not_handed_out
from trading_orders.adapters.storage.sql.batches import BatchConnection, order_needs
from trading_orders.adapters.storage.sql.schema import SCHEMA_VERSION, Sql, logged_entry, position_of
from trading_orders.adapters.storage.sql.writer import LOCK_WAIT_SECONDS, BatchWriter, Turn
from trading_orders.application.errors import StartupError, StoreBusy
from trading_orders.application.ports import StoreState
from trading_orders.domain.model import OrderLogEntry, Position, PositionScope, Trade
from trading_orders.domain.portfolio import PortfolioSlice
from trading_orders.json_records import parse_time

_BATCH = 200
_POSITIONS = "SELECT username, strategy, instrument, order_id, opened_at FROM positions"
_ENTRIES_AFTER = "SELECT sequence, entry FROM orders WHERE sequence > ? ORDER BY sequence LIMIT ?"

Done = TypeVar("Done")


class SqlOrderTransaction:
    """One order's unit of work in its process's open batch: its reads now, its rows at commit.

    It lives inside the order's turn at the batch (BatchWriter.turn), so no
    other order of the process changes the batch between its reads and its
    commit; commit() ends the turn and waits for the batch's COMMIT with
    every other order of the batch.
    """

    def __init__(self, turn: Turn, scope: PositionScope) -> None:
        """The unit of work of the order whose turn is ``turn``, its positions held under ``scope``."""
        self._turn = turn
        self.recorded: OrderLogEntry | None = turn.recorded
        self.portfolio = PortfolioSlice(scope, turn.positions)
        self.last_received_at: datetime | None = turn.last_received_at

    async def commit(self) -> OrderLogEntry:
        """Add the decision applied to ``portfolio`` to the batch; returns once the batch has committed."""
        (applied,) = self.portfolio.take_unsaved()
        return await self._turn.commit(applied)


class SqlOrderStore(ABC):
    """An order store in a SQL database: one transaction per order, the database's locks and constraints.

    Subclasses say how to connect, how to open a transaction that serializes
    orders, and how to create or migrate the schema.
    """

    # How many orders may wait for their locks at once, each on a connection of its own.
    waiting_connections = 1

    def __init__(self, scope: PositionScope, where: str, lock_wait_seconds: float = LOCK_WAIT_SECONDS) -> None:
        """Hold positions under ``scope``; ``where`` names the database in messages.

        An order waits at most ``lock_wait_seconds`` for what another process holds.
        """
        self.scope = scope
        self.where = where
        self.lock_wait_seconds = lock_wait_seconds
        self._writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BatchWriter] = weakref.WeakKeyDictionary()
        # What every order needs and the last one to wait for it gave up on,
        # until an order gets it again or state() finds it free: /health says so.
        self._held_elsewhere: str | None = None

    def _batch_writer(self) -> BatchWriter:
        # One per event loop: its turn is an asyncio lock, which serves one loop.
        loop = asyncio.get_running_loop()
        writer = self._writers.get(loop)
        if writer is None:
            writer = self._writers[loop] = BatchWriter(self)
        return writer

    def open_batch(self, deadline: float) -> tuple[BatchConnection[Any], datetime | None]:
        """Begin a transaction for a batch of orders by ``deadline`` (monotonic), and read the newest order's time."""
        with self.waiting_for_every_order():
            connection = self._begin_batch(deadline)
        try:
            rows = connection.sql.rows("SELECT received_at FROM orders ORDER BY sequence DESC LIMIT 1")
        except BaseException:
            connection.roll_back()
            raise
        return connection, parse_time(rows[0][0]) if rows else None

    @contextmanager
    def waiting_for_every_order(self) -> Iterator[None]:
        """Around a wait for what every order needs: a StoreBusy from it means no order can be taken now."""
        try:
            yield
        except StoreBusy as error:
            self._held_elsewhere = str(error)
            raise
        self._held_elsewhere = None

    @abstractmethod
    def _begin_batch(self, deadline: float) -> BatchConnection[Any]:
        """Begin the database transaction of a batch of orders; waits until ``deadline`` for what another holds.

        Raises StoreBusy when another process still holds it at the deadline.
        """

    @abstractmethod
    def _free_again(self) -> bool:
        """Whether what every order needs, and an order gave up waiting for, can be had again; waits briefly."""

    @abstractmethod
    async def run_for_order(self, work: Callable[..., Done], *args: Any) -> Done:
        """Run one order's database work in its batch: on a worker thread where a statement may wait."""

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Sql]:
        """A connection to read with, outside any order's transaction."""

    @abstractmethod
    def _read_only_transaction(self) -> AbstractContextManager[Sql]:
        """One read-only transaction on one connection: every read in it sees the database at one moment."""

    @abstractmethod
    def _schema_version(self, sql: Sql) -> int:
        """The schema version the database holds, 0 when it holds no tables of the store; changes nothing."""

    @abstractmethod
    def _writing(self) -> AbstractContextManager[Sql]:
        """A transaction for start-up's own writes; commits on exit, rolls back on error."""

    @abstractmethod
    def _migrate(self) -> None:
        """Create the schema, or bring an older one up to date."""

    @abstractmethod
    def close(self) -> None:
        """Close the store's connections."""

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

    @contextmanager
    def snapshot(self) -> Iterator[SqlSnapshot]:
        """The orders and open positions at one moment, in one read-only transaction; creates or migrates nothing."""
        with self._read_only_transaction() as sql:
            version = self._schema_version(sql)
            if version != SCHEMA_VERSION:
                raise StartupError(
                    f"{self.where} holds schema version {version}, not {SCHEMA_VERSION}: "
                    "start the service on it once to create or migrate its tables"
                )
            yield SqlSnapshot(sql, self.where)

    @asynccontextmanager
    async def transaction(
        self, strategy: str, instrument: str, users: Collection[str], idempotency_key: str | None = None
    ) -> AsyncIterator[SqlOrderTransaction]:
        """One order's unit of work, in its turn at the open batch; nothing is kept unless it commits."""
        needs = order_needs(self.scope, strategy, instrument, tuple(users), idempotency_key)
        async with self._batch_writer().turn(needs) as turn:
            yield SqlOrderTransaction(turn, self.scope)

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
            rows = sql.rows(f"{_POSITIONS} {where} ORDER BY id", values)
        return [position_of(row) for row in rows]

    def state(self) -> StoreState:
        """The log's length, the open positions, and whether the database answers and orders can be taken."""
        try:
            with self._reading() as sql:
                last = sql.rows("SELECT COALESCE(MAX(sequence), 0) FROM orders")[0][0]
                held = sql.rows("SELECT COUNT(*) FROM positions")[0][0]
        except Exception:
            return StoreState(0, 0, reachable=False)
        if self._held_elsewhere is not None:
            if not self._free_again():
                # Words for a client: what was held, never a path or a host.
                reason = f"orders waited {self.lock_wait_seconds:g} s for a lock another process holds"
                return StoreState(last, held, reachable=False, reason=reason)
            self._held_elsewhere = None
        return StoreState(last, held, reachable=True)

    def newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, OrderLogEntry]]:
        """(cursor, entry) newest first; a cursor is the entry's sequence, looked up by primary key."""
        before = _cursor(cursor)
        self._check_handed_out("SELECT 1 FROM orders WHERE sequence = ?", cursor, before)
        query = "SELECT sequence, entry FROM orders WHERE sequence < ? ORDER BY sequence DESC LIMIT ?"
        for sequence, entry in self._pages(query, before):
            yield str(sequence), logged_entry(sequence, entry, self.where)

    def entries_after(self, sequence: int) -> Iterator[OrderLogEntry]:
        """The entries with a sequence above ``sequence``, oldest first, read in batches."""
        for after, entry in self._pages(_ENTRIES_AFTER, sequence):
            yield logged_entry(after, entry, self.where)

    def _pages(self, query: str, start: int) -> Iterator[tuple[Any, ...]]:
        """The rows ``query`` answers, read in pages; no connection is held between reads."""
        return _pages(self._reading, query, start)

    def _check_handed_out(self, lookup: str, cursor: str | None, key: int) -> None:
        """Raise InvalidCursor unless ``cursor`` names a row ``lookup`` finds: one beyond the log is no page."""
        if cursor is None:
            return
        with self._reading() as sql:
            if not sql.rows(lookup, (key,)):
                raise not_handed_out(cursor)

    def find_by_order_id(self, order_id: str) -> OrderLogEntry | None:
        """The entry of order ``order_id``, if any (by its unique index)."""
        with self._reading() as sql:
            rows = sql.rows("SELECT sequence, entry FROM orders WHERE order_id = ?", (order_id,))
        return logged_entry(rows[0][0], rows[0][1], self.where) if rows else None

    def trades_newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, Trade]]:
        """(cursor, trade) newest first; a cursor is the trade's row id."""
        before = _cursor(cursor)
        self._check_handed_out("SELECT 1 FROM trades WHERE id = ?", cursor, before)
        query = (
            "SELECT id, username, strategy, instrument, buy_order_id, bought_at, sell_order_id, sold_at "
            "FROM trades WHERE id < ? ORDER BY id DESC LIMIT ?"
        )
        for row in self._pages(query, before):
            yield str(row[0]), Trade(row[1], row[2], row[3], row[4], parse_time(row[5]), row[6], parse_time(row[7]))


class SqlSnapshot:
    """The orders and open positions as one read-only transaction sees them: nothing committed later shows."""

    def __init__(self, sql: Sql, where: str) -> None:
        """Read through ``sql``, a connection inside its read-only transaction; ``where`` names the database."""
        self._sql = sql
        self._where = where

    def positions(self) -> list[Position]:
        """Every open position, in the order they were opened."""
        return [position_of(row) for row in self._sql.rows(f"{_POSITIONS} ORDER BY id")]

    def last_sequence(self) -> int:
        """The sequence of the newest order, 0 when there is none."""
        return int(self._sql.rows("SELECT COALESCE(MAX(sequence), 0) FROM orders")[0][0])

    def entries_after(self, sequence: int) -> Iterator[OrderLogEntry]:
        """The entries with a sequence above ``sequence``, oldest first, read in batches."""
        for after, entry in _pages(lambda: nullcontext(self._sql), _ENTRIES_AFTER, sequence):
            yield logged_entry(after, entry, self._where)


def open_export_view(store: SqlOrderStore) -> Iterator[tuple[Iterator[OrderLogEntry], list[Position], int]]:
    """The store as an export reads it: its orders, its open positions and the log's length, at one moment.

    Read in one read-only transaction, so an order committed meanwhile is in
    none of the three or in all; nothing is created, migrated or written.
    """
    with store.snapshot() as snapshot:
        yield snapshot.entries_after(0), snapshot.positions(), snapshot.last_sequence()


class SqlTradeReader:
    """The trades of a SQL order store, as the read side's TradeLogReader."""

    def __init__(self, store: SqlOrderStore) -> None:
        """Read the trades of ``store``."""
        self._store = store

    def newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, Trade]]:
        """(cursor, trade) newest first."""
        return self._store.trades_newest_first(cursor)


def _pages(reading: Callable[[], AbstractContextManager[Sql]], query: str, start: int) -> Iterator[tuple[Any, ...]]:
    """The rows ``query`` answers, read ``_BATCH`` at a time, each read from the last row's key.

    ``query`` takes the key to read from, then the limit; a row's first
    column is its key. Each page is read on the connection ``reading`` gives.
    """
    key = start
    while True:
        with reading() as sql:
            rows = sql.rows(query, (key, _BATCH))
        yield from rows
        if len(rows) < _BATCH:
            return
        key = rows[-1][0]


def _cursor(cursor: str | None) -> int:
    if cursor is None:
        return 2**62
    return decimal_cursor(cursor)
