"""The SQLite order store: the orders of a process commit in batches, safe for several processes on one host."""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from trading_orders.adapters.storage.sql.batches import BatchConnection
from trading_orders.adapters.storage.sql.schema import ColumnTypes, Sql, versions_after
from trading_orders.adapters.storage.sql.store import SqlOrderStore
from trading_orders.adapters.storage.sql.writer import LOCK_WAIT_SECONDS
from trading_orders.application.errors import StorageUnavailable, StoreBusy
from trading_orders.domain.model import PositionScope

logger = logging.getLogger(__name__)

SQLITE_FILE = "trading_orders.sqlite3"
# Taken (flock) around every batch, so the processes' batches take turns on
# it instead of on SQLite's write lock and its busy handler's growing sleeps.
WRITER_LOCK_FILE = "trading_orders.sqlite3.writer-lock"
# A health check tries the flock again after this pause, doubling up to the
# last: it only asks whether the lock is free, and polling costs it nothing.
_FIRST_PAUSE_SECONDS = 0.0005
_LONGEST_PAUSE_SECONDS = 0.01
# How long /health waits for the writer lock to learn it is free again.
_HEALTH_PROBE_SECONDS = 1.0

Done = TypeVar("Done")

# The schema's column types in SQLite's words: an INTEGER PRIMARY KEY is the row id, numbered by SQLite.
_COLUMN_TYPES = ColumnTypes(integer="INTEGER", row_id="INTEGER PRIMARY KEY")


class _SqliteSql:
    """A sqlite3 connection as the stores' Sql."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def rows(self, statement: str, values: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """The rows a query answers."""
        return self._connection.execute(statement, values).fetchall()

    def run(self, statement: str, values: Sequence[object] = ()) -> None:
        """Execute a statement that answers no rows."""
        self._connection.execute(statement, values)

    def run_many(self, statement: str, rows: Sequence[Sequence[object]]) -> None:
        """Execute a statement once per row of values."""
        if rows:
            self._connection.executemany(statement, rows)


class _SqliteBatch(BatchConnection[sqlite3.Connection]):
    """A batch's BEGIN IMMEDIATE ... COMMIT on a writer connection, inside the writer lock file's flock.

    A local COMMIT's answer cannot be lost: a COMMIT that fails did not commit.
    """

    database_error = sqlite3.Error

    def __init__(self, store: SqliteOrderStore, connection: sqlite3.Connection, lock_fd: int) -> None:
        super().__init__(connection, _SqliteSql(connection), store.where)
        self._store = store
        self._lock_fd = lock_fd

    def take_locks(self, names: Sequence[str], deadline: float) -> None:
        """Nothing to take: the batch holds the database's write lock whole."""

    def try_locks(self, names: Sequence[str]) -> set[str]:
        """All of them: the batch holds the database's write lock whole."""
        return set(names)

    def take_sequence_lock(self) -> None:
        """Nothing to take: the batch holds the database's write lock whole."""

    def take_controls_lock(self, deadline: float, *, exclusive: bool, then: str) -> list[tuple[Any, ...]]:
        """Answer ``then``: the transaction holds the database's write lock whole, no change beside it."""
        return self.sql.rows(then)

    def _send_commit(self, connection: sqlite3.Connection) -> None:
        connection.execute("COMMIT")

    def _send_roll_back(self, connection: sqlite3.Connection) -> None:
        if connection.in_transaction:
            connection.execute("ROLLBACK")

    def _give_back(self, connection: sqlite3.Connection) -> None:
        # The next batch, of any process, may begin once the flock is gone.
        os.close(self._lock_fd)
        self._store._give_back(connection)


