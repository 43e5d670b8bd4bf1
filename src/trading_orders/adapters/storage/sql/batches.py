"""Orders of one process share a database transaction: entered one at a time, committed together.

An order joins the open batch (the database transaction its process has
open) in its turn (writer.py): it takes the locks that keep other processes
off what it can meet, reads its positions, and is decided and applied on the
event loop. Its rows are kept in the batch until the batch commits: the
sequence of every order is assigned then, under the database's sequence
lock, so the log grows only by whole committed batches in sequence order and
a reader paging after sequence N never finds an order below N appear later.
One COMMIT (one fsync) answers every order of the batch; the orders that
arrive while it runs form the next.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from trading_orders.adapters.storage.sql.schema import Sql, holding_key, logged_entry, position_of
from trading_orders.application.errors import DamagedLogEntry, StorageUnavailable
from trading_orders.domain.controls import ControlChange, ControlLogEntry, Controls, ControlScope, LogEntry, RateBucket
from trading_orders.domain.model import AppliedDecision, OrderLogEntry, Position, PositionScope, Trade
from trading_orders.domain.portfolio import Portfolio
from trading_orders.json_records import entry_to_dict, format_time, log_entry_to_dict, parse_time

# The connection of a database's driver, that a batch's transaction runs on.
Connection = TypeVar("Connection")


class BatchConnection(ABC, Generic[Connection]):
    """One database transaction that the orders of one batch share, ended once; every call blocks.

    It ends the same way on every database: COMMIT, rolled back when COMMIT
    fails, and the connection handed back to its store either way. Each
    database says how to send them, which errors its driver raises, and
    whether the answer to COMMIT can be lost with the connection.
    """

    # The driver's errors: COMMIT failing with one of them rolls the batch back and answers 503.
    database_error: ClassVar[type[Exception]]

    def __init__(self, connection: Connection, sql: Sql, where: str) -> None:
        """The transaction on ``connection``, run through ``sql``; ``where`` names the database in messages."""
        self._connection: Connection | None = connection
        self.sql = sql
        self._where = where

    @property
    def where(self) -> str:
        """The database, as messages name it."""
        return self._where

    @abstractmethod
    def take_locks(self, names: Sequence[str], deadline: float) -> None:
        """Wait until ``deadline`` (monotonic) for the locks ``names``, held until the transaction ends.

        Raises StoreBusy when another transaction still holds one at the deadline.
        """

    @abstractmethod
    def try_locks(self, names: Sequence[str]) -> set[str]:
        """Take those of the locks ``names`` that no other transaction holds, without waiting; returns them."""

    @abstractmethod
    def take_sequence_lock(self) -> None:
        """Wait for the right to assign the next sequences, held until the transaction ends."""

    @abstractmethod
    def take_controls_lock(self, deadline: float, *, exclusive: bool, then: str) -> list[tuple[Any, ...]]:
        """Take the controls lock by ``deadline`` (monotonic), then answer the query ``then``, in one round trip.

        A batch of orders takes it shared, a control change exclusive, each
        as its transaction's first statement and until it ends: a control
        change waits for the batches in flight and holds new ones off until
        it commits. ``then`` runs after the lock is granted, so it sees every
        change committed before. Raises StoreBusy when another transaction
        still holds the lock at the deadline.
        """

    def commit(self, witness: str) -> None:
        """Commit and give the connection back; raises StorageUnavailable (rolled back) when it cannot.

        ``witness`` is the id of an order of the transaction: where the answer
        to COMMIT can be lost with the connection, the database is asked
        whether that order is recorded, and all of the transaction with it.
        """
        connection = self._live()
        try:
            self._send_commit(connection)
        except self.database_error as error:
            lost = self._answer_lost(connection)
            self.roll_back()
            if not lost:
                raise StorageUnavailable(f"the order was not recorded in {self._where}: {error}") from error
            # The server may have committed before the connection went: the
            # answer depends on what it did, not on what the client heard.
            if self._recorded_after_lost_commit(witness, error):
                return
            raise StorageUnavailable(
                f"the order was not recorded in {self._where}: the connection was lost during COMMIT "
                f"({error}) and the database has not recorded it"
            ) from error
        self._end()

    def roll_back(self) -> None:
        """Roll back and give the connection back; does nothing once the transaction has ended."""
        connection = self._connection
        if connection is None:
            return
        try:
            self._send_roll_back(connection)
        finally:
            self._end()

    def _live(self) -> Connection:
        """The transaction's connection; StorageUnavailable once it has ended."""
        if self._connection is None:
            raise StorageUnavailable(f"the batch on {self._where} has already ended")
        return self._connection

    def _end(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._give_back(connection)

    @abstractmethod
    def _send_commit(self, connection: Connection) -> None:
        """Send COMMIT; raises ``database_error`` unless the database answered that it committed."""

    @abstractmethod
    def _send_roll_back(self, connection: Connection) -> None:
        """Send ROLLBACK where the transaction is still open on ``connection``."""

    @abstractmethod
    def _give_back(self, connection: Connection) -> None:
        """Hand ``connection`` back to its store, with whatever else the transaction held."""

    def _answer_lost(self, connection: Connection) -> bool:
        """Whether the answer to a failed COMMIT may have been lost with ``connection``: never, by default."""
        return False

    def _recorded_after_lost_commit(self, witness: str, error: Exception) -> bool:
        """Whether the transaction of order ``witness`` committed although the answer to COMMIT was lost.

        Asked only where _answer_lost() can say yes.
        """
        return False


def order_locks(scope: PositionScope, strategy: str, instrument: str, idempotency_key: str | None) -> list[str]:
    """The locks an order takes: what its positions are keyed by under ``scope``, and its idempotency key."""
    # Scope user nets a user's instrument across strategies, so a SELL of any
    # strategy meets it: the lock is the instrument's alone.
    meets = ["position", instrument] if scope is PositionScope.USER else ["position", strategy, instrument]
    names = [json.dumps(meets)]
    if idempotency_key is not None:
        names.append(json.dumps(["idempotency_key", idempotency_key]))
    return names


def user_lock(user: str) -> str:
    """The lock of ``user``'s open positions as a whole, which an order for a user with a position limit takes."""
    return json.dumps(["user", user])


def rate_lock(strategy: str) -> str:
    """The lock of ``strategy``'s rate-limit bucket, which an order of a rate-limited strategy takes."""
    return json.dumps(["rate", strategy])


@dataclasses.dataclass(frozen=True, eq=False)
class OrderNeeds:
    """What one order takes and reads in its batch: its locks, its idempotency key, its users' holding keys.

    ``strategy`` and ``users`` say which controls concern it: a batch whose
    controls limit one of the users, or the strategy's rate, takes that
    user's or that bucket's lock too (Batch.locks_of).
    """

    locks: tuple[str, ...]
    key: str | None
    holdings: tuple[str, ...]
    strategy: str = ""
    users: tuple[str, ...] = ()


def order_needs(
    scope: PositionScope, strategy: str, instrument: str, users: Sequence[str], idempotency_key: str | None
) -> OrderNeeds:
    """The needs of an order of ``strategy`` on ``instrument`` for ``users``."""
    return OrderNeeds(
        tuple(order_locks(scope, strategy, instrument, idempotency_key)),
        idempotency_key,
        tuple(holding_key(scope, user, strategy, instrument) for user in users),
        strategy,
        tuple(users),
    )


class Batch:
    """The orders sharing one database transaction, in the order they were applied, not yet committed.

    It also keeps what it has read: the positions of the holding keys and the
    answers of the idempotency keys whose locks it holds. No other transaction
    can change them while it holds those locks, so they stay true until it ends.
    """

    def __init__(self, connection: BatchConnection[Any], last_received_at: datetime | None, controls: Controls) -> None:
        """A batch on ``connection``, after an order log whose newest order was received at ``last_received_at``.

        ``controls`` are those in force for the whole batch: its transaction
        began after the last control change committed, and no other can
        commit before it ends (the store's controls lock).
        """
        self.connection = connection
        self.last_received_at = last_received_at
        self.controls = controls
        self.locks: set[str] = set()
        self.keys: set[str] = set()
        self.pending: list[tuple[AppliedDecision, str | None]] = []
        # What the batch did to each holding key it touched: the position
        # open after it (with the index of the order that opened it) or None.
        self.touched: dict[str, tuple[int, Position] | None] = {}
        # What the database held when read: the position of a holding key (or
        # None), the entry recorded with an idempotency key (or None, or why
        # its row cannot be read: that is the answer of its retry alone).
        self.seen: dict[str, Position | None] = {}
        self.recorded: dict[str, LogEntry | DamagedLogEntry | None] = {}
        # Under controls with position limits: the users whose open positions
        # were counted, and the counts of their scopes (the user, each of the
        # user's strategies), kept up to date as orders join.
        self.counted: set[str] = set()
        self.counts: collections.Counter[ControlScope] = collections.Counter()
        # Under controls with rate limits: each rate-limited strategy's bucket
        # as read (None: full), and then as the batch's orders left it.
        self.buckets: dict[str, RateBucket | None] = {}
        self.spent: set[str] = set()
        self.done: asyncio.Future[list[OrderLogEntry]] = asyncio.get_running_loop().create_future()
        # Read, so an error no order is left to hear is not reported as lost.
        self.done.add_done_callback(lambda done: done.cancelled() or done.exception())

    def add(self, scope: PositionScope, applied: AppliedDecision, key: str | None) -> int:
        """Keep ``applied`` for the commit; returns its place in the batch."""
        index = len(self.pending)
        self.pending.append((applied, key))
        for position in applied.change.closed:
            self.touched[_key_of(scope, position)] = None
            self._count(position, -1)
        for position in applied.change.opened:
            self.touched[_key_of(scope, position)] = (index, position)
            self._count(position, 1)
        if applied.rate_bucket is not None:
            strategy = applied.decision.order.strategy
            self.buckets[strategy] = applied.rate_bucket
            self.spent.add(strategy)
        if key is not None:
            self.keys.add(key)
        self.last_received_at = applied.decision.received_at
        return index

    def _count(self, position: Position, step: int) -> None:
        if position.user in self.counted:
            self.counts[ControlScope(user=position.user)] += step
            self.counts[ControlScope(position.user, position.strategy)] += step

    def locks_of(self, needs: OrderNeeds) -> tuple[str, ...]:
        """The locks the order of ``needs`` takes under the batch's controls: own, limited users', bucket's."""
        controls = self.controls
        if controls.is_empty:
            return needs.locks
        extra = [user_lock(user) for user in needs.users if controls.limits_user(user)]
        if controls.rate_limit(needs.strategy) is not None:
            extra.append(rate_lock(needs.strategy))
        return (*needs.locks, *extra) if extra else needs.locks

    def _limited(self, needs: OrderNeeds) -> list[str]:
        return [user for user in needs.users if self.controls.limits_user(user)]

    def _rated(self, needs: OrderNeeds) -> bool:
        return self.controls.rate_limit(needs.strategy) is not None

    def covers(self, needs: OrderNeeds) -> bool:
        """Whether the batch holds the locks of ``needs`` and has read all it needs, so it can be served at once."""
        return (
            all(name in self.locks for name in self.locks_of(needs))
            and (needs.key is None or needs.key in self.recorded)
            and all(key in self.touched or key in self.seen for key in needs.holdings)
            and (
                self.controls.is_empty
                or (
                    all(user in self.counted for user in self._limited(needs))
                    and (not self._rated(needs) or needs.strategy in self.buckets)
                )
            )
        )

    def limits_for(self, needs: OrderNeeds) -> tuple[dict[ControlScope, int], RateBucket | None]:
        """The open positions of each limited scope of the users of ``needs``, and its strategy's bucket, as of now."""
        controls = self.controls
        if controls.is_empty:
            return {}, None
        counts = {
            scope: self.counts[scope] for user in needs.users for scope in controls.count_scopes(user, needs.strategy)
        }
        return counts, self.buckets.get(needs.strategy)

    def read_for(self, needs: OrderNeeds) -> tuple[LogEntry | DamagedLogEntry | None, list[Position]]:
        """The recorded answer of the key of ``needs`` (or why it is unreadable) and its users' open positions."""
        held = []
        for key in needs.holdings:
            if key in self.touched:
                change = self.touched[key]
                position = change[1] if change is not None else None
            else:
                position = self.seen[key]
            if position is not None:
                held.append(position)
        return (self.recorded[needs.key] if needs.key is not None else None), held

    def gather(self, own: OrderNeeds, others: Sequence[OrderNeeds], *, wait_until: float | None) -> bool:
        """Take the locks of ``own`` (waiting for them until ``wait_until``, if given) and read all it needs; blocks.

        With them, and in the same round trips, it takes what it can of the
        locks of ``others`` (orders waiting for their turn, never waiting for
        them) and reads for those it has all the locks of, so that each of
        them is served without a round trip of its own. False, with nothing
        read, if another transaction holds one of the locks of ``own``.
        Called in an order's turn (writer.BatchWriter.turn), as every change of a batch is.
        """
        own_locks = self.locks_of(own)
        missing = [name for name in own_locks if name not in self.locks]
        if wait_until is not None and missing:
            self.connection.take_locks(missing, wait_until)
            self.locks.update(missing)
        wanted = list(
            dict.fromkeys(name for needs in (own, *others) for name in self.locks_of(needs) if name not in self.locks)
        )
        if wanted:
            self.locks.update(self.connection.try_locks(wanted))
        if any(name not in self.locks for name in own_locks):
            return False
        # A separate statement after the locks: under READ COMMITTED a
        # statement sees what committed before it began, so every commit of a
        # transaction that held one of these locks before this one is seen.
        ready = [needs for needs in (own, *others) if all(name in self.locks for name in self.locks_of(needs))]
        self._read_recorded(
            dict.fromkeys(
                needs.key
                for needs in ready
                if needs.key is not None and needs.key not in self.recorded and needs.key not in self.keys
            )
        )
        self._read_positions(
            dict.fromkeys(
                key for needs in ready for key in needs.holdings if key not in self.touched and key not in self.seen
            )
        )
        if not self.controls.is_empty:
            self._read_counts(
                dict.fromkeys(user for needs in ready for user in self._limited(needs) if user not in self.counted)
            )
            self._read_buckets(
                dict.fromkeys(
                    needs.strategy for needs in ready if self._rated(needs) and needs.strategy not in self.buckets
                )
            )
        return True

    def _read_counts(self, users: Collection[str]) -> None:
        # Read under the users' locks (and before any order of the batch
        # changed their positions: each such order needed this read first).
        for chunk in _chunks(list(users)):
            self.counted.update(chunk)
            rows = self.connection.sql.rows(
                "SELECT username, strategy, COUNT(*) FROM positions "
                f"WHERE username IN ({', '.join('?' * len(chunk))}) GROUP BY username, strategy",
                chunk,
            )
            for user, strategy, count in rows:
                self.counts[ControlScope(user=user)] += count
                self.counts[ControlScope(user, strategy)] += count

    def _read_buckets(self, strategies: Collection[str]) -> None:
        for chunk in _chunks(list(strategies)):
            self.buckets.update(dict.fromkeys(chunk))
            rows = self.connection.sql.rows(
                f"SELECT strategy, tokens, at FROM rate_buckets WHERE strategy IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            self.buckets.update((strategy, RateBucket(float(tokens), parse_time(at))) for strategy, tokens, at in rows)

    def _read_recorded(self, keys: Collection[str]) -> None:
        for chunk in _chunks(list(keys)):
            self.recorded.update(dict.fromkeys(chunk))
            rows = self.connection.sql.rows(
                "SELECT idempotency_key, sequence, entry FROM orders "
                f"WHERE idempotency_key IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            for key, sequence, entry in rows:
                try:
                    self.recorded[key] = logged_entry(sequence, entry, self.connection.where)
                except DamagedLogEntry as damaged:
                    # Read for the whole batch, it is the answer of the one order whose key names it.
                    self.recorded[key] = damaged

    def _read_positions(self, keys: Collection[str]) -> None:
        for chunk in _chunks(list(keys)):
            self.seen.update(dict.fromkeys(chunk))
            rows = self.connection.sql.rows(
                "SELECT holding_key, username, strategy, instrument, order_id, opened_at FROM positions "
                f"WHERE holding_key IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            self.seen.update((row[0], position_of(row[1:])) for row in rows)

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
            self._write_buckets(connection.sql)
        except BaseException:
            connection.roll_back()
            raise
        connection.commit(entries[0].decision.order_id)
        return entries

    def _write_buckets(self, sql: Sql) -> None:
        sql.run_many(
            "INSERT INTO rate_buckets (strategy, tokens, at) VALUES (?, ?, ?) "
            "ON CONFLICT (strategy) DO UPDATE SET tokens = excluded.tokens, at = excluded.at",
            [
                (strategy, bucket.tokens, format_time(bucket.at))
                for strategy in sorted(self.spent)
                if (bucket := self.buckets[strategy]) is not None
            ],
        )

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


def _chunks(values: list[str], size: int = 500) -> Iterator[list[str]]:
    # Bounded statements: far below either database's limit on parameters.
    for start in range(0, len(values), size):
        yield values[start : start + size]


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


def record_control(
    connection: BatchConnection[Any],
    scope: PositionScope,
    change: ControlChange,
    key: str | None,
    positions: list[Position],
) -> ControlLogEntry:
    """Record ``change`` as the log's next entry, close what a flatten closes with its trades, and commit; blocks.

    ``positions`` are the open positions of the change's scope, as its
    transaction read them. The transaction holds the controls lock
    exclusively, so no batch of orders is in flight beside it.
    """
    try:
        connection.take_sequence_lock()
        rows = connection.sql.rows("SELECT sequence, received_at FROM orders ORDER BY sequence DESC LIMIT 1")
        last, floor = (rows[0][0], parse_time(rows[0][1])) if rows else (0, None)
        if floor is not None and change.at < floor:
            # Times only grow along the log, as in _sequenced.
            change = dataclasses.replace(change, at=floor)
        entry = ControlLogEntry(last + 1, change, key)
        # Checks that a flatten closes open positions only, and makes its trades.
        closing = Portfolio(scope, positions).apply_control(change)
        sql = connection.sql
        sql.run(
            "INSERT INTO orders (sequence, order_id, received_at, idempotency_key, entry) VALUES (?, ?, ?, ?, ?)",
            (
                entry.sequence,
                change.change_id,
                format_time(change.at),
                key,
                json.dumps(log_entry_to_dict(entry), separators=(",", ":")),
            ),
        )
        sql.run("INSERT INTO control_changes (sequence) VALUES (?)", (entry.sequence,))
        _write(sql, scope, [], [(entry.sequence, trade) for trade in closing.trades], [], [])
        sql.run_many(
            "DELETE FROM positions WHERE holding_key = ?", [(_key_of(scope, position),) for position in closing.closed]
        )
    except BaseException:
        connection.roll_back()
        raise
    connection.commit(change.change_id)
    return entry


def _key_of(scope: PositionScope, position: Position) -> str:
    return holding_key(scope, position.user, position.strategy, position.instrument)
