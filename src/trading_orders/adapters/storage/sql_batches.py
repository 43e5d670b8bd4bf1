"""Orders of one process share a database transaction: entered one at a time, committed together.

An order joins the open batch (the database transaction its process has
open), takes the locks that keep other processes off what it can meet, reads
its positions, and is decided and applied on the event loop. Its rows are
kept in the batch until the batch commits: the sequence of every order is
assigned then, under the database's sequence lock, so the log grows only by
whole committed batches in sequence order and a reader paging after sequence
N never finds an order below N appear later. One COMMIT (one fsync) answers
every order of the batch; the orders that arrive while it runs form the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from trading_orders.adapters.storage.codec import entry_from_dict, entry_to_dict, format_time, parse_time
from trading_orders.application.errors import StorageUnavailable
from trading_orders.domain.model import AppliedDecision, OrderLogEntry, Position, PositionScope, Trade

if TYPE_CHECKING:
    from trading_orders.adapters.storage.sql_order_store import Sql, SqlOrderStore

Done = TypeVar("Done")


class BatchConnection(Protocol):
    """One database transaction that the orders of one batch share; every call blocks."""

    @property
    def sql(self) -> Sql:
        """The transaction's statements."""
        ...

    def take_locks(self, names: Sequence[str], *, wait: bool) -> bool:
        """Take the locks ``names`` until the transaction ends; without ``wait``, False if one is held elsewhere."""
        ...

    def take_sequence_lock(self) -> None:
        """Wait for the right to assign the next sequences, held until the transaction ends."""
        ...

    def commit(self) -> None:
        """Commit and give the connection back; raises StorageUnavailable (rolled back) when it cannot."""
        ...

    def roll_back(self) -> None:
        """Roll back and give the connection back; does nothing once the transaction has ended."""
        ...


def holding_key(scope: PositionScope, user: str, strategy: str, instrument: str) -> str:
    """The key no two open positions may share under ``scope`` (the positions table's unique constraint)."""
    parts = (user, instrument) if scope is PositionScope.USER else (user, strategy, instrument)
    return json.dumps(parts)


def order_locks(scope: PositionScope, strategy: str, instrument: str, idempotency_key: str | None) -> list[str]:
    """The locks an order takes: what its positions are keyed by under ``scope``, and its idempotency key."""
    # Scope user nets a user's instrument across strategies, so a SELL of any
    # strategy meets it: the lock is the instrument's alone.
    meets = ["position", instrument] if scope is PositionScope.USER else ["position", strategy, instrument]
    names = [json.dumps(meets)]
    if idempotency_key is not None:
        names.append(json.dumps(["idempotency_key", idempotency_key]))
    return names


