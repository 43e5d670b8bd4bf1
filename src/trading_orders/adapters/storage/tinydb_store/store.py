"""The TinyDB store: an order log, a trade log and TinyDB position snapshots, served by one process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from datetime import datetime
from types import TracebackType
from typing import TypeVar

from trading_orders.adapters.storage.tinydb_store.backoff import Backoff
from trading_orders.adapters.storage.tinydb_store.checkpoints import Checkpointer, CheckpointPolicy
from trading_orders.adapters.storage.tinydb_store.group_commit import GroupCommit, Ticket
from trading_orders.adapters.storage.tinydb_store.parts import OrderLog, PositionSnapshots, StoredPositions, TradeLog
from trading_orders.adapters.storage.tinydb_store.replay import replay_log_tail
from trading_orders.adapters.storage.tinydb_store.trade_queue import TradeQueue
from trading_orders.application.errors import ServiceNotStarted, StorageUnavailable
from trading_orders.application.ports import StoreState
from trading_orders.domain.controls import (
    NO_CONTROLS,
    ControlChange,
    ControlLogEntry,
    Controls,
    ControlScope,
    LogEntry,
    RateBucket,
    entry_time,
)
from trading_orders.domain.model import OrderLogEntry, Position, PositionScope
from trading_orders.domain.portfolio import Portfolio, PortfolioSlice

logger = logging.getLogger(__name__)


class TinyDBOrderStore:
    """Orders decided one at a time in memory, made durable in groups, over files this process alone owns.

    The order log is the source of truth and the commit point. An order's
    transaction holds the store's lock from handing out its slice of the
    portfolio until its entry is written to the log, which takes
    microseconds; the fsync happens after the lock is released, and every
    order written meanwhile shares the next one (group commit). Each commit
    returns only once its own entry is durable, so no answer runs ahead of
    the disk; decisions stay serialized and in log order.

    Trades are written once their SELL is durable. The positions are written
    as a snapshot stamped with the log sequence it contains, every so many
    orders or seconds, by a background thread: the cost of an order does not
    grow with the number of open positions. recover() loads the snapshot and
    replays the log after it.

    The store takes an order only while it can answer it: positions loaded,
    the committer and checkpoint threads serving, the log's file reachable;
    state() says so for /health. A failed fsync whose rebuild fails too
    leaves no positions: a healer thread retries the rebuild, waiting as
    ``restarts`` says, until it succeeds. A thread that fails unexpectedly
    is restarted after the same kind of pause (see GroupCommit and
    Checkpointer); meanwhile orders are answered 503.
    """

    def __init__(
        self,
        snapshots: PositionSnapshots,
        order_log: OrderLog,
        trade_log: TradeLog,
        scope: PositionScope,
        policy: CheckpointPolicy | None = None,
        restarts: Backoff | None = None,
    ) -> None:
        """Serve orders over these three parts, holding positions under ``scope``; retry failures per ``restarts``."""
        self._snapshots = snapshots
        self._order_log = order_log
        self._trade_log = trade_log
        self._scope = scope
        # One lock serializes every decision: the check "already holding?" and
        # the write that opens the position must not interleave with another
        # order's, or two BUYs could both pass.
        self._lock = threading.Lock()
        self._portfolio: Portfolio | None = None
        # The operator controls in force after the newest entry written, and
        # each rate-limited strategy's bucket: one process owns these files,
        # so a bucket lives in memory (a restart starts it full).
        self._controls = NO_CONTROLS
        self._rate_buckets: dict[str, RateBucket] = {}
        self._last_received_at: datetime | None = None
        self._snapshot_sequence = 0
        self._trades = TradeQueue()
        self._restarts = restarts or Backoff()
        self._commits = GroupCommit(self._flush, self._is_durable, self._roll_back, self._restarts)
        self._healer: threading.Thread | None = None
        self._heal_error: StorageUnavailable | None = None
        self._closing = threading.Event()
        self._checkpoints = Checkpointer(policy or CheckpointPolicy(), self.checkpoint, self._restarts)

    @property
    def order_log(self) -> OrderLog:
        """The order log this store writes, for the read side."""
        return self._order_log

    @property
    def trade_log(self) -> TradeLog:
        """The trade log this store writes, for the read side."""
        return self._trade_log

    def recover(self) -> int:
        """Load the snapshot, replay the log after it, and start committing and checkpointing; returns the replayed."""
        with self._lock:
            stored = self._snapshots.load()
            self._order_log.check(stored.applied_sequence, stored.log_offset)
            portfolio, controls, replayed = replay_log_tail(
                stored, self._order_log, self._trade_log, self._scope, whole_log=self._trades_lost(stored)
            )
            self._last_received_at = self._newest_received_at()
            self._portfolio, self._controls = portfolio, controls
            self._snapshot_sequence = stored.applied_sequence
            if stored.trades_through is None and stored.applied_sequence:
                # A snapshot without the trade log's mark is replaced at the
                # first checkpoint, new orders or not: the next start trusts the mark.
                self._snapshot_sequence = -1
            self._checkpoints.restart_count()
            self._checkpoints.count(replayed)
        self._checkpoints.start()
        self._commits.start()
        if replayed:
            # A snapshot now spares the next start the same replay.
            self._checkpoints.soon()
        return replayed

    def _trades_lost(self, stored: StoredPositions) -> bool:
        """True when the trade log lacks trades of SELLs that ``stored`` covers (it was damaged and set aside)."""
        held = self._trade_log.last_sequence()
        if stored.trades_through is None:
            # A snapshot older than the mark cannot say; an empty trade log
            # beside applied orders may have lost all of them, and replaying
            # the whole log once writes any that are missing.
            return held == 0 and stored.applied_sequence > 0
        return held < stored.trades_through

    def transaction(
        self, strategy: str, instrument: str, users: Collection[str], idempotency_key: str | None = None
    ) -> TinyDBOrderTransaction:
        """One order's unit of work over the positions it can meet (see TinyDBOrderTransaction)."""
        return TinyDBOrderTransaction(self, strategy, instrument, users, idempotency_key)

    def control_transaction(self, idempotency_key: str | None = None) -> TinyDBControlTransaction:
        """One control change's unit of work: it holds the store's lock, so no order runs beside it."""
        return TinyDBControlTransaction(self, idempotency_key)

    def controls(self) -> Controls:
        """The states and limits in force after the newest durable entry."""
        with self._lock:
            self._ready()
            controls = self._controls
            ticket = self._order_log.last_sequence(), self._commits.epoch
        # What was read may include a change still on its way to the disk.
        self._commits.wait(ticket)
        return controls

    def _begin_control(self, key: str | None) -> tuple[LogEntry | None, Controls, datetime | None]:
        """Take the lock for a control change; it stays taken until _record_control or _release."""
        self._lock.acquire()
        try:
            self._ready()
            recorded = self._order_log.find_by_idempotency_key(key) if key is not None else None
            return recorded, self._controls, self._last_received_at
        except BaseException:
            self._lock.release()
            raise

    def _positions_in(self, scope: ControlScope) -> list[Position]:
        """The open positions in ``scope``; the caller holds the lock (a control transaction)."""
        return self._ready().in_scope(scope)

    def _record_control(self, change: ControlChange, key: str | None) -> tuple[ControlLogEntry, Ticket]:
        """Write ``change`` to the log, close what a flatten closes, and apply it; releases the lock."""
        try:
            full = self._ready()
            entry = ControlLogEntry(self._order_log.last_sequence() + 1, change, key)
            controls = self._controls.with_entry(entry)
            # Written first, as an order is: a write that fails changes nothing.
            self._order_log.write(entry)
            closed = full.apply_control(change)
            self._controls = controls
            self._last_received_at = change.at
            if closed.trades:
                self._trades.add(entry.sequence, closed.trades)
            self._checkpoints.count()
            return entry, (entry.sequence, self._commits.epoch)
        finally:
            self._lock.release()

    def _begin(self, strategy: str, instrument: str, users: Collection[str], key: str | None) -> _Handout:
        """Take the lock and hand out what an order needs; the lock stays taken until _record or _release."""
        self._lock.acquire()
        try:
            portfolio = self._ready()
            recorded = self._order_log.find_by_idempotency_key(key) if key is not None else None
            controls = self._controls
            bucket = self._rate_buckets.get(strategy)
            return recorded, portfolio.slice(users, strategy, instrument, controls, bucket), self._last_received_at
        except BaseException:
            self._lock.release()
            raise

    def _record(self, portfolio: PortfolioSlice, idempotency_key: str | None) -> tuple[OrderLogEntry, Ticket]:
        """Write what was applied to ``portfolio`` and merge it into the store's; releases the lock."""
        try:
            (applied,) = portfolio.take_unsaved()
            full = self._ready()
            entry = OrderLogEntry(self._order_log.last_sequence() + 1, applied.decision, idempotency_key)
            # Written first: a write that fails leaves the positions as they were.
            self._order_log.write(entry)
            full.merge(applied.change)
            self._last_received_at = applied.decision.received_at
            if applied.rate_bucket is not None:
                self._rate_buckets[applied.decision.order.strategy] = applied.rate_bucket
            if applied.change.trades:
                self._trades.add(entry.sequence, applied.change.trades)
            self._checkpoints.count()
            return entry, (entry.sequence, self._commits.epoch)
        finally:
            self._lock.release()

    def _release(self) -> Ticket:
        """Release the lock _begin took without recording; returns what the transaction read, to wait for."""
        try:
            return self._order_log.last_sequence(), self._commits.epoch
        finally:
            self._lock.release()

    async def _durable(self, ticket: Ticket) -> None:
        await self._commits.durable(ticket)

    def _flush(self) -> None:
        self._order_log.sync()
        self._trades.write_through(self._trade_log, self._order_log.durable_sequence())

    def _is_durable(self, sequence: int) -> bool:
        return self._order_log.durable_sequence() >= sequence and not self._trades.waiting_through(sequence)

    def _roll_back(self, error: StorageUnavailable) -> None:
        """Drop every entry the failed flush could not vouch for, and rebuild the portfolio without them."""
        with self._lock:
            # First: a roll-back that fails half-way must leave a store that
            # refuses orders (and says so), never one that serves positions
            # holding entries the disk no longer has.
            self._portfolio = None
            self._heal_error = error
            survived = self._order_log.durable_sequence()
            self._commits.end_epoch(survived, error)
            logger.error("the order log could not be synced (%s); orders after #%d were dropped", error, survived)
            try:
                self._undo_and_rebuild(error)
            except Exception as rebuild_error:
                logger.critical("cannot rebuild positions after a failed sync (%s); retrying", rebuild_error)
                self._start_healing(error)

    def _undo_and_rebuild(self, error: StorageUnavailable) -> None:
        """Cut the logs back to the last durable entry and rebuild the portfolio; the caller holds the lock.

        Safe to repeat: no entry becomes durable while there is no portfolio,
        so each try cuts back to the same place.
        """
        survived = self._order_log.durable_sequence()
        self._order_log.roll_back(error)
        self._trades.drop_after(survived)
        self._rebuild()

    def _rebuild(self) -> None:
        """Rebuild the portfolio from the snapshot and the log; the caller holds the lock."""
        stored = self._snapshots.load()
        portfolio, controls, _ = replay_log_tail(stored, self._order_log, self._trade_log, self._scope)
        newest = self._newest_received_at()
        # The replay wrote the trades the trade log lacked, queued ones included.
        self._trades.drop_through(self._trade_log.last_sequence())
        # Last, once every read has succeeded: a portfolio set before a read
        # that fails would say the store serves while nothing heals it.
        self._portfolio, self._controls, self._last_received_at = portfolio, controls, newest

    def _start_healing(self, error: StorageUnavailable) -> None:
        self._heal_error = error
        if self._healer is None or not self._healer.is_alive():
            self._healer = threading.Thread(target=self._heal, name="rebuild-positions", daemon=True)
            self._healer.start()

    def _heal(self) -> None:
        """Retry the roll-back and rebuild, waiting longer each time, until the store serves orders or closes."""
        failures = 1
        while not self._closing.wait(self._restarts.pause(failures)):
            with self._lock:
                if self._portfolio is not None:
                    return
                try:
                    self._undo_and_rebuild(self._heal_error or StorageUnavailable("a failed rebuild"))
                except Exception as error:
                    # Any error, not only the disk's: a healer that dies leaves
                    # a store that refuses orders forever.
                    failures += 1
                    logger.error(
                        "positions still cannot be rebuilt (%s); next try in %.1fs",
                        error,
                        self._restarts.pause(failures),
                    )
                else:
                    logger.warning("positions rebuilt from the snapshot and the log; taking orders again")
                    return

    def _newest_received_at(self) -> datetime | None:
        newest = next(self._order_log.newest_first(), None)
        return entry_time(newest[1]) if newest else None

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
            ticket = self._order_log.last_sequence(), self._commits.epoch
        self._commits.wait(ticket)
        return found

    def state(self) -> StoreState:
        """The durable log's length, the open positions, and whether an order can be taken now."""
        # No lock: each figure is one attribute read, and a health check or a
        # metrics update must not queue behind orders.
        portfolio = self._portfolio
        held = len(portfolio) if portfolio is not None else 0
        takes_orders = (
            portfolio is not None
            and self._commits.running()
            and self._checkpoints.running()
            and self._order_log.reachable()
        )
        if not takes_orders:
            self._revive()
        return StoreState(self._order_log.durable_sequence(), held, takes_orders)

    def checkpoint(self) -> bool:
        """Snapshot the open positions and index the log up to the newest durable order; False if nothing new."""
        with self._lock:
            if self._portfolio is None or self._order_log.last_sequence() == self._snapshot_sequence:
                return False
            positions, controls = tuple(self._portfolio), self._controls
            sequence, offset = self._order_log.last_sequence(), self._order_log.end_offset()
            ticket = sequence, self._commits.epoch
            self._checkpoints.restart_count()
        self._commits.wait(ticket)
        if self._trades.waiting_through(sequence):
            raise StorageUnavailable(f"trades up to order #{sequence} are not written yet")
        # Trades, then the index, then positions: a snapshot promises that
        # everything up to its sequence is on disk, so a replay never starts
        # past a SELL whose trades or index rows are missing.
        trades_through = self._trade_log.sync()
        self._order_log.index_through(sequence)
        self._snapshots.save(StoredPositions(positions, sequence, offset, trades_through, controls))
        self._snapshot_sequence = sequence
        return True

    def close(self) -> None:
        """Answer the orders still awaiting the disk, stop checkpointing after a last checkpoint."""
        self._closing.set()
        self._commits.stop()
        self._checkpoints.stop()
        try:
            self.checkpoint()
        except (StorageUnavailable, ServiceNotStarted) as error:
            logger.error("last checkpoint failed (%s); the next start replays the log after the previous one", error)

    def _ready(self) -> Portfolio:
        """The portfolio, while the store can answer an order; else the 503 saying why not."""
        if self._portfolio is None:
            if self._heal_error is not None:
                self._revive()
                raise StorageUnavailable("the positions are being rebuilt after a disk failure; retry shortly")
            raise ServiceNotStarted("the order store has not been recovered")
        if not (self._commits.serving and self._checkpoints.serving):
            # An order taken now would wait on a thread that is recovering
            # from an unexpected error, or run past the last checkpoint's care.
            self._revive()
            raise StorageUnavailable("the order store is restarting a thread after an unexpected error; retry shortly")
        return self._portfolio

    def _revive(self) -> None:
        """Start again a thread that should be running and has ended (its own recovery failed): never wait forever."""
        if self._closing.is_set():
            return
        self._commits.revive()
        self._checkpoints.revive()
        healer = self._healer
        if self._portfolio is None and self._heal_error is not None and (healer is None or not healer.is_alive()):
            logger.critical("the rebuild thread had stopped; starting a new one")
            self._start_healing(self._heal_error)


