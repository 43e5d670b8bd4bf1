"""The writer's turn: the orders of one event loop change their open batch one at a time.

An order's turn, ``async with writer.turn(needs) as turn``, starts once every
order before it has committed or left; the batch holds the order's locks and
has read what it needs. ``turn.commit(applied)`` adds the order to the batch
and ends the turn, then waits for the batch's COMMIT; leaving the block
without it adds nothing. The batch commits in a turn of its own, queued
behind the orders that were waiting when it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, NoReturn, Protocol, TypeVar

from trading_orders.adapters.storage.sql.batches import Batch, BatchConnection, OrderNeeds
from trading_orders.application.errors import StorageUnavailable
from trading_orders.domain.model import AppliedDecision, OrderLogEntry, PositionScope

# How many waiting orders a batch reads for at once.
_GATHERED = 64

Done = TypeVar("Done")


class BatchStore(Protocol):
    """What a batch writer needs of its store: the position scope, a new batch, and where an order's reads run."""

    @property
    def scope(self) -> PositionScope:
        """The scope positions are held in."""
        ...

    def open_batch(self) -> tuple[BatchConnection[Any], datetime | None]:
        """Begin a transaction for a batch of orders, and read when the newest order was received; blocks."""
        ...

    async def run_for_order(self, work: Callable[..., Done], *args: Any) -> Done:
        """Run one order's database work in its batch: on a worker thread where a statement may wait."""
        ...


class Turn:
    """An order's turn at its process's open batch: what the batch read for it, and the one way to add to it.

    Only BatchWriter.turn() hands one out, and it ends when the order commits
    or its block ends, whichever comes first.
    """

    def __init__(self, batch: Batch, needs: OrderNeeds, scope: PositionScope, end: Callable[[], None]) -> None:
        """The turn of the order of ``needs`` at ``batch``; ``end`` lets the next order in."""
        self._batch = batch
        self._key = needs.key
        self._scope = scope
        self._release: Callable[[], None] | None = end
        self.recorded, self.positions = batch.read_for(needs)
        self.last_received_at = batch.last_received_at

    @property
    def held(self) -> bool:
        """Whether the turn has not ended yet."""
        return self._release is not None

    def _end(self) -> None:
        # Once, whether by commit() or by the block's end: the lock is released exactly once.
        release, self._release = self._release, None
        if release is not None:
            release()

    async def commit(self, applied: AppliedDecision) -> OrderLogEntry:
        """Add ``applied`` to the batch and end the turn; returns its entry once the batch has committed."""
        if not self.held:
            raise RuntimeError("the order's turn has ended: it can no longer add to the batch")
        index = self._batch.add(self._scope, applied, self._key)
        self._end()
        # Shielded: cancelling one order must not cancel the batch's answer to the others.
        entries = await asyncio.shield(self._batch.done)
        return entries[index]


class BatchWriter:
    """The orders of one event loop on a SQL store: one open batch, joined by one order at a time.

    The batch changes only inside an order's turn (turn()) or the batch's own
    turn to commit, both under one lock: an order's reads and its place in the
    batch are never interleaved with another's.
    """

    def __init__(self, store: BatchStore) -> None:
        """Write to ``store``."""
        self._store = store
        self._lock = asyncio.Lock()
        # The orders waiting for their turn, oldest first: a batch reads for
        # them while it reads for the order whose turn it is.
        self._waiting: dict[OrderNeeds, None] = {}
        self._batch: Batch | None = None

    @contextlib.asynccontextmanager
    async def turn(self, needs: OrderNeeds) -> AsyncIterator[Turn]:
        """The turn of the order of ``needs``: the open batch holds its locks and has read what it needs.

        Orders of this event loop take turns: the turn starts once every order
        before it has committed or left, and ends at its commit or with the
        block. A block left without a commit adds nothing to the batch, and a
        batch that no order added to ends with it.
        """
        self._waiting[needs] = None
        try:
            await self._lock.acquire()
        finally:
            self._waiting.pop(needs, None)
        joining = asyncio.ensure_future(self._join(needs))
        try:
            batch = await asyncio.shield(joining)
            turn = Turn(batch, needs, self._store.scope, self._lock.release)
        except asyncio.CancelledError:
            # Its database work goes on; the next order's turn comes once it is done.
            joining.add_done_callback(lambda _: self._lock.release())
            raise
        except BaseException:
            self._lock.release()
            raise
        try:
            yield turn
        finally:
            try:
                if turn.held and not batch.pending:
                    # Its transaction would otherwise hold the database's locks
                    # until the batch's own turn, which a closing loop may never give.
                    await self._finish(batch)
            finally:
                turn._end()

    async def _join(self, needs: OrderNeeds) -> Batch:
        """The open batch, holding the locks of ``needs`` and having read what it needs; in the order's turn."""
        batch = self._batch
        if batch is not None and needs.key is not None and needs.key in batch.keys:
            # A retry of an order of this very batch must find it committed.
            await self._finish(batch)
            batch = None
        if batch is not None:
            if batch.covers(needs):
                return batch
            try:
                joined = await self._store.run_for_order(
                    functools.partial(batch.gather, wait=False), needs, self._others(needs)
                )
            except BaseException as error:
                await self._abandon(batch, error)
                _raise_as_unavailable(error)
            if joined:
                return batch
            # Another process holds one of them: waiting for it while this
            # batch holds locks others may wait for could deadlock, so the batch
            # commits first and a new one waits holding nothing.
            await self._finish(batch)
        try:
            batch = await self._open()
        except BaseException as error:
            _raise_as_unavailable(error)
        try:
            await asyncio.to_thread(batch.gather, needs, self._others(needs), wait=True)
        except BaseException as error:
            await self._abandon(batch, error)
            _raise_as_unavailable(error)
        return batch

    def _others(self, needs: OrderNeeds) -> list[OrderNeeds]:
        # Taken just before the round trip: the orders that came while the batch opened are among them.
        return [waiting for waiting in itertools.islice(self._waiting, _GATHERED + 1) if waiting is not needs][
            :_GATHERED
        ]

    async def _open(self) -> Batch:
        connection, last_received_at = await asyncio.to_thread(self._store.open_batch)
        batch = self._batch = Batch(connection, last_received_at)
        # Queued behind the orders already waiting for their turn: they join
        # this batch, and the orders that come after it form the next.
        asyncio.get_running_loop().create_task(self._finish_in_turn(batch))
        return batch

    async def _finish_in_turn(self, batch: Batch) -> None:
        try:
            async with self._lock:
                if self._batch is batch:
                    await self._finish(batch)
        except asyncio.CancelledError:
            # The event loop is closing: the batch must still end, or its
            # transaction would keep the database's locks.
            if self._batch is batch:
                await self._abandon(batch, StorageUnavailable("the service stopped before the order was committed"))
            raise

    async def _finish(self, batch: Batch) -> None:
        """Commit ``batch`` and answer its orders (an error of its commit is theirs); under the lock."""
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


def _raise_as_unavailable(error: BaseException) -> NoReturn:
    # An order is answered 503 for whatever kept its batch from the database;
    # a cancellation or an error already saying so goes on as it is.
    if isinstance(error, StorageUnavailable) or not isinstance(error, Exception):
        raise error
    raise _unavailable(error) from error


def _unavailable(error: BaseException) -> StorageUnavailable:
    if isinstance(error, StorageUnavailable):
        return error
    return StorageUnavailable(f"the order was not recorded: {type(error).__name__}: {error}")