class SqliteOrderStore(SqlOrderStore):
    """Orders, trades, positions and idempotency keys in ``<directory>/trading_orders.sqlite3``.

    WAL mode with synchronous=FULL: a committed order survives a crash. The
    orders of a process share a batch, one BEGIN IMMEDIATE ... COMMIT, so
    SQLite's own write lock serializes batches across threads and processes,
    and an order's statements never wait for it: they run on the event loop.
    """

    def __init__(self, directory: Path, scope: PositionScope, lock_wait_seconds: float = LOCK_WAIT_SECONDS) -> None:
        """Use (or create) the database in ``directory`` for positions held under ``scope``.

        An order waits at most ``lock_wait_seconds`` for another process's batch, and so does every
        statement for SQLite's own locks.
        """
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / SQLITE_FILE
        self._writer_lock_path = directory / WRITER_LOCK_FILE
        super().__init__(scope, str(self.path), lock_wait_seconds)
        self._local = threading.local()
        # Writers: a transaction may begin on one worker thread and commit on
        # another, so its connection is shared across threads (never by two
        # transactions at once) and kept for the next one.
        self._idle_writers: list[sqlite3.Connection] = []
        self._idle_lock = threading.Lock()
        # A wait for the writer lock an order gave up at its bound, still in
        # the kernel: the next order takes it over instead of starting another.
        self._left_waiting: _FlockWaiter | None = None
        self._lock_waits = _KernelWaits()

    def _connect(self, *, shared: bool) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self.path, timeout=self.lock_wait_seconds, isolation_level=None, check_same_thread=not shared
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as error:
            raise StorageUnavailable(f"cannot open {self.path}: {error}") from error
        return connection

    def _connection(self) -> sqlite3.Connection:
        # Readers: one connection per thread, as sqlite3 connections are not shared by default.
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connect(shared=False)
        return connection

    @contextmanager
    def _reading(self) -> Iterator[_SqliteSql]:
        try:
            yield _SqliteSql(self._connection())
        except sqlite3.Error as error:
            # A file that refuses or a connection gone is the store being unavailable (503), not a bug (500).
            raise StorageUnavailable(f"cannot read {self.path}: {type(error).__name__}: {error}") from error

    @contextmanager
    def _read_only_transaction(self) -> Iterator[_SqliteSql]:
        # A connection of its own, opened read-only (mode=ro), so even a bug
        # cannot write; WAL gives the deferred transaction one snapshot from
        # its first read to its end, whatever commits meanwhile.
        try:
            connection = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30, isolation_level=None
            )
        except sqlite3.Error as error:
            raise StorageUnavailable(f"cannot open {self.path} read-only: {error}") from error
        try:
            connection.execute("BEGIN")
            yield _SqliteSql(connection)
        except sqlite3.Error as error:
            raise StorageUnavailable(f"cannot read {self.path}: {error}") from error
        finally:
            connection.close()

    def _schema_version(self, sql: Sql) -> int:
        return int(sql.rows("PRAGMA user_version")[0][0])

    def _writer(self) -> sqlite3.Connection:
        with self._idle_lock:
            connection = self._idle_writers.pop() if self._idle_writers else None
        return connection if connection is not None else self._connect(shared=True)

    def _give_back(self, connection: sqlite3.Connection) -> None:
        with self._idle_lock:
            self._idle_writers.append(connection)

    @contextmanager
    def _writing(self) -> Iterator[_SqliteSql]:
        connection = self._writer()
        try:
            with self._transaction(connection) as sql:
                yield sql
        finally:
            self._give_back(connection)

    def _begin_batch(self, deadline: float) -> _SqliteBatch:
        lock_fd = self._take_writer_lock(deadline)
        if lock_fd is None:
            raise StoreBusy(
                f"the order was not recorded: another process held {self._writer_lock_path} for "
                f"{self.lock_wait_seconds:g} s",
                self.lock_wait_seconds,
            )
        try:
            connection = self._writer()
        except BaseException:
            os.close(lock_fd)
            raise
        try:
            # SQLite's own write lock, which a process outside the flock (a
            # start-up's migration, an import) may hold: waited for until the deadline too.
            connection.execute(f"PRAGMA busy_timeout = {max(int((deadline - time.monotonic()) * 1000), 1)}")
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            os.close(lock_fd)
            self._give_back(connection)
            if error.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                raise StoreBusy(
                    f"the order was not recorded: another process held {self.path}'s write lock for "
                    f"{self.lock_wait_seconds:g} s",
                    self.lock_wait_seconds,
                ) from error
            raise StorageUnavailable(f"cannot begin a transaction on {self.path}: {error}") from error
        return _SqliteBatch(self, connection, lock_fd)

    def _take_writer_lock(self, deadline: float) -> int | None:
        """A descriptor holding the writer lock's flock, taken by ``deadline`` (monotonic); None if it was not."""
        with self._idle_lock:
            waiter, self._left_waiting = self._left_waiting, None
        if waiter is None or not waiter.take_over():
            lock_fd = self._open_writer_lock()
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return lock_fd
            except BlockingIOError:
                # Another process's batch: wait in the kernel, woken the moment it lets go.
                waiter = _FlockWaiter(lock_fd, self._lock_waits)
            except OSError as error:
                os.close(lock_fd)
                raise StorageUnavailable(f"cannot lock {self._writer_lock_path}: {error.strerror}") from error
        if waiter.taken_by(deadline):
            return waiter.lock_fd
        with self._idle_lock:
            if self._left_waiting is None:
                self._left_waiting = waiter
        return None

    def _open_writer_lock(self) -> int:
        try:
            return os.open(self._writer_lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise StorageUnavailable(f"cannot open {self._writer_lock_path}: {error.strerror}") from error

    def _free_again(self) -> bool:
        """Whether the writer lock can be had within a second; let go at once if so."""
        lock_fd = self._open_writer_lock()
        try:
            return _flock_by(lock_fd, time.monotonic() + min(_HEALTH_PROBE_SECONDS, self.lock_wait_seconds))
        finally:
            os.close(lock_fd)

    async def run_for_order(self, work: Callable[..., Done], *args: Any) -> Done:
        """Run one order's reads on the event loop: inside the batch's write lock, SQLite waits for nothing."""
        return work(*args)

    @contextmanager
    def _transaction(self, connection: sqlite3.Connection) -> Iterator[_SqliteSql]:
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise StorageUnavailable(f"cannot begin a transaction on {self.path}: {error}") from error
        try:
            yield _SqliteSql(connection)
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise StorageUnavailable(f"the order was not recorded in {self.path}: {error}") from error
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def _migrate(self) -> None:
        with self._writing() as sql:
            version = sql.rows("PRAGMA user_version")[0][0]
            for number, statements in versions_after(version, _COLUMN_TYPES):
                for statement in statements:
                    sql.run(statement)
                sql.run(f"PRAGMA user_version = {number}")
                logger.info("%s: schema migrated to version %d", self.path, number)

    def close(self) -> None:
        """Close the writers' connections and this thread's reader."""
        with self._idle_lock:
            writers, self._idle_writers = self._idle_writers, []
        for writer in writers:
            writer.close()
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


class _KernelWaits:
    """One daemon thread that waits in the kernel for flocks, one after the other, started at the first."""

    def __init__(self) -> None:
        """No thread yet."""
        self._waits: queue.SimpleQueue[_FlockWaiter] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def wait_for(self, waiter: _FlockWaiter) -> None:
        """Have the thread wait for ``waiter``'s flock once the waits before it have ended."""
        with self._starting:
            if self._thread is None:
                # A daemon the process never joins: a wait with no end must not hold its exit.
                self._thread = threading.Thread(target=self._serve, name="sqlite-writer-lock", daemon=True)
                self._thread.start()
        self._waits.put(waiter)

    def _serve(self) -> None:
        while True:
            self._waits.get().wait_in_kernel()


class _FlockWaiter:
    """An exclusive flock on ``lock_fd``, waited for in the kernel by another thread, so waiting can end.

    A kernel wait has no deadline, and a signal to end it (SIGALRM) reaches
    only the main thread; so whoever gives up on the wait leaves it to that
    thread: once the flock comes, a waiter nobody took over closes the
    descriptor, letting the lock go at once.
    """

    def __init__(self, lock_fd: int, waits: _KernelWaits) -> None:
        """Start waiting, on ``waits``' thread, for the flock on ``lock_fd``, which the waiter now owns."""
        self.lock_fd = lock_fd
        self._state = threading.Lock()
        self._taken = threading.Event()
        self._given_up = False
        self._closed = False
        self._error: OSError | None = None
        waits.wait_for(self)

    def wait_in_kernel(self) -> None:
        """Wait for the flock; keep it for whoever waits for this waiter, or let it go if nobody does."""
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        except OSError as error:
            self._error = error
        with self._state:
            if self._given_up:
                self._closed = True
                os.close(self.lock_fd)
                return
            self._taken.set()

    def taken_by(self, deadline: float) -> bool:
        """Whether the flock was taken by ``deadline`` (monotonic); if not, the waiter is given up."""
        self._taken.wait(max(deadline - time.monotonic(), 0.0))
        with self._state:
            if not self._taken.is_set():
                self._given_up = True
                return False
        if self._error is not None:
            os.close(self.lock_fd)
            raise StorageUnavailable(f"cannot lock the SQLite writer lock: {self._error.strerror}")
        return True

    def take_over(self) -> bool:
        """Wait on for a flock another order gave up on; False if it came meanwhile and was let go."""
        with self._state:
            if self._closed:
                return False
            self._given_up = False
            return True


def _flock_by(lock_fd: int, deadline: float) -> bool:
    """Take an exclusive flock on ``lock_fd`` if it comes free by ``deadline`` (monotonic); whether it did."""
    pause = _FIRST_PAUSE_SECONDS
    while True:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, _LONGEST_PAUSE_SECONDS)
