"""What the SQL order stores share: the transaction of one order, the queries, the read side.

Statements use ``?`` placeholders; each database's ``Sql`` turns them into its own.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, TypeVar

from trading_orders.adapters.storage.cursors import decimal_cursor, not_handed_out
from trading_orders.adapters.storage.sql_batches import (
    Batch,
    BatchConnection,
    BatchWriter,
    order_needs,
    position_of,
)
from trading_orders.application.errors import StartupError
from trading_orders.application.ports import StoreState
from trading_orders.domain.model import OrderLogEntry, Position, PositionScope, Trade
from trading_orders.domain.portfolio import PortfolioSlice
from trading_orders.json_records import entry_from_dict, parse_time

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

    def run_many(self, statement: str, rows: Sequence[Sequence[object]]) -> None:
        """Execute a statement once per row of values (nothing for none)."""
        ...


class SqlOrderTransaction:
    """One order's unit of work in its process's open batch (see sql_batches): its reads now, its rows at commit.

    Orders of one event loop enter one at a time (the writer's turn), from
    entering until commit(); the database work of entering runs where the
    store says (a worker thread where a statement may wait), and commit()
    waits for the batch's COMMIT with every other order of the batch.
    """

    def __init__(
        self, store: SqlOrderStore, strategy: str, instrument: str, users: Collection[str], key: str | None
    ) -> None:
        """Prepare a transaction on ``store``; nothing is opened until it is entered."""
        self._store = store
        self._what = strategy, instrument, tuple(users)
        self._key = key
        self._writer: BatchWriter | None = None
        self._batch: Batch | None = None
        # Handed out on entering.
        self.recorded: OrderLogEntry | None
        self.portfolio: PortfolioSlice
        self.last_received_at: datetime | None

    async def __aenter__(self) -> SqlOrderTransaction:
        """Join the open batch, take the order's locks and read what it needs."""
        writer = self._writer = self._store.batch_writer()
        strategy, instrument, users = self._what
        needs = order_needs(self._store.scope, strategy, instrument, users, self._key)
        writer.waiting[needs] = None
        try:
            await writer.turn.acquire()
        except BaseException:
            self._writer = None
            raise
        finally:
            writer.waiting.pop(needs, None)
        entering = asyncio.ensure_future(writer.join(needs))
        try:
            self._batch = await asyncio.shield(entering)
        except asyncio.CancelledError:
            # Its database work goes on; the next order's turn comes once it is done.
            entering.add_done_callback(lambda _: self._end_turn())
            raise
        except BaseException:
            self._end_turn()
            raise
        self.recorded, held = self._batch.read_for(needs)
        self.portfolio = PortfolioSlice(self._store.scope, held)
        self.last_received_at = self._batch.last_received_at
        return self

    def _end_turn(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.turn.release()

    async def commit(self) -> OrderLogEntry:
        """Add the decision applied to ``portfolio`` to the batch; returns once the batch has committed."""
        assert self._batch is not None, "entered before it commits"
        (applied,) = self.portfolio.take_unsaved()
        batch = self._batch
        index = batch.add(self._store.scope, applied, self._key)
        self._end_turn()
        # Shielded: cancelling one order must not cancel the batch's answer to the others.
        entries = await asyncio.shield(batch.done)
        return entries[index]

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Without commit(): the order only read, so it keeps nothing; a batch it alone opened ends here."""
        if self._writer is None:
            return
        batch, self._batch = self._batch, None
        try:
            if batch is not None and not batch.pending:
                # Its transaction would otherwise hold the database's locks
                # until the batch's own turn, which a closing loop may never give.
                await self._writer.finish(batch)
        finally:
            self._end_turn()


class SqlOrderStore(ABC):
    """An order store in a SQL database: one transaction per order, the database's locks and constraints.

    Subclasses say how to connect, how to open a transaction that serializes
    orders, and how to create or migrate the schema.
    """

    def __init__(self, scope: PositionScope, where: str) -> None:
        """Hold positions under ``scope``; ``where`` names the database in messages."""
        self.scope = scope
        self.where = where
        self._writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BatchWriter] = weakref.WeakKeyDictionary()

    def batch_writer(self) -> BatchWriter:
        """The batch writer of the running event loop (its turn is an asyncio lock, which serves one loop)."""
        loop = asyncio.get_running_loop()
        writer = self._writers.get(loop)
        if writer is None:
            writer = self._writers[loop] = BatchWriter(self)
        return writer

    def open_batch(self) -> tuple[BatchConnection, datetime | None]:
        """Begin a transaction for a batch of orders, and read when the newest order was received; blocks."""
        connection = self._begin_batch()
        try:
            rows = connection.sql.rows("SELECT received_at FROM orders ORDER BY sequence DESC LIMIT 1")
        except BaseException:
            connection.roll_back()
            raise
        return connection, parse_time(rows[0][0]) if rows else None

    @abstractmethod
    def _begin_batch(self) -> BatchConnection:
        """Begin the database transaction of a batch of orders; blocks while another process holds what it needs."""

    @abstractmethod
    async def run_for_order(self, work: Callable[..., Done], *args: Any) -> Done:
        """Run one order's database work in its batch: on a worker thread where a statement may wait."""

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Sql]:
        """A connection to read with, outside any order's transaction."""

    @abstractmethod
    def _writing(self) -> AbstractContextManager[Sql]:
        """A transaction for start-up's own writes; commits on exit, rolls back on error."""

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
        return [position_of(row) for row in rows]

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
        self._check_handed_out("SELECT 1 FROM orders WHERE sequence = ?", cursor, before)
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
            rows = sql.rows("SELECT entry FROM orders WHERE order_id = ?", (order_id,))
        return entry_from_dict(json.loads(rows[0][0])) if rows else None

    def trades_newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, Trade]]:
        """(cursor, trade) newest first; a cursor is the trade's row id."""
        before = _cursor(cursor)
        self._check_handed_out("SELECT 1 FROM trades WHERE id = ?", cursor, before)
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


def _cursor(cursor: str | None) -> int:
    if cursor is None:
        return 2**62
    return decimal_cursor(cursor)
