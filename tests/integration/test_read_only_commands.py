"""`export` and `verify` only read: the store is unchanged after them, even under another position scope."""

import errno
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from tests.integration.test_verify_command import record_orders
from tests.service.fakes import CountingIds, FixedProfile, SteppingClock, place
from trading_orders import cli
from trading_orders.adapters.storage.sql.postgres import PostgresOrderStore
from trading_orders.adapters.storage.sql.schema import SCHEMA_VERSION
from trading_orders.adapters.storage.sql.sqlite import SQLITE_FILE, SqliteOrderStore
from trading_orders.adapters.storage.sql.store import SqlOrderStore
from trading_orders.adapters.storage.tinydb_store.durable_end import DURABLE_END_FILE
from trading_orders.adapters.storage.tinydb_store.order_log import JsonLinesOrderLog
from trading_orders.application.errors import StorageUnavailable
from trading_orders.application.order_service import OrderService
from trading_orders.domain.model import Order, OrderDecision, OrderLogEntry, PositionScope, Side

# Both of U1's strategies hold ACC: two positions under scope "strategy", a conflict under scope "user".
PROFILE = {"U1": {"S": ["ACC", "INFY"], "T": ["ACC"]}}
ORDERS = [Order("S", "ACC", Side.BUY), Order("T", "ACC", Side.BUY), Order("S", "INFY", Side.BUY)]
SELLS = [Order(order.strategy, order.instrument, Side.SELL) for order in ORDERS]


@pytest.fixture(autouse=True)
def only_the_tests_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands read their store from these variables alone, never the environment the tests run in."""
    for name in ("TRADING_ORDERS_STORE", "TRADING_ORDERS_DATA_DIR", "TRADING_ORDERS_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRADING_ORDERS_POSITION_SCOPE", PositionScope.USER.value)


def fill(store: SqlOrderStore, orders: list[Order] = ORDERS) -> None:
    """Place ``orders`` under scope "strategy", which the store records as its own, and close it."""
    service = OrderService(FixedProfile(PROFILE), store, SteppingClock(), CountingIds(), PositionScope.STRATEGY)
    service.start()
    for order in orders:
        place(service, order)
    store.close()


def exported(output: Path) -> list[str]:
    """The kinds of the records an export holds, in order."""
    return [json.loads(line)["kind"] for line in output.read_text().splitlines()]


def files_of(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file in ``directory``, with its bytes and modification time."""
    return {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in sorted(directory.iterdir())}


@pytest.mark.parametrize(("orders", "held"), [(ORDERS, 3), (ORDERS + SELLS, 0)], ids=["holding", "all-closed"])
def test_a_sqlite_export_under_another_scope_leaves_the_database_as_it_was(
    tmp_path: Path, orders: list[Order], held: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    fill(SqliteOrderStore(data, PositionScope.STRATEGY), orders)
    before = files_of(data)
    monkeypatch.setenv("TRADING_ORDERS_STORE", "sqlite")
    assert cli.main(["export", str(tmp_path / "desk.jsonl"), "--data-dir", str(data)]) == 0
    assert exported(tmp_path / "desk.jsonl") == ["order"] * len(orders) + ["position"] * held
    after = files_of(data)
    # A read-only reader of a WAL database leaves an empty write-ahead log and its shared-memory index beside it.
    assert after.pop(f"{SQLITE_FILE}-wal", (b"", 0))[0] == b""
    after.pop(f"{SQLITE_FILE}-shm", None)
    assert after == before


def test_a_postgres_export_under_another_scope_runs_where_every_write_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: Callable[[], str]
) -> None:
    url = postgres_url()
    fill(PostgresOrderStore(url, PositionScope.STRATEGY))
    with psycopg.connect(url, autocommit=True) as connection:
        # Every later session of this database is read-only: any write the export tried would fail it.
        connection.execute(f"ALTER DATABASE {connection.info.dbname} SET default_transaction_read_only = on")
    monkeypatch.setenv("TRADING_ORDERS_STORE", "postgres")
    monkeypatch.setenv("TRADING_ORDERS_DATABASE_URL", url)
    assert cli.main(["export", str(tmp_path / "desk.jsonl")]) == 0
    assert exported(tmp_path / "desk.jsonl") == ["order"] * 3 + ["position"] * 3
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT value FROM meta WHERE name = 'position_scope'").fetchall() == [("strategy",)]


