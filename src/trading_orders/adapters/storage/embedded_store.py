"""The embedded order store: an order log, a trade log and position snapshots, served by one process."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from trading_orders.application.errors import ServiceNotStarted, StorageUnavailable
from trading_orders.application.log_replay import replay_log_tail
from trading_orders.application.ports import (
    DurabilityTicket,
    OrderLog,
    PositionStore,
    StoredPositions,
    StoreState,
    TradeLog,
)
from trading_orders.domain.model import OrderDecision, OrderLogEntry, Position, PositionChange, PositionScope, Trade
from trading_orders.domain.portfolio import Portfolio

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CheckpointPolicy:
    """How often the open positions are snapshotted and the log's index brought up to date."""

    every_orders: int = 10_000
    every_seconds: float = 10.0

    def __post_init__(self) -> None:
        """Refuse intervals that would never or always checkpoint."""
        if self.every_orders < 1:
            raise ValueError(f"every_orders must be at least 1, got {self.every_orders}")
        if self.every_seconds <= 0:
            raise ValueError(f"every_seconds must be above 0, got {self.every_seconds}")


class EmbeddedOrderStore:
    """Orders decided one at a time in memory, made durable in groups, over files this process alone owns.

    The order log is the source of truth and the commit point. Under the
    store's lock an order is decided on the in-memory portfolio and its entry
    written to the log, which takes microseconds. The fsync happens after the
    lock is released: while one thread syncs, the orders that arrive meanwhile
    are decided and written, and the next sync makes them all durable (group
    commit). Every transaction waits, on leaving, for its own entry to be
    durable, so no answer runs ahead of the disk; decisions stay serialized
    and in log order.

    Trades are written once their SELL is durable. The positions are written
    as a snapshot stamped with the log sequence it contains, every
    ``policy.every_orders`` orders or ``policy.every_seconds`` seconds, by a
    background thread: the cost of an order does not grow with the number of
    open positions. recover() loads the snapshot and replays the log after it.
    """

    def __init__(
        self,
        position_store: PositionStore,
        order_log: OrderLog,
        trade_log: TradeLog,
        scope: PositionScope,
        policy: CheckpointPolicy | None = None,
    ) -> None:
        """Serve orders over these three stores, holding positions under ``scope``."""
        self._position_store = position_store
        self._order_log = order_log
        self._trade_log = trade_log
        self._scope = scope
        self._policy = policy or CheckpointPolicy()
        # One lock serializes every decision: the check "already holding?" and
        # the write that opens the position must not interleave with another
        # order's, or two BUYs could both pass.
        self._lock = threading.Lock()
        self._portfolio: Portfolio | None = None
        self._last_received_at: datetime | None = None
        # Group commit. One thread at a time syncs; the others wait on
        # _commit. A failed sync drops the entries it could not make durable
        # and starts a new epoch; _rolled_back keeps, per ended epoch, the
        # last sequence that survived and the error.
        self._commit = threading.Condition()
        self._syncing = False
        self._epoch = 0
        self._rolled_back: dict[int, tuple[int, StorageUnavailable]] = {}
        # Orders of event loops awaiting durability, settled by the committer thread.
        self._awaiting: list[tuple[int, int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._committer: threading.Thread | None = None
        # Trades of SELLs written to the log, waiting for it to be durable.
        self._pending_trades: deque[tuple[int, tuple[Trade, ...]]] = deque()
        # Checkpoints.
        self._snapshot_sequence = 0
        self._orders_since_snapshot = 0
        self._wake = threading.Event()
        self._stopping = False
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_lock = threading.Lock()

    @property
    def order_log(self) -> OrderLog:
        """The order log this store writes, for the read side."""
        return self._order_log

    @property
    def trade_log(self) -> TradeLog:
        """The trade log this store writes, for the read side."""
        return self._trade_log

    def recover(self) -> int:
        """Load the snapshot, replay the log after it, and start checkpointing; returns how many orders replayed."""
        with self._lock:
            stored = self._position_store.load()
            self._order_log.check(stored.applied_sequence, stored.log_offset)
            portfolio, replayed = replay_log_tail(stored, self._order_log, self._trade_log, self._scope)
            self._last_received_at = self._newest_received_at()
            self._portfolio = portfolio
            self._snapshot_sequence = stored.applied_sequence
            self._orders_since_snapshot = replayed
        if self._checkpointer is None:
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="checkpoint", daemon=True)
            self._checkpointer.start()
        if self._committer is None:
            self._committer = threading.Thread(target=self._commit_loop, name="group-commit", daemon=True)
            self._committer.start()
        if replayed:
            self._wake.set()
        return replayed

    @contextmanager
    def transaction(self) -> Iterator[EmbeddedOrderStore]:
        """Hold the store's lock for one order; on leaving, wait until what it wrote or read is durable."""
        self.begin()
        try:
            yield self
        except BaseException:
            self.end()
            raise
        self._wait_durable(*self.end())

    def begin(self) -> None:
        """Take the store's lock for one transaction (see transaction() and pending_transaction())."""
        self._lock.acquire()
        try:
            self._ready()
        except BaseException:
            self._lock.release()
            raise

    def end(self) -> DurabilityTicket:
        """Release the lock begin() took; returns what the transaction must wait for to be durable."""
        try:
            return self._order_log.last_sequence(), self._epoch
        finally:
            self._lock.release()

    def pending_transaction(self) -> PendingOrderTransaction:
        """A transaction that does not wait for the disk on leaving; await durable(its ticket) for that."""
        return PendingOrderTransaction(self)

    async def durable(self, ticket: DurabilityTicket) -> None:
        """Return once the entry of ``ticket`` is durable; the committer thread syncs for every order waiting."""
        sequence, epoch = ticket
        durable = self._order_log.durable_sequence() >= sequence
        if epoch == self._epoch and durable and not self._trades_waiting(sequence):
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._commit:
            self._awaiting.append((sequence, epoch, loop, future))
            self._commit.notify_all()
        await future

    def _trades_waiting(self, sequence: int) -> bool:
        return bool(self._pending_trades) and self._pending_trades[0][0] <= sequence

    def _commit_loop(self) -> None:
        """Make the awaited entries durable, a batch per sync: the orders that arrive meanwhile form the next."""
        while True:
            with self._commit:
                while not self._awaiting and not self._stopping:
                    self._commit.wait()
                if not self._awaiting:
                    return
                batch, self._awaiting = self._awaiting, []
            settled: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], StorageUnavailable | None]]]
            settled = defaultdict(list)
            for sequence, epoch, loop, future in batch:
                try:
                    # The first call syncs for the whole batch; the rest return at once.
                    self._wait_durable(sequence, epoch)
                    settled[loop].append((future, None))
                except StorageUnavailable as error:
                    settled[loop].append((future, error))
            for loop, outcomes in settled.items():
                try:
                    loop.call_soon_threadsafe(_settle, outcomes)
                except RuntimeError:
                    logger.warning("an event loop closed with %d orders awaiting their answers", len(outcomes))

    def recorded(self, idempotency_key: str) -> OrderLogEntry | None:
        """The entry recorded with ``idempotency_key``, if any."""
        return self._order_log.find_by_idempotency_key(idempotency_key)

    def held(self, users: Iterable[str], strategy: str, instrument: str) -> list[Position]:
        """The open positions an order in ``strategy`` for ``instrument`` could meet for these users."""
        portfolio = self._ready()
        return [p for user in users if (p := portfolio.held(user, strategy, instrument)) is not None]

    def last_received_at(self) -> datetime | None:
        """When the newest logged order was received."""
        return self._last_received_at

    def record(self, decision: OrderDecision, change: PositionChange, idempotency_key: str | None) -> OrderLogEntry:
        """Write the entry and apply it in memory; durable when the transaction exits."""
        portfolio = self._ready()
        entry = OrderLogEntry(self._order_log.last_sequence() + 1, decision, idempotency_key)
        self._order_log.write(entry)
        self._last_received_at = decision.received_at
        # The whole portfolio makes the same change the caller's partial one
        # did; applying it here keeps this store's view complete.
        applied = portfolio.apply(decision)
        if applied.trades:
            self._pending_trades.append((entry.sequence, applied.trades))
        self._orders_since_snapshot += 1
        if self._orders_since_snapshot >= self._policy.every_orders:
            self._wake.set()
        return entry

    def _wait_durable(self, sequence: int, epoch: int) -> None:
        """Return once entry ``sequence`` is durable and its trades written, syncing for everyone if no one is."""
        with self._commit:
            while True:
                if epoch != self._epoch:
                    self._raise_if_dropped(sequence, epoch)
                    return
                if self._order_log.durable_sequence() >= sequence and not self._trades_waiting(sequence):
                    return
                if not self._syncing:
                    break
                self._commit.wait()
            self._syncing = True
        try:
            # Covers every entry written so far, ours included.
            self._order_log.sync()
            self._write_durable_trades()
        except StorageUnavailable as error:
            self._roll_back(error)
        finally:
            with self._commit:
                self._syncing = False
                self._commit.notify_all()
                if epoch != self._epoch:
                    self._raise_if_dropped(sequence, epoch)

    def _raise_if_dropped(self, sequence: int, epoch: int) -> None:
        survived, error = self._rolled_back[epoch]
        if sequence > survived:
            raise StorageUnavailable(str(error))

    def _write_durable_trades(self) -> None:
        durable = self._order_log.durable_sequence()
        while self._pending_trades and self._pending_trades[0][0] <= durable:
            sequence, trades = self._pending_trades[0]
            try:
                self._trade_log.write(trades, sequence)
            except StorageUnavailable as error:
                # The order stands (it is in the log); its trades stay queued,
                # in order, and are written on a later sync or at start-up.
                logger.error("trades of order #%d could not be written yet (%s); they stay queued", sequence, error)
                return
            self._pending_trades.popleft()

    def _roll_back(self, error: StorageUnavailable) -> None:
        """Drop every entry the failed sync could not vouch for, and rebuild the portfolio without them."""
        with self._lock:
            survived = self._order_log.durable_sequence()
            with self._commit:
                self._rolled_back[self._epoch] = (survived, error)
                self._epoch += 1
            self._order_log.roll_back(error)
            while self._pending_trades and self._pending_trades[-1][0] > survived:
                self._pending_trades.pop()
            logger.error("the order log could not be synced (%s); orders after #%d were dropped", error, survived)
            try:
                stored = self._position_store.load()
                portfolio, _ = replay_log_tail(stored, self._order_log, self._trade_log, self._scope)
            except StorageUnavailable as rebuild_error:
                logger.critical("cannot rebuild positions after a failed sync (%s); restart the service", rebuild_error)
                self._portfolio = None
                return
            # The replay wrote the trades the trade log lacked, queued ones included.
            while self._pending_trades and self._pending_trades[0][0] <= self._trade_log.last_sequence():
                self._pending_trades.popleft()
            self._portfolio = portfolio
            self._last_received_at = self._newest_received_at()

    def _newest_received_at(self) -> datetime | None:
        newest = next(self._order_log.newest_first(), None)
        return newest[1].decision.received_at if newest else None

    def positions(
        self, user: str | None = None, strategy: str | None = None, instrument: str | None = None
    ) -> list[Position]:
        """The open positions matching every filter given, in the order they were opened; all durable."""
        with self._lock:
            found = [
                p
                for p in self._ready()
                if (user is None or p.user == user)
                and (strategy is None or p.strategy == strategy)
                and (instrument is None or p.instrument == instrument)
            ]
            sequence, epoch = self._order_log.last_sequence(), self._epoch
        self._wait_durable(sequence, epoch)
        return found

    def state(self) -> StoreState:
        """The durable log's length, the open positions, and whether the log can take appends."""
        # No lock: each figure is one attribute read, and a health check or a
        # metrics update must not queue behind orders.
        portfolio = self._portfolio
        held = len(portfolio) if portfolio is not None else 0
        return StoreState(self._order_log.durable_sequence(), held, self._order_log.reachable())

    def checkpoint(self) -> bool:
        """Snapshot the open positions and index the log up to the newest durable order; False if nothing new."""
        with self._checkpoint_lock:
            with self._lock:
                if self._portfolio is None or self._order_log.last_sequence() == self._snapshot_sequence:
                    return False
                positions = tuple(self._portfolio)
                sequence, offset, epoch = self._order_log.last_sequence(), self._order_log.end_offset(), self._epoch
                self._orders_since_snapshot = 0
            self._wait_durable(sequence, epoch)
            if self._pending_trades and self._pending_trades[0][0] <= sequence:
                raise StorageUnavailable(f"trades up to order #{sequence} are not written yet")
            # Trades, then the index, then positions: a snapshot promises that
            # everything up to its sequence is on disk, so a replay never
            # starts past a SELL whose trades or index rows are missing.
            self._trade_log.sync()
            self._order_log.index_through(sequence)
            self._position_store.save(StoredPositions(positions, sequence, offset))
            self._snapshot_sequence = sequence
            return True

    def _checkpoint_loop(self) -> None:
        while not self._stopping:
            self._wake.wait(self._policy.every_seconds)
            self._wake.clear()
            if self._stopping:
                return
            started = time.perf_counter()
            try:
                if self.checkpoint():
                    logger.debug("checkpoint at #%d in %.3fs", self._snapshot_sequence, time.perf_counter() - started)
            except StorageUnavailable as error:
                logger.error("checkpoint failed (%s); orders go on, and the next checkpoint tries again", error)
            except Exception:
                logger.exception("checkpoint failed; orders go on, and the next checkpoint tries again")

    def close(self) -> None:
        """Answer the orders still awaiting the disk, stop checkpointing after a last checkpoint."""
        with self._commit:
            self._stopping = True
            self._commit.notify_all()
        self._wake.set()
        if self._committer is not None:
            self._committer.join()
            self._committer = None
        if self._checkpointer is not None:
            self._checkpointer.join()
            self._checkpointer = None
        try:
            self.checkpoint()
        except (StorageUnavailable, ServiceNotStarted) as error:
            logger.error("last checkpoint failed (%s); the next start replays the log after the previous one", error)

    def _ready(self) -> Portfolio:
        if self._portfolio is None:
            raise ServiceNotStarted("the order store has not been recovered")
        return self._portfolio


def _settle(outcomes: list[tuple[asyncio.Future[None], StorageUnavailable | None]]) -> None:
    for future, error in outcomes:
        if future.done():
            continue  # the request was cancelled (its client went away)
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class PendingOrderTransaction:
    """A transaction of an EmbeddedOrderStore whose block exits without waiting for the disk."""

    def __init__(self, store: EmbeddedOrderStore) -> None:
        """Prepare a transaction on ``store``; the lock is taken on entering."""
        self._store = store
        self.ticket: DurabilityTicket = (0, 0)

    def __enter__(self) -> EmbeddedOrderStore:
        """Take the store's lock."""
        self._store.begin()
        return self._store

    def __exit__(self, *exc_info: object) -> None:
        """Note what to wait for and release the lock."""
        self.ticket = self._store.end()
