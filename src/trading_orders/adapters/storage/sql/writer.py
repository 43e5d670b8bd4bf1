"""The writer's turn: the orders of one event loop change their open batch one at a time.

An order's turn, ``async with writer.turn(needs) as turn``, starts once every
order before it has committed or left; the batch holds the order's locks and
has read what it needs. ``turn.commit(applied)`` adds the order to the batch
and ends the turn, then waits for the batch's COMMIT; leaving the block
without it adds nothing. The batch commits in a turn of its own, queued
behind the orders that were waiting when it opened.

An order whose lock another transaction holds does not wait in the open
batch, which would hold up every other order of the process: the batch
commits, and a new one waits for the lock a moment (another process's batch
lets go within milliseconds), gathering for the orders behind it. A lock held
longer, or one an order of the process already waits for, is waited for in a
batch of its own, on a connection of its own, off the turn, the order decided
and committed there alone. Every wait (for the turn, a connection, a lock) ends
at the order's deadline, ``lock_wait_seconds`` after it asked for its turn;
an order that reaches it is refused with StoreBusy and is in no batch.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, NoReturn, Protocol, TypeVar

from trading_orders.adapters.storage.sql.batches import Batch, BatchConnection, OrderNeeds
from trading_orders.application.errors import DamagedLogEntry, StorageUnavailable, StoreBusy
from trading_orders.domain.controls import Controls, LogEntry
from trading_orders.domain.model import AppliedDecision, OrderLogEntry, PositionScope

# How many waiting orders a batch reads for at once.
_GATHERED = 64
# How long an order whose lock another process's batch holds waits for it in
# the turn, in a new batch the orders behind it join: such a batch commits
# within milliseconds, and an order that waited aside would commit alone. A
# lock held longer holds the turn this long once, then the order waits aside.
_IN_TURN_WAIT_SECONDS = 0.1
# How long an order waits, by default, for what another process holds: long
# beside a batch (milliseconds), short beside a client's patience.
LOCK_WAIT_SECONDS = 5.0

Done = TypeVar("Done")


class BatchStore(Protocol):
    """What a batch writer needs of its store: the position scope, a new batch, and where an order's reads run."""

    @property
    def scope(self) -> PositionScope:
        """The scope positions are held in."""
        ...

    @property
    def lock_wait_seconds(self) -> float:
        """How long an order waits for what another process holds before it is refused."""
        ...

    @property
    def waiting_connections(self) -> int:
        """How many orders may wait for their locks at once, each in a batch on a connection of its own."""
        ...

    def open_batch(self, deadline: float) -> tuple[BatchConnection[Any], datetime | None, Controls]:
        """Begin a transaction for a batch of orders by ``deadline``; the newest entry's time, the controls."""
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
        self._recorded, self.positions = batch.read_for(needs)
        self.open_counts, self.rate_bucket = batch.limits_for(needs)
        self.controls = batch.controls
        self.last_received_at = batch.last_received_at

    @property
    def recorded(self) -> LogEntry | None:
        """The entry recorded with the order's idempotency key, or None; DamagedLogEntry when its row is unreadable."""
        if isinstance(self._recorded, DamagedLogEntry):
            # Raised inside the order's turn, whose end lets the batch go on without it.
            raise self._recorded.with_traceback(None)
        return self._recorded

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
        # Each order waiting for a lock outside the open batch holds a
        # connection: capped, so the open batch always finds one.
        self._waiting_aside = asyncio.Semaphore(store.waiting_connections)
        # The locks orders wait for aside: another order needing one goes straight there
        # (the locks an order's controls add are not among them: it finds those held in the batch).
        self._locks_aside: collections.Counter[str] = collections.Counter()
        self._ending: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def turn(self, needs: OrderNeeds) -> AsyncIterator[Turn]:
        """The turn of the order of ``needs``: a batch holds its locks and has read what it needs.

        Orders of this event loop take turns at the open batch: the turn starts
        once every order before it has committed or left, and ends at its
        commit or with the block. An order whose lock another transaction holds
        waits for it in a batch of its own instead, leaving the turn to the
        others. A block left without a commit adds nothing to the batch, and a
        batch that no order added to ends with it. Raises StoreBusy, with the
        order in no batch, when the order's deadline passes while it waits.
        """
        deadline = time.monotonic() + self._store.lock_wait_seconds
        self._waiting[needs] = None
        try:
            await self._take_turn(deadline)
        finally:
            self._waiting.pop(needs, None)
        joining = asyncio.ensure_future(self._join(needs, deadline))
        try:
            joined = await asyncio.shield(joining)
        except asyncio.CancelledError:
            # Its database work goes on; the next order's turn comes once it is done.
            joining.add_done_callback(lambda _: self._lock.release())
            raise
        except BaseException:
            self._lock.release()
            raise
        if joined is None:
            self._lock.release()
            async with self._aside(needs, deadline) as turn:
                yield turn
            return
        batch = joined
        turn = Turn(batch, needs, self._store.scope, self._lock.release)
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

    @contextlib.asynccontextmanager
    async def control_turn(self) -> AsyncIterator[float]:
        """The turn of a control change: while it lasts, no order of this event loop is in a batch.

        The open batch commits first: its orders are sequenced before the
        change, and the orders that come later wait for their turn until the
        change has ended. Yields the change's deadline, ``lock_wait_seconds``
        from now; raises StoreBusy if it passes while the change waits here.
        """
        deadline = time.monotonic() + self._store.lock_wait_seconds
        await self._take_turn(deadline)
        try:
            if self._batch is not None:
                # Committed before the change waits for every batch of every
                # process to end (PostgreSQL's controls lock), this one included.
                await self._finish(self._batch)
            yield deadline
        finally:
            self._lock.release()

    async def _take_turn(self, deadline: float) -> None:
        """Wait for the order's turn at the open batch; StoreBusy once ``deadline`` passes."""
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                await self._lock.acquire()
        except TimeoutError:
            raise self._busy("its turn: the orders before it waited for what another process holds") from None

    def _busy(self, waited_for: str) -> StoreBusy:
        seconds = self._store.lock_wait_seconds
        return StoreBusy(f"the order was not recorded: it waited {seconds:g} s for {waited_for}", seconds)

    async def _join(self, needs: OrderNeeds, deadline: float) -> Batch | None:
        """The open batch, holding the locks of ``needs`` and having read what it needs; in the order's turn.

        None when another transaction holds one of the locks: the order waits for it elsewhere.
        """
        batch = self._batch
        if batch is not None and needs.key is not None and needs.key in batch.keys:
            # A retry of an order of this very batch must find it committed.
            await self._finish(batch)
            batch = None
        if batch is None:
            try:
                batch = await self._open(deadline)
            except BaseException as error:
                _raise_as_unavailable(error)
        elif batch.covers(needs):
            return batch
        # Never waiting: a lock another transaction holds would hold up every order of the batch.
        try:
            joined = await self._store.run_for_order(
                functools.partial(batch.gather, wait_until=None), needs, self._others(needs)
            )
        except BaseException as error:
            await self._abandon(batch, error)
            _raise_as_unavailable(error)
        if joined:
            return batch
        if any(name in self._locks_aside for name in needs.locks):
            return None
        # Waiting while the batch holds locks another process may wait for
        # could deadlock: it commits first, and a new one waits holding nothing.
        await self._finish(batch)
        try:
            batch = await self._open(deadline)
        except BaseException as error:
            _raise_as_unavailable(error)
        moment = min(deadline, time.monotonic() + _IN_TURN_WAIT_SECONDS)
        try:
            await asyncio.to_thread(batch.gather, needs, self._others(needs), wait_until=moment)
        except StoreBusy:
            # Held longer than a batch: the order waits aside, and this batch, holding nothing, ends.
            await self._finish(batch)
            return None
        except BaseException as error:
            await self._abandon(batch, error)
            _raise_as_unavailable(error)
        return batch

    @contextlib.asynccontextmanager
    async def _aside(self, needs: OrderNeeds, deadline: float) -> AsyncIterator[Turn]:
        """A turn at a batch of the order's own, once another transaction has let its locks go; off the turn.

        No other order shares the batch, so the order is decided and committed
        alone; the open batch cannot hold its locks meanwhile, and other
        processes' orders on its keys wait for them as it did.
        """
        self._locks_aside.update(needs.locks)
        try:
            async with self._aside_turn(needs, deadline) as turn:
                yield turn
        finally:
            self._locks_aside.subtract(needs.locks)
            self._locks_aside += collections.Counter()  # drops the locks no order waits for any more

    @contextlib.asynccontextmanager
    async def _aside_turn(self, needs: OrderNeeds, deadline: float) -> AsyncIterator[Turn]:
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                await self._waiting_aside.acquire()
        except TimeoutError:
            raise self._busy("a connection: other orders held every one while they waited for locks") from None
        waiting = asyncio.ensure_future(self._open_aside(needs, deadline))
        try:
            batch = await asyncio.shield(waiting)
        except asyncio.CancelledError:
            # The wait goes on in its thread until its deadline; its batch then ends, holding nothing.
            waiting.add_done_callback(self._end_abandoned_aside)
            raise
        except BaseException:
            self._waiting_aside.release()
            raise
        turn = Turn(batch, needs, self._store.scope, lambda: self._end_aside(batch))
        try:
            yield turn
        finally:
            turn._end()

    async def _open_aside(self, needs: OrderNeeds, deadline: float) -> Batch:
        try:
            connection, last_received_at, controls = await asyncio.to_thread(self._store.open_batch, deadline)
        except BaseException as error:
            _raise_as_unavailable(error)
        batch = Batch(connection, last_received_at, controls)
        try:
            await asyncio.to_thread(batch.gather, needs, (), wait_until=deadline)
        except BaseException as error:
            await self._abandon(batch, error)
            _raise_as_unavailable(error)
        return batch

    def _end_aside(self, batch: Batch) -> None:
        """Commit (or, with no order added, roll back) a batch of one waiting order, and free its connection."""

        async def end() -> None:
            try:
                await self._finish(batch)
            finally:
                self._waiting_aside.release()

        ending = asyncio.get_running_loop().create_task(end())
        self._ending.add(ending)
        ending.add_done_callback(self._ending.discard)

    def _end_abandoned_aside(self, waiting: asyncio.Future[Batch]) -> None:
        if waiting.cancelled() or waiting.exception() is not None:
            self._waiting_aside.release()
        else:
            self._end_aside(waiting.result())

    def _others(self, needs: OrderNeeds) -> list[OrderNeeds]:
        # Taken just before the round trip: the orders that came while the batch opened are among them.
        return [waiting for waiting in itertools.islice(self._waiting, _GATHERED + 1) if waiting is not needs][
            :_GATHERED
        ]

    async def _open(self, deadline: float) -> Batch:
        connection, last_received_at, controls = await asyncio.to_thread(self._store.open_batch, deadline)
        batch = self._batch = Batch(connection, last_received_at, controls)
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