# The entry a unit of work records: an order's, or a control change's.
Recorded = TypeVar("Recorded", OrderLogEntry, ControlLogEntry)
# What _begin hands out: the entry recorded with the key, the slice, the newest received time.
_Handout = tuple[LogEntry | None, PortfolioSlice, datetime | None]


class _HoldingTheStoreLock:
    """What a unit of work that holds the store's lock from entering to commit() shares: how it ends."""

    def __init__(self, store: TinyDBOrderStore, key: str | None) -> None:
        """Prepare a unit of work on ``store`` under idempotency key ``key``; nothing is taken until it is entered."""
        self._store = store
        self._key = key
        self._open = False

    async def _once_durable(self, recorded: tuple[Recorded, Ticket]) -> Recorded:
        """The entry just recorded (which released the lock), once it is durable."""
        entry, ticket = recorded
        await self._store._durable(ticket)
        return entry

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Without commit(): release the lock, and on a clean exit wait until what the block read is durable."""
        if not self._open:
            return
        self._open = False
        ticket = self._store._release()
        if kind is None:
            # A retry answered from the log must not run ahead of the entry it found.
            await self._store._durable(ticket)


class TinyDBOrderTransaction(_HoldingTheStoreLock):
    """One order's unit of work on a TinyDBOrderStore.

    Entering takes the store's lock and hands out a slice of the portfolio;
    commit() writes the entry, merges the slice's change, releases the lock
    and waits for the disk with every other order waiting. The lock is a
    thread lock held on the event loop: the block must not await anything
    before commit(), which takes microseconds.
    """

    def __init__(
        self, store: TinyDBOrderStore, strategy: str, instrument: str, users: Collection[str], key: str | None
    ) -> None:
        """Prepare a transaction on ``store``; nothing is taken until it is entered."""
        super().__init__(store, key)
        self._what = strategy, instrument, users
        # Handed out on entering.
        self.recorded: LogEntry | None
        self.portfolio: PortfolioSlice
        self.last_received_at: datetime | None

    async def __aenter__(self) -> TinyDBOrderTransaction:
        """Take the store's lock and hand out what the order needs."""
        self.recorded, self.portfolio, self.last_received_at = self._store._begin(*self._what, self._key)
        self._open = True
        return self

    async def commit(self) -> OrderLogEntry:
        """Record the decision applied to ``portfolio``; returns once its entry is durable."""
        # Closed first: a record that fails has released the lock itself.
        self._open = False
        return await self._once_durable(self._store._record(self.portfolio, self._key))


