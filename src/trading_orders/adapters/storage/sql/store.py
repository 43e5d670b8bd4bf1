"""What the SQL order stores share: the transaction of one order, start-up, the queries, the read side."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager, nullcontext
from datetime import datetime
from typing import Any, TypeVar

from trading_orders.adapters.storage.cursors import decimal_cursor, not_handed_out
from trading_orders.adapters.storage.sql.batches import BatchConnection, order_needs, record_control
from trading_orders.adapters.storage.sql.schema import SCHEMA_VERSION, Sql, logged_entry, position_of
from trading_orders.adapters.storage.sql.writer import LOCK_WAIT_SECONDS, BatchWriter, Turn
from trading_orders.application.errors import DamagedLogEntry, StartupError, StoreBusy
from trading_orders.application.ports import StoreState
from trading_orders.domain.controls import (
    NO_CONTROLS,
    ControlChange,
    ControlLogEntry,
    Controls,
    ControlScope,
    Flatten,
    LogEntry,
)
from trading_orders.domain.model import OrderLogEntry, Position, PositionScope, Trade
from trading_orders.domain.portfolio import PortfolioSlice
from trading_orders.json_records import parse_time

_BATCH = 200
_POSITIONS = "SELECT username, strategy, instrument, order_id, opened_at FROM positions"
_ENTRIES_AFTER = "SELECT sequence, entry FROM orders WHERE sequence > ? ORDER BY sequence LIMIT ?"
# What a transaction reads first, under the controls lock: the newest entry's
# time, and the newest control change (which says whether the controls this
# process holds are still those in force).
_NEWEST_AND_CONTROLS = (
    "SELECT (SELECT received_at FROM orders ORDER BY sequence DESC LIMIT 1), "
    "(SELECT COALESCE(MAX(sequence), 0) FROM control_changes)"
)
_LAST_CONTROL = "SELECT COALESCE(MAX(sequence), 0) FROM control_changes"
_CONTROL_ENTRIES = (
    "SELECT orders.sequence, orders.entry FROM control_changes "
    "JOIN orders ON orders.sequence = control_changes.sequence "
    "WHERE control_changes.sequence > ? AND control_changes.sequence <= ? ORDER BY control_changes.sequence"
)

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
        self.recorded: LogEntry | None = turn.recorded
        self.portfolio = PortfolioSlice(scope, turn.positions, turn.controls, turn.open_counts, turn.rate_bucket)
        self.last_received_at: datetime | None = turn.last_received_at

    async def commit(self) -> OrderLogEntry:
        """Add the decision applied to ``portfolio`` to the batch; returns once the batch has committed."""
        (applied,) = self.portfolio.take_unsaved()
        return await self._turn.commit(applied)


class SqlControlTransaction:
    """One control change's unit of work: a database transaction of its own, holding the controls lock exclusively.

    While it is open no batch of orders of any process is in flight, so the
    controls and positions it hands out stay true until it ends.
    """

    def __init__(
        self,
        store: SqlOrderStore,
        connection: BatchConnection[Any],
        key: str | None,
        last_received_at: datetime | None,
        controls: Controls,
    ) -> None:
        """The change's transaction on ``connection``, with what it read when it began."""
        self._store = store
        self._connection = connection
        self._key = key
        self.last_received_at = last_received_at
        self.controls = controls
        self._read: dict[ControlScope, list[Position]] = {}
        self._committing: asyncio.Future[ControlLogEntry] | None = None
        self.recorded: LogEntry | None = None
        if key is not None:
            rows = connection.sql.rows("SELECT sequence, entry FROM orders WHERE idempotency_key = ?", (key,))
            self.recorded = logged_entry(rows[0][0], rows[0][1], store.where) if rows else None

    async def positions_in(self, scope: ControlScope) -> list[Position]:
        """The open positions in ``scope``, in the order they were opened."""
        if scope not in self._read:
            # A query on the database: off the event loop, as every order's are.
            self._read[scope] = await asyncio.to_thread(
                self._store.positions_on, self._connection.sql, scope.user, scope.strategy
            )
        return list(self._read[scope])

    async def commit(self, change: ControlChange) -> ControlLogEntry:
        """Record ``change`` (the next sequence) with what a flatten closes; returns once it is durable."""
        if self._committing is not None:
            raise RuntimeError("a control transaction commits once")
        # Only a flatten closes positions; the others need no read.
        positions = await self.positions_in(change.action.scope) if isinstance(change.action, Flatten) else []
        self._committing = asyncio.ensure_future(
            asyncio.to_thread(record_control, self._connection, self._store.scope, change, self._key, positions)
        )
        # Shielded: a cancelled request leaves the commit running to its end, and end() waits for it.
        entry = await asyncio.shield(self._committing)
        self._store.control_recorded(self.controls, entry)
        return entry

    async def end(self) -> None:
        """End the transaction: wait for a commit under way, or roll back when none was asked for."""
        if self._committing is None:
            await asyncio.to_thread(self._connection.roll_back)
            return
        with contextlib.suppress(Exception):
            await asyncio.shield(self._committing)


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
        # The controls in force as of the control change at _controls_sequence
        # (0: none). Each transaction reads the newest change's sequence and
        # replays only what this process has not seen: another may record them.
        self._controls = NO_CONTROLS
        self._controls_sequence = 0
        self._controls_lock = threading.Lock()

    def _batch_writer(self) -> BatchWriter:
        # One per event loop: its turn is an asyncio lock, which serves one loop.
        loop = asyncio.get_running_loop()
        writer = self._writers.get(loop)
        if writer is None:
            writer = self._writers[loop] = BatchWriter(self)
        return writer

    def open_batch(self, deadline: float) -> tuple[BatchConnection[Any], datetime | None, Controls]:
        """Begin a transaction for a batch of orders by ``deadline``; the newest entry's time, the controls."""
        with self.waiting_for_every_order():
            connection = self._begin_batch(deadline)
            try:
                newest, controls = self._first_reads(connection, deadline, exclusive=False)
            except BaseException:
                connection.roll_back()
                raise
        return connection, newest, controls

    def _first_reads(
        self, connection: BatchConnection[Any], deadline: float, *, exclusive: bool
    ) -> tuple[datetime | None, Controls]:
        """Take the controls lock, then read the newest entry's time and the controls in force."""
        rows = connection.take_controls_lock(deadline, exclusive=exclusive, then=_NEWEST_AND_CONTROLS)
        ((newest, last_control),) = rows
        return (None if newest is None else parse_time(newest)), self._controls_as_of(connection.sql, last_control)

    def _controls_as_of(self, sql: Sql, last_control: int) -> Controls:
        """The controls after the control change at ``last_control``, replaying only what this process has not seen."""
        with self._controls_lock:
            controls, known = self._controls, self._controls_sequence
        if last_control == known:
            return controls
        if last_control < known:
            # The database went back (restored from a backup): start again.
            controls, known = NO_CONTROLS, 0
        for sequence, text in sql.rows(_CONTROL_ENTRIES, (known, last_control)):
            entry = logged_entry(sequence, text, self.where)
            if not isinstance(entry, ControlLogEntry):
                raise DamagedLogEntry(
                    f"order-log entry {sequence} of {self.where} is listed as a control change but holds an order; "
                    "restore the database from a backup, or repair that row by hand",
                    sequence,
                )
            controls = controls.with_entry(entry)
        with self._controls_lock:
            self._controls, self._controls_sequence = controls, last_control
        return controls

    def control_recorded(self, before: Controls, entry: ControlLogEntry) -> None:
        """Hold the controls after ``entry``, just committed by this process over ``before``."""
        with self._controls_lock:
            if entry.sequence > self._controls_sequence:
                self._controls, self._controls_sequence = before.with_entry(entry), entry.sequence

    def controls(self) -> Controls:
        """The states and limits in force now, as the database holds them."""
        with self._reading() as sql:
            return self._controls_as_of(sql, int(sql.rows(_LAST_CONTROL)[0][0]))

    @asynccontextmanager
    async def control_transaction(self, idempotency_key: str | None = None) -> AsyncIterator[SqlControlTransaction]:
        """A unit of work for one control change, serialized with every order of every process."""
        async with self._batch_writer().control_turn() as deadline:
            transaction = await asyncio.to_thread(self._open_control, deadline, idempotency_key)
            try:
                yield transaction
            finally:
                await transaction.end()

    def _open_control(self, deadline: float, key: str | None) -> SqlControlTransaction:
        # Not a wait for what every order needs: a StoreBusy here says batches
        # of orders were in flight the whole bound, not that orders cannot be taken.
        connection = self._begin_batch(deadline)
        try:
            newest, controls = self._first_reads(connection, deadline, exclusive=True)
            return SqlControlTransaction(self, connection, key, newest, controls)
        except BaseException:
            connection.roll_back()
            raise

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
        with self._reading() as sql:
            return self.positions_on(sql, user, strategy, instrument)

    def positions_on(
        self, sql: Sql, user: str | None = None, strategy: str | None = None, instrument: str | None = None
    ) -> list[Position]:
        """The open positions matching every filter given, read through ``sql``, in the order they were opened."""
        clauses, values = [], []
        for column, value in (("username", user), ("strategy", strategy), ("instrument", instrument)):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
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

    def newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, LogEntry]]:
        """(cursor, entry) newest first; a cursor is the entry's sequence, looked up by primary key."""
        before = _cursor(cursor)
        self._check_handed_out("SELECT 1 FROM orders WHERE sequence = ?", cursor, before)
        query = "SELECT sequence, entry FROM orders WHERE sequence < ? ORDER BY sequence DESC LIMIT ?"
        for sequence, entry in self._pages(query, before):
            yield str(sequence), logged_entry(sequence, entry, self.where)

    def entries_after(self, sequence: int) -> Iterator[LogEntry]:
        """The entries (orders, control changes) with a sequence above ``sequence``, oldest first, read in batches."""
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

    def find_by_order_id(self, order_id: str) -> LogEntry | None:
        """The entry of order (or control change) ``order_id``, if any (by its unique index)."""
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

    def entries_after(self, sequence: int) -> Iterator[LogEntry]:
        """The entries (orders, control changes) with a sequence above ``sequence``, oldest first, read in batches."""
        for after, entry in _pages(lambda: nullcontext(self._sql), _ENTRIES_AFTER, sequence):
            yield logged_entry(after, entry, self._where)


def open_export_view(store: SqlOrderStore) -> Iterator[tuple[Iterator[LogEntry], list[Position], int]]:
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