class Batch:
    """The orders sharing one database transaction, in the order they were applied, not yet committed."""

    def __init__(self, connection: BatchConnection, last_received_at: datetime | None) -> None:
        """A batch on ``connection``, after an order log whose newest order was received at ``last_received_at``."""
        self.connection = connection
        self.last_received_at = last_received_at
        self.locks: set[str] = set()
        self.keys: set[str] = set()
        self.pending: list[tuple[AppliedDecision, str | None]] = []
        # What the batch did to each holding key it touched: the position
        # open after it (with the index of the order that opened it) or None.
        self.touched: dict[str, tuple[int, Position] | None] = {}
        self.done: asyncio.Future[list[OrderLogEntry]] = asyncio.get_running_loop().create_future()
        # Read, so an error no order is left to hear is not reported as lost.
        self.done.add_done_callback(lambda done: done.cancelled() or done.exception())

    def add(self, scope: PositionScope, applied: AppliedDecision, key: str | None) -> int:
        """Keep ``applied`` for the commit; returns its place in the batch."""
        index = len(self.pending)
        self.pending.append((applied, key))
        for position in applied.change.closed:
            self.touched[_key_of(scope, position)] = None
        for position in applied.change.opened:
            self.touched[_key_of(scope, position)] = (index, position)
        if key is not None:
            self.keys.add(key)
        self.last_received_at = applied.decision.received_at
        return index

    def held(self, scope: PositionScope, users: Sequence[str], strategy: str, instrument: str) -> list[Position]:
        """The open positions of ``users`` an order can meet: the batch's own changes over the database's rows."""
        keys = [holding_key(scope, user, strategy, instrument) for user in users]
        held = [change[1] for key in keys if key in self.touched and (change := self.touched[key]) is not None]
        unknown = [key for key in keys if key not in self.touched]
        if unknown:
            rows = self.connection.sql.rows(
                "SELECT username, strategy, instrument, order_id, opened_at FROM positions "
                f"WHERE holding_key IN ({', '.join('?' * len(unknown))})",
                unknown,
            )
            held += [position_of(row) for row in rows]
        return held

    def write_and_commit(self, scope: PositionScope) -> list[OrderLogEntry]:
        """Assign the sequences, write every order, trade and position change, and commit; blocks."""
        if not self.pending:
            self.connection.roll_back()
            return []
        connection = self.connection
        try:
            connection.take_sequence_lock()
            rows = connection.sql.rows("SELECT sequence, received_at FROM orders ORDER BY sequence DESC LIMIT 1")
            last, floor = (rows[0][0], parse_time(rows[0][1])) if rows else (0, None)
            entries, moved = _sequenced(self.pending, last, floor)
            trades, opened = self._trades(entries, moved), self._opened(moved)
            _write(connection.sql, scope, entries, trades, opened, list(self.touched))
        except BaseException:
            connection.roll_back()
            raise
        connection.commit()
        return entries

    def _trades(self, entries: list[OrderLogEntry], moved: dict[str, datetime]) -> list[tuple[int, Trade]]:
        trades = []
        for entry, (applied, _) in zip(entries, self.pending, strict=True):
            for trade in applied.change.trades:
                bought_at = moved.get(trade.buy_order_id, trade.bought_at)
                sold_at = moved.get(trade.sell_order_id, trade.sold_at)
                trades.append((entry.sequence, dataclasses.replace(trade, bought_at=bought_at, sold_at=sold_at)))
        return trades

    def _opened(self, moved: dict[str, datetime]) -> list[Position]:
        still_open = sorted((change for change in self.touched.values() if change is not None), key=lambda c: c[0])
        return [
            dataclasses.replace(position, opened_at=moved.get(position.order_id, position.opened_at))
            for _, position in still_open
        ]


def _sequenced(
    pending: list[tuple[AppliedDecision, str | None]], last: int, floor: datetime | None
) -> tuple[list[OrderLogEntry], dict[str, datetime]]:
    """The entries of ``pending`` numbered after ``last``, and the orders whose time had to move up to ``floor``.

    Times only grow along the log. A batch of another process that committed
    first may hold orders received a little later than some of this one's:
    those take the newest time before them (the order is a moment later than
    the clock said, never earlier than an order before it).
    """
    entries, moved = [], {}
    for offset, (applied, key) in enumerate(pending, start=1):
        decision = applied.decision
        if floor is not None and decision.received_at < floor:
            moved[decision.order_id] = floor
            decision = dataclasses.replace(decision, received_at=floor)
        floor = decision.received_at
        entries.append(OrderLogEntry(last + offset, decision, key))
    return entries, moved


def _write(
    sql: Sql,
    scope: PositionScope,
    entries: list[OrderLogEntry],
    trades: list[tuple[int, Trade]],
    opened: list[Position],
    touched: list[str],
) -> None:
    """The rows of a batch: its orders, its trades, and the positions its orders left open or closed."""
    sql.run_many(
        "INSERT INTO orders (sequence, order_id, received_at, idempotency_key, entry) VALUES (?, ?, ?, ?, ?)",
        [
            (
                entry.sequence,
                entry.decision.order_id,
                format_time(entry.decision.received_at),
                entry.idempotency_key,
                json.dumps(entry_to_dict(entry), separators=(",", ":")),
            )
            for entry in entries
        ],
    )
    sql.run_many(
        "INSERT INTO trades (sequence, username, strategy, instrument, buy_order_id, bought_at, "
        "sell_order_id, sold_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                sequence,
                trade.user,
                trade.strategy,
                trade.instrument,
                trade.buy_order_id,
                format_time(trade.bought_at),
                trade.sell_order_id,
                format_time(trade.sold_at),
            )
            for sequence, trade in trades
        ],
    )
    # Only the net change: a position opened and closed within the batch never reaches the table.
    sql.run_many("DELETE FROM positions WHERE holding_key = ?", [(key,) for key in touched])
    sql.run_many(
        "INSERT INTO positions (holding_key, username, strategy, instrument, order_id, opened_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                _key_of(scope, position),
                position.user,
                position.strategy,
                position.instrument,
                position.order_id,
                format_time(position.opened_at),
            )
            for position in opened
        ],
    )


