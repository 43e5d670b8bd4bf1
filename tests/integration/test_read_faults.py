"""Reads of a store that meets a fault raise the application's errors, StorageUnavailable or DamagedLogEntry.

DamagedLogEntry names the entry's sequence. Never an OSError, a sqlite3 error or a decoding
error, which the HTTP layer could only answer 500.
"""

import builtins
import errno
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from tests.service.fakes import CountingIds, FixedProfile, SteppingClock, place
from trading_orders.adapters.storage.sql.sqlite import SqliteOrderStore
from trading_orders.adapters.storage.tinydb_store.order_log import ORDER_LOG_FILE, JsonLinesOrderLog
from trading_orders.adapters.storage.tinydb_store.trade_log import TRADE_LOG_FILE, JsonLinesTradeLog
from trading_orders.application.errors import DamagedLogEntry, StorageUnavailable
from trading_orders.application.order_service import OrderService
from trading_orders.domain.model import Order, OrderDecision, OrderLogEntry, PositionScope, Side, Trade

T0 = datetime(2026, 11, 24, 9, 15, tzinfo=UTC)

# Two ways a line goes bad: bytes that are no JSON, and JSON that is no entry.
DAMAGES = {
    "not JSON": lambda line: line[:12] + b"\x00\x00\x00\x00" + line[16:],
    "not an entry": lambda line: line.replace(b'"order_id"', b'"order_iX"'),
}


def entry(sequence: int) -> OrderLogEntry:
    decision = OrderDecision(f"o{sequence}", T0, Order("S", "ACC", Side.BUY), ())
    return OrderLogEntry(sequence, decision, f"k{sequence}")


def indexed_log(directory: Path, count: int) -> None:
    """A log of ``count`` entries, every one of them in the on-disk index (so opening checks none of them)."""
    log = JsonLinesOrderLog(directory)
    for sequence in range(1, count + 1):
        log.append(entry(sequence))
    log.index_through(count)
    log.close()


def damage(path: Path, line_number: int, how: Callable[[bytes], bytes]) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    lines[line_number - 1] = how(lines[line_number - 1])
    path.write_bytes(b"".join(lines))


@pytest.fixture
def damaged_log(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[JsonLinesOrderLog]:
    """A log of five indexed entries whose third line is damaged, opened as the service opens it."""
    indexed_log(tmp_path, 5)
    damage(tmp_path / ORDER_LOG_FILE, 3, DAMAGES[request.param])
    log = JsonLinesOrderLog(tmp_path)
    yield log
    log.close()


@pytest.mark.parametrize("damaged_log", list(DAMAGES), indirect=True)
def test_every_read_that_reaches_a_damaged_line_raises_damaged_log_entry_naming_its_sequence(
    damaged_log: JsonLinesOrderLog,
) -> None:
    newest = damaged_log.newest_first()
    assert [found.sequence for _, found in islice(newest, 2)] == [5, 4]
    cursor_of_4 = next(cursor for cursor, found in damaged_log.newest_first() if found.sequence == 4)
    after = damaged_log.entries_after(0)
    assert [found.sequence for found in islice(after, 2)] == [1, 2]
    reads: list[Callable[[], object]] = [
        lambda: next(newest),
        lambda: next(damaged_log.newest_first(cursor_of_4)),  # a page that starts at the damaged line
        lambda: next(after),
        lambda: list(damaged_log.entries_after(2)),
        lambda: damaged_log.find_by_order_id("o3"),
        lambda: damaged_log.find_by_idempotency_key("k3"),
    ]
    for read in reads:
        with pytest.raises(DamagedLogEntry, match=f"order-log entry 3 cannot be read: .*{ORDER_LOG_FILE}") as raised:
            read()
        assert raised.value.sequence == 3
    assert [found.sequence for found in damaged_log.entries_after(3)] == [4, 5], "the entries after it still read"


def test_reads_of_a_log_the_disk_refuses_raise_storage_unavailable_not_os_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexed_log(tmp_path, 3)
    log = JsonLinesOrderLog(tmp_path)
    real_open = builtins.open

    def refusing_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file).endswith(ORDER_LOG_FILE):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    reads: list[Callable[[], object]] = [
        lambda: list(log.newest_first()),
        lambda: list(log.entries_after(0)),
        lambda: log.find_by_order_id("o2"),
        lambda: log.find_by_idempotency_key("k2"),
    ]
    try:
        for read in reads:
            with pytest.raises(StorageUnavailable, match=r"cannot read .*order_log\.jsonl: Permission denied"):
                read()
    finally:
        monkeypatch.undo()
        log.close()


def test_a_damaged_trade_log_line_raises_storage_unavailable(tmp_path: Path) -> None:
    trades = JsonLinesTradeLog(tmp_path)
    trades.append((Trade("U1", "S", "ACC", "o1", T0, "o2", T0),), 2)
    trades.close()
    damage(tmp_path / TRADE_LOG_FILE, 1, lambda line: line.replace(b'"user"', b'"usex"'))
    trades = JsonLinesTradeLog(tmp_path, read_only=True)
    with pytest.raises(StorageUnavailable, match="the line at byte 0 is not a valid trade-log line"):
        list(trades.newest_first())
    trades.close()


def test_reads_of_a_sqlite_store_whose_connection_fails_raise_storage_unavailable(tmp_path: Path) -> None:
    store = SqliteOrderStore(tmp_path, PositionScope.STRATEGY)
    service = OrderService(
        FixedProfile({"U1": {"S": ["ACC"]}}), store, SteppingClock(), CountingIds(), PositionScope.STRATEGY
    )
    service.start()
    order_id = place(service, Order("S", "ACC", Side.BUY)).entry.decision.order_id
    assert [found.sequence for _, found in store.newest_first()] == [1]
    # This thread's reading connection goes away under the store, as a lost file handle would.
    store._local.connection.close()
    reads: list[Callable[[], object]] = [
        lambda: list(store.newest_first()),
        lambda: list(store.entries_after(0)),
        lambda: store.find_by_order_id(order_id),
    ]
    for read in reads:
        with pytest.raises(StorageUnavailable, match=r"cannot read .*trading_orders\.sqlite3: ProgrammingError"):
            read()
    store.close()
