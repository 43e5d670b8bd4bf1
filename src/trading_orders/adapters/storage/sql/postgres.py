"""The PostgreSQL order store: batches of orders, concurrent across instruments, for several processes and hosts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from trading_orders.adapters.storage.sql.batches import BatchConnection
from trading_orders.adapters.storage.sql.schema import ColumnTypes, Sql, versions_after
from trading_orders.adapters.storage.sql.store import SqlOrderStore
from trading_orders.adapters.storage.sql.writer import LOCK_WAIT_SECONDS
from trading_orders.application.errors import OrderInDoubt, StorageUnavailable, StoreBusy
from trading_orders.domain.model import PositionScope

logger = logging.getLogger(__name__)

Done = TypeVar("Done")

# A batch takes this transaction-scoped advisory lock only to number its
# orders and commit: sequences are assigned in commit order, gapless, and a
# reader never sees sequence N+1 before N. Everything else a batch does runs
# beside other processes' batches, under advisory locks per position key.
SEQUENCE_LOCK = 7_283_641_001
_MIGRATION_LOCK = 7_283_641_002
# Every batch of orders takes this advisory lock shared, as its first
# statement, until it ends; a control change takes it exclusive. So a change
# waits for the batches in flight and holds new ones off until it commits:
# every order sequenced after it was decided under it. Taken before any other
# lock of the transaction, it never stands in the order the others are taken in.
CONTROLS_LOCK = 7_283_641_003
# Processes starting together wait for each other's migration this long at most.
_MIGRATION_WAIT_SECONDS = 30.0
# How long /health waits for the sequence lock to learn it is free again.
_HEALTH_PROBE_SECONDS = 1.0
# How long the pool's first opening (at start-up) waits for the server to take a connection.
OPEN_WAIT_SECONDS = 30.0

# A server that vanished without a reset (its machine lost power, a network
# between dropped everything) is noticed by the kernel only through these:
# an idle connection after 5 s of silence and 3 unanswered probes a second
# apart, a connection with a statement on the wire once what it sent has gone
# unacknowledged for 10 s. Without them a pooled connection, and the order on
# it, waits for the server until TCP gives up (15 minutes and more on Linux).
# A URL that sets any of them itself keeps its own value.
DEAD_SERVER_PARAMETERS: dict[str, int] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 1,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}

# The schema's column types in PostgreSQL's words; the applied versions are rows of schema_migrations.
_COLUMN_TYPES = ColumnTypes(integer="BIGINT", row_id="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")


class _PostgresSql:
    """A psycopg connection as the stores' Sql (``?`` becomes ``%s``); a database error is StorageUnavailable."""

    def __init__(self, connection: psycopg.Connection[Any], where: str) -> None:
        self._connection = connection
        self._where = where

    def rows(self, statement: str, values: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """The rows a query answers."""
        with self._unavailable_on_error():
            return list(self._connection.execute(statement.replace("?", "%s"), values).fetchall())

    def run(self, statement: str, values: Sequence[object] = ()) -> None:
        """Execute a statement that answers no rows."""
        with self._unavailable_on_error():
            self._connection.execute(statement.replace("?", "%s"), values)

    def run_many(self, statement: str, rows: Sequence[Sequence[object]]) -> None:
        """Execute a statement once per row of values, pipelined."""
        if rows:
            with self._unavailable_on_error(), self._connection.cursor() as cursor:
                cursor.executemany(statement.replace("?", "%s"), rows)

    @contextmanager
    def _unavailable_on_error(self) -> Iterator[None]:
        # A lost server or connection is the store being unavailable (503),
        # never an error of the service (500).
        try:
            yield
        except psycopg.Error as error:
            raise StorageUnavailable(f"{self._where} failed: {type(error).__name__}: {error}") from error


def lock_id(name: str) -> int:
    """The advisory lock id of ``name``: 64 bits of its hash (a collision only makes two orders wait in turn)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


class _PostgresBatch(BatchConnection[psycopg.Connection[Any]]):
    """A batch's transaction on a pooled connection, with its advisory locks."""

    database_error = psycopg.Error

    def __init__(self, store: PostgresOrderStore, connection: psycopg.Connection[Any]) -> None:
        super().__init__(connection, _PostgresSql(connection, store.where), store.where)
        self._store = store

    def take_locks(self, names: Sequence[str], deadline: float) -> None:
        """Wait until ``deadline`` for the advisory locks of ``names``; StoreBusy if one stays held."""
        connection = self._live()
        try:
            for id_ in sorted({lock_id(name) for name in names}):
                # In one order everywhere, so two waiting batches never wait for each other.
                _bound_lock_waits(connection, deadline - time.monotonic())
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (id_,))
            _bound_lock_waits(connection, self._store.lock_wait_seconds)
        except psycopg.errors.LockNotAvailable as error:
            raise self._store.busy("the locks of the order's positions") from error
        except psycopg.Error as error:
            raise StorageUnavailable(f"cannot lock the order's positions in {self._store.where}: {error}") from error

    def try_locks(self, names: Sequence[str]) -> set[str]:
        """Take the advisory locks of ``names`` that are free, in one round trip; returns those taken."""
        ids = {name: lock_id(name) for name in names}
        try:
            rows = (
                self._live()
                .execute(
                    "SELECT id, pg_try_advisory_xact_lock(id) FROM unnest(%s::bigint[]) AS id",
                    (sorted(set(ids.values())),),
                )
                .fetchall()
            )
        except psycopg.Error as error:
            raise StorageUnavailable(f"cannot lock the order's positions in {self._store.where}: {error}") from error
        taken = {id_ for id_, got in rows if got}
        return {name for name, id_ in ids.items() if id_ in taken}

    def take_sequence_lock(self) -> None:
        """Wait, at most the store's wait bound, for the right to number orders; held until the transaction ends."""
        with self._store.waiting_for_every_order():
            try:
                # Bounded by the connection's lock_timeout, the store's wait bound.
                self._live().execute("SELECT pg_advisory_xact_lock(%s)", (SEQUENCE_LOCK,))
            except psycopg.errors.LockNotAvailable as error:
                raise self._store.busy("the right to number its batch (the sequence lock)") from error
            except psycopg.Error as error:
                raise StorageUnavailable(f"the order was not recorded in {self._store.where}: {error}") from error

    def take_controls_lock(self, deadline: float, *, exclusive: bool, then: str) -> list[tuple[Any, ...]]:
        """Take the controls lock, then answer ``then``: one round trip.

        Two statements in one simple query: each takes a snapshot of its own
        under READ COMMITTED, so ``then`` sees what committed while the lock
        was waited for. The wait is bounded by the connection's lock_timeout
        (the store's wait bound), as the sequence lock's is: only a control
        change in flight makes a batch wait here, and it lasts milliseconds.
        """
        take = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        try:
            cursor = self._live().execute(f"SELECT {take}({CONTROLS_LOCK}); {then}")
            while cursor.nextset():
                pass
            return list(cursor.fetchall())
        except psycopg.errors.LockNotAvailable as error:
            raise self._store.busy("the controls lock (a control change, or the orders in flight)") from error
        except psycopg.Error as error:
            raise StorageUnavailable(f"cannot begin a transaction in {self._store.where}: {error}") from error

    def _send_commit(self, connection: psycopg.Connection[Any]) -> None:
        connection.commit()

    def _send_roll_back(self, connection: psycopg.Connection[Any]) -> None:
        # A broken connection fails to roll back: the pool discards it.
        with contextlib.suppress(psycopg.Error):
            if not connection.closed:
                connection.rollback()

    def _give_back(self, connection: psycopg.Connection[Any]) -> None:
        self._store._give_back(connection)

    def _answer_lost(self, connection: psycopg.Connection[Any]) -> bool:
        # The server may have committed before the connection went.
        return connection.broken or connection.closed

    def _recorded_after_lost_commit(self, witness: str, error: Exception) -> bool:
        return self._store.settle_lost_commit(witness, error)