class BatchWriter:
    """The orders of one event loop on a SQL store: one open batch, joined by one order at a time."""

    def __init__(self, store: SqlOrderStore) -> None:
        """Write to ``store``."""
        self._store = store
        self.turn = asyncio.Lock()
        self._batch: Batch | None = None

    async def join(self, locks: Sequence[str], key: str | None, read: Callable[[Batch], Done]) -> tuple[Batch, Done]:
        """The open batch with ``locks`` taken, and what ``read`` read in it; the caller holds ``turn``."""
        batch = self._batch
        if batch is not None and key is not None and key in batch.keys:
            # A retry of an order of this very batch must find it committed.
            await self.finish(batch)
            batch = None
        if batch is not None:
            needed = [name for name in locks if name not in batch.locks]
            try:
                joined, found = await self._store.run_for_order(_lock_and_read, batch, needed, read)
            except BaseException as error:
                await self._abandon(batch, error)
                raise
            if joined:
                batch.locks.update(needed)
                return batch, cast(Done, found)  # joined: read() ran
            # Another process holds one of them: waiting for it while this
            # batch holds locks others may wait for could deadlock, so the batch
            # commits first and a new one waits holding nothing.
            await self.finish(batch)
        batch = await self._open()
        try:
            done = await asyncio.to_thread(_wait_and_read, batch, list(locks), read)
        except BaseException as error:
            await self._abandon(batch, error)
            raise
        batch.locks.update(locks)
        return batch, done

    async def _open(self) -> Batch:
        connection, last_received_at = await asyncio.to_thread(self._store.open_batch)
        batch = self._batch = Batch(connection, last_received_at)
        # Queued behind the orders already waiting for their turn: they join
        # this batch, and the orders that come after it form the next.
        asyncio.get_running_loop().create_task(self._finish_in_turn(batch))
        return batch

    async def _finish_in_turn(self, batch: Batch) -> None:
        try:
            async with self.turn:
                if self._batch is batch:
                    await self.finish(batch)
        except asyncio.CancelledError:
            # The event loop is closing: the batch must still end, or its
            # transaction would keep the database's locks.
            if self._batch is batch:
                await self._abandon(batch, StorageUnavailable("the service stopped before the order was committed"))
            raise

    async def finish(self, batch: Batch) -> None:
        """Commit ``batch`` and answer its orders (an error of its commit is theirs); the caller holds ``turn``."""
        if self._batch is batch:
            self._batch = None
        committing = asyncio.ensure_future(asyncio.to_thread(batch.write_and_commit, self._store.scope))
        committing.add_done_callback(lambda _: _settle(batch, committing))
        with contextlib.suppress(Exception):
            # Shielded: an order cancelled while it waits here leaves the commit running to its end.
            await asyncio.shield(committing)

    async def _abandon(self, batch: Batch, error: BaseException) -> None:
        """Roll ``batch`` back: none of its orders is recorded, each is answered ``error``."""
        if self._batch is batch:
            self._batch = None
        if not batch.done.done():
            batch.done.set_exception(_unavailable(error))
        with contextlib.suppress(Exception):
            await asyncio.shield(asyncio.to_thread(batch.connection.roll_back))


def _settle(batch: Batch, committing: asyncio.Future[list[OrderLogEntry]]) -> None:
    if batch.done.done():
        return
    error = committing.exception()
    if error is None:
        batch.done.set_result(committing.result())
    else:
        batch.done.set_exception(_unavailable(error))


def _lock_and_read(batch: Batch, needed: list[str], read: Callable[[Batch], Done]) -> tuple[bool, Done | None]:
    if needed and not batch.connection.take_locks(needed, wait=False):
        return False, None
    return True, read(batch)


def _wait_and_read(batch: Batch, locks: list[str], read: Callable[[Batch], Done]) -> Done:
    batch.connection.take_locks(locks, wait=True)
    return read(batch)


def _unavailable(error: BaseException) -> StorageUnavailable:
    if isinstance(error, StorageUnavailable):
        return error
    return StorageUnavailable(f"the order was not recorded: {type(error).__name__}: {error}")


def recorded_entry(sql: Sql, idempotency_key: str) -> OrderLogEntry | None:
    """The committed entry recorded with ``idempotency_key``, if any."""
    rows = sql.rows("SELECT entry FROM orders WHERE idempotency_key = ?", (idempotency_key,))
    return entry_from_dict(json.loads(rows[0][0])) if rows else None


def position_of(row: Sequence[Any]) -> Position:
    """The position a row of the positions table holds."""
    return Position(row[0], row[1], row[2], row[3], parse_time(row[4]))


def _key_of(scope: PositionScope, position: Position) -> str:
    return holding_key(scope, position.user, position.strategy, position.instrument)