@pytest.mark.parametrize("command", ["export", "verify"])
def test_tinydb_export_and_verify_under_another_scope_change_no_file(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    record_orders(data, [("ACC", Side.BUY), ("INFY", Side.BUY), ("ACC", Side.SELL)])
    before = files_of(data)
    arguments = [str(tmp_path / "desk.jsonl")] if command == "export" else []
    status = cli.main([command, *arguments, "--data-dir", str(data)])
    assert status == 0, capsys.readouterr()
    assert files_of(data) == before


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_verify_of_a_sql_store_says_it_checks_the_tinydb_files_only(
    tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRADING_ORDERS_STORE", store)
    # An address nothing answers on: verify refuses before it would connect.
    monkeypatch.setenv("TRADING_ORDERS_DATABASE_URL", "postgresql://desk@127.0.0.1:9/trading_orders")
    assert cli.main(["verify", "--data-dir", str(tmp_path)]) == 2
    assert f"verify checks the TinyDB store's files; the configured store is {store}" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_sqlite_export_where_no_database_is_creates_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRADING_ORDERS_STORE", "sqlite")
    assert cli.main(["export", str(tmp_path / "desk.jsonl"), "--data-dir", str(tmp_path)]) == 1
    assert f"cannot open {tmp_path / SQLITE_FILE} read-only" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_postgres_export_of_a_database_the_service_never_started_on_creates_no_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], postgres_url: Callable[[], str]
) -> None:
    url = postgres_url()
    monkeypatch.setenv("TRADING_ORDERS_STORE", "postgres")
    monkeypatch.setenv("TRADING_ORDERS_DATABASE_URL", url)
    assert cli.main(["export", str(tmp_path / "desk.jsonl")]) == 1
    assert f"holds schema version 0, not {SCHEMA_VERSION}: start the service on it once" in capsys.readouterr().err
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT to_regclass('meta')").fetchall() == [(None,)]


def _entry(sequence: int) -> OrderLogEntry:
    # An order for no user: it opens no position, so the export's replay has nothing to disagree on.
    received = datetime(2026, 11, 24, 9, 15, tzinfo=UTC)
    return OrderLogEntry(sequence, OrderDecision(f"o{sequence}", received, Order("S", "ACC", Side.BUY), ()))


def _exported_sequences(data: Path, output: Path) -> list[int]:
    assert cli.main(["export", str(output), "--data-dir", str(data)]) == 0
    return [json.loads(line)["sequence"] for line in output.read_text().splitlines()]


def test_a_tinydb_export_beside_the_service_holds_only_the_entries_it_made_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, output = tmp_path / "data", tmp_path / "desk.jsonl"
    log = JsonLinesOrderLog(data)  # the service's log: it holds the lock and writes
    try:
        log.append(_entry(1))
        log.append(_entry(2))
        # Handed to the OS, not yet fsync'd: in the file, where another process sees it, but not durable.
        log.write(_entry(3))
        assert _exported_sequences(data, output) == [1, 2]

        def refused(fd: int) -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        with monkeypatch.context() as failing:
            failing.setattr(os, "fsync", refused)
            with pytest.raises(StorageUnavailable):
                log.sync()
        log.roll_back(StorageUnavailable("the fsync failed"))
        # The service took entry 3 back and answered it 503: the export never held it.
        assert _exported_sequences(data, output) == [1, 2]

        log.append(_entry(3))
        assert _exported_sequences(data, output) == [1, 2, 3]
    finally:
        log.close()


def test_a_tinydb_log_no_service_has_marked_is_exported_whole(tmp_path: Path) -> None:
    # A data directory from before order_log.durable, or one whose mark a crash lost: no writer of it
    # has run since (one records its end before it appends), so every complete line is kept for good.
    data = tmp_path / "data"
    log = JsonLinesOrderLog(data)
    for sequence in (1, 2):
        log.append(_entry(sequence))
    log.close()
    (data / DURABLE_END_FILE).unlink()
    assert _exported_sequences(data, tmp_path / "desk.jsonl") == [1, 2]