class PostgresOrderStore(SqlOrderStore):
    """Orders, trades, positions and idempotency keys in the PostgreSQL database at ``url``."""

    def __init__(
        self,
        url: str,
        scope: PositionScope,
        pool_size: int = 8,
        settle_seconds: float = 10.0,
        lock_wait_seconds: float = LOCK_WAIT_SECONDS,
    ) -> None:
        """Connect lazily through a pool of up to ``pool_size`` connections.

        A COMMIT whose answer is lost with its connection is settled by asking
        the database again for up to ``settle_seconds``. An order waits at
        most ``lock_wait_seconds`` for a connection or a lock.
        """
        super().__init__(scope, _without_password(url), lock_wait_seconds)
        self._settle_seconds = settle_seconds
        # Half the pool for orders waiting for their locks: the open batch, its
        # commit and the reads keep the other half.
        self.waiting_connections = max(1, pool_size // 2)
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=settle_seconds,
            configure=self._configure,
            kwargs=_dead_server_parameters(url),
        )

    def _configure(self, connection: psycopg.Connection[Any]) -> None:
        # Every lock wait of every connection is bounded, whoever forgets to:
        # the sequence lock, a row lock, an advisory lock of an order.
        _bound_lock_waits(connection, self.lock_wait_seconds, local=False)
        connection.commit()

    def _open_pool(self) -> None:
        """Open the pool and wait for its first connection; StorageUnavailable if none comes within the wait."""
        # The pool logs a WARNING at each failed attempt, a dozen in the
        # wait; the log says once what is awaited, and for how long, instead.
        refusals = _FirstRefusal(self.where)
        pool_log = logging.getLogger("psycopg.pool")
        pool_log.addFilter(refusals)
        try:
            self._pool.open(wait=True, timeout=OPEN_WAIT_SECONDS)
        except PoolTimeout:
            raise StorageUnavailable(
                f"cannot reach {self.where}: no connection within {OPEN_WAIT_SECONDS:g} s "
                f"({refusals.last or 'no answer'})"
            ) from None
        finally:
            pool_log.removeFilter(refusals)

    def busy(self, waited_for: str) -> StoreBusy:
        """The refusal of an order that waited the whole bound for ``waited_for``, which another transaction held."""
        return StoreBusy(
            f"the order was not recorded: another transaction held {waited_for} in {self.where} for "
            f"{self.lock_wait_seconds:g} s",
            self.lock_wait_seconds,
        )

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            if self._pool.closed:
                self._open_pool()
            with self._pool.connection() as connection:
                yield connection
        except (psycopg.OperationalError, PoolTimeout) as error:
            raise StorageUnavailable(f"cannot reach {self.where}: {error}") from error

    @contextmanager
    def _reading(self) -> Iterator[_PostgresSql]:
        with self._connection() as connection:
            yield _PostgresSql(connection, self.where)

    @contextmanager
    def _writing(self) -> Iterator[_PostgresSql]:
        with self._connection() as connection:
            try:
                with connection.transaction():
                    connection.execute("SELECT pg_advisory_xact_lock(%s)", (SEQUENCE_LOCK,))
                    yield _PostgresSql(connection, self.where)
            except psycopg.Error as error:
                raise StorageUnavailable(f"the order was not recorded in {self.where}: {error}") from error

    @contextmanager
    def _read_only_transaction(self) -> Iterator[_PostgresSql]:
        with self._connection() as connection:
            try:
                with connection.transaction():
                    # One snapshot for every statement, and the server refuses any write.
                    connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    yield _PostgresSql(connection, self.where)
            except psycopg.Error as error:
                raise StorageUnavailable(f"cannot read {self.where}: {error}") from error

    def _schema_version(self, sql: Sql) -> int:
        if sql.rows("SELECT to_regclass('schema_migrations') IS NULL")[0][0]:
            return 0
        return int(sql.rows("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")[0][0])

    def _begin_batch(self, deadline: float) -> _PostgresBatch:
        try:
            if self._pool.closed:
                self._open_pool()
            connection = self._pool.getconn(timeout=max(deadline - time.monotonic(), 0.001))
        except PoolTimeout as error:
            if self._pool.get_stats().get("pool_size", 0) > 0:
                # The pool holds connections, and this process's other orders
                # had every one until the order's bound passed (a commit
                # waiting for a peer's lock, orders waiting aside): busy, not
                # unreachable. A server that is gone leaves the pool empty.
                raise StoreBusy(
                    f"the order was not recorded: this service's other orders held every connection to "
                    f"{self.where} until its wait of {self.lock_wait_seconds:g} s ran out",
                    self.lock_wait_seconds,
                ) from error
            raise StorageUnavailable(f"cannot reach {self.where}: {error}") from error
        except psycopg.OperationalError as error:
            raise StorageUnavailable(f"cannot reach {self.where}: {error}") from error
        # The transaction begins with the batch's first statement.
        return _PostgresBatch(self, connection)

    def _give_back(self, connection: psycopg.Connection[Any]) -> None:
        broken = connection.broken or connection.closed
        self._pool.putconn(connection)
        if broken:
            # One broken connection after a server restart means every idle
            # one is: drop them now, or each would fail an order of its own.
            self._pool.check()

    def settle_lost_commit(self, witness: str, error: BaseException) -> bool:
        """Whether the transaction holding order ``witness`` committed, asked on a fresh connection; blocks.

        Raises OrderInDoubt when the database cannot be asked within
        ``settle_seconds``: then neither answer would be true.
        """
        deadline = time.monotonic() + self._settle_seconds
        pause = 0.05
        while True:
            try:
                with self._connection() as connection, connection.transaction():
                    # The committing transaction held the sequence lock to its
                    # very end: once this one has it, that COMMIT has happened
                    # or never will (a dead server's locks die with it). A
                    # peer that holds it without end is asked about again
                    # until the deadline, never waited for past it.
                    _bound_lock_waits(connection, deadline - time.monotonic())
                    connection.execute("SELECT pg_advisory_xact_lock(%s)", (SEQUENCE_LOCK,))
                    found = connection.execute("SELECT 1 FROM orders WHERE order_id = %s", (witness,)).fetchone()
            except (psycopg.Error, StorageUnavailable) as failure:
                if time.monotonic() + pause > deadline:
                    raise OrderInDoubt(
                        f"the connection to {self.where} was lost during COMMIT ({error}) and whether order "
                        f"{witness} was recorded could not be asked ({failure})"
                    ) from failure
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            logger.warning(
                "the connection to %s was lost during COMMIT (%s): order %s and its batch %s",
                self.where,
                error,
                witness,
                "were recorded" if found else "were not recorded",
            )
            return found is not None

    async def run_for_order(self, work: Callable[..., Done], *args: Any) -> Done:
        """Run one order's statements on a worker thread: a round trip to the server, or a wait for its locks."""
        return await asyncio.to_thread(work, *args)

    def _migrate(self) -> None:
        with self._connection() as connection, connection.transaction():
            # Processes starting together migrate one after the other.
            _bound_lock_waits(connection, _MIGRATION_WAIT_SECONDS)
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            connection.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
            row = connection.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
            version = row[0] if row else 0
            for number, statements in versions_after(version, _COLUMN_TYPES):
                for statement in statements:
                    connection.execute(statement)
                connection.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (number,))
                logger.info("%s: schema migrated to version %d", self.where, number)

    def _free_again(self) -> bool:
        """Whether the sequence lock can be had within a second; let go at once if so."""
        try:
            with self._connection() as connection, connection.transaction():
                _bound_lock_waits(connection, min(_HEALTH_PROBE_SECONDS, self.lock_wait_seconds))
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (SEQUENCE_LOCK,))
        except (psycopg.Error, StorageUnavailable):
            return False
        return True

    def close(self) -> None:
        """Close the pool's connections."""
        self._pool.close()