class TinyDBControlTransaction(_HoldingTheStoreLock):
    """One control change's unit of work on a TinyDBOrderStore.

    Entering takes the store's lock, which every order's transaction takes
    too: an order is decided either wholly before the change or wholly
    after it. commit() writes the change, releases the lock and waits for
    the disk, as an order's commit does.
    """

    def __init__(self, store: TinyDBOrderStore, key: str | None) -> None:
        """Prepare a transaction on ``store``; nothing is taken until it is entered."""
        super().__init__(store, key)
        # Handed out on entering.
        self.recorded: LogEntry | None
        self.controls: Controls
        self.last_received_at: datetime | None

    async def __aenter__(self) -> TinyDBControlTransaction:
        """Take the store's lock and hand out the controls in force."""
        self.recorded, self.controls, self.last_received_at = self._store._begin_control(self._key)
        self._open = True
        return self

    async def positions_in(self, scope: ControlScope) -> list[Position]:
        """The open positions in ``scope``, as a flatten would close them."""
        return self._store._positions_in(scope)

    async def commit(self, change: ControlChange) -> ControlLogEntry:
        """Record ``change``; returns once its entry is durable."""
        # Closed first: a record that fails has released the lock itself.
        self._open = False
        return await self._once_durable(self._store._record_control(change, self._key))