class _FirstRefusal(logging.Filter):
    """Keeps psycopg_pool's failed connections out of the log, saying the first once as a wait."""

    def __init__(self, where: str) -> None:
        """``where`` names the database in the one line."""
        super().__init__()
        self._where = where
        # The last attempt's error, for the line that gives up.
        self.last: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a failed connection, after logging the first as a wait; True for every other record."""
        if not (isinstance(record.args, tuple) and str(record.msg).startswith("error connecting")):
            return True
        first = self.last is None
        # The error's first line: libpq adds a hint on the next ("Is the server running ...").
        self.last = (str(record.args[-1]).removeprefix("connection failed: ").splitlines() or ["?"])[0]
        if first:
            logger.warning(
                "waiting up to %g s for %s to take a connection (%s); Ctrl-C stops",
                OPEN_WAIT_SECONDS,
                self._where,
                self.last,
            )
        return False


def open_postgres_store(
    url: str, scope: PositionScope, lock_wait_seconds: float = LOCK_WAIT_SECONDS
) -> Iterator[PostgresOrderStore]:
    """The PostgreSQL store at ``url``, its connection pool closed when the resource is shut down."""
    store = PostgresOrderStore(url, scope, lock_wait_seconds=lock_wait_seconds)
    try:
        yield store
    finally:
        store.close()


def _bound_lock_waits(connection: psycopg.Connection[Any], seconds: float, *, local: bool = True) -> None:
    """Make ``connection`` give up (LockNotAvailable) on a lock not granted within ``seconds``.

    ``local``: until its transaction ends; else for the session.
    """
    milliseconds = max(int(seconds * 1000), 1)
    connection.execute("SELECT set_config('lock_timeout', %s, %s)", (f"{milliseconds}ms", local))


def _dead_server_parameters(url: str) -> dict[str, Any]:
    """The connection parameters that notice a vanished server, less those ``url`` sets itself."""
    try:
        own = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        own = {}  # The connection will say what is wrong with the URL.
    return {name: value for name, value in DEAD_SERVER_PARAMETERS.items() if name not in own}


def _without_password(url: str) -> str:
    # The database's address goes into messages and logs; its password never does.
    try:
        parts = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the PostgreSQL database (its URL does not parse)"
    where = f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}"
    return f"PostgreSQL database {parts.get('dbname', '?')!s} at {where} as {parts.get('user', '?')!s}"
