"""The file store under concurrency: group commit, snapshots, an index on disk, and start-up from the tail."""

import asyncio
import errno
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.tinydb_over_memory import service_over
from tests.service.fakes import CountingIds, FixedProfile, SteppingClock, place
from trading_orders.adapters.storage.tinydb_store.checkpoints import CheckpointPolicy
from trading_orders.adapters.storage.tinydb_store.json_lines import JsonLinesFile
from trading_orders.adapters.storage.tinydb_store.order_log import ORDER_LOG_FILE, JsonLinesOrderLog
from trading_orders.adapters.storage.tinydb_store.position_snapshots import TinyDBPositionStore
from trading_orders.adapters.storage.tinydb_store.store import TinyDBOrderStore
from trading_orders.adapters.storage.tinydb_store.trade_log import TRADE_LOG_FILE, JsonLinesTradeLog
from trading_orders.application.errors import StorageUnavailable
from trading_orders.application.order_service import OrderService, PlacedOrder
from trading_orders.domain.controls import entry_id
from trading_orders.domain.model import Order, OrderLogEntry, PositionScope, Side, Trade

INSTRUMENTS = [f"I{n:02d}" for n in range(40)]
PROFILE = {"U1": {"S": INSTRUMENTS}, "U2": {"S": INSTRUMENTS[:20]}}


class Opened:
    """A started service over the real files in a directory."""

    def __init__(self, directory: Path) -> None:
        self.positions = TinyDBPositionStore(directory)
        self.log = JsonLinesOrderLog(directory)
        self.trades = JsonLinesTradeLog(directory)
        self.service, self.store = service_over(PROFILE, self.positions, self.log, self.trades)
        self.report = self.service.start()

    def close(self) -> None:
        self.store.close()
        for opened in (self.trades, self.log, self.positions):
            opened.close()


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[Opened]:
    store = Opened(tmp_path)
    yield store
    store.close()


@pytest.fixture
def log_syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every fsync of the order log from now on, by file descriptor."""
    syncs: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(ORDER_LOG_FILE):
            syncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    return syncs


def place_concurrently(service: OrderService, orders: list[Order], threads: int) -> list[OrderLogEntry]:
    answered: list[OrderLogEntry] = []
    barrier = threading.Barrier(threads)

    def place_share(share: list[tuple[int, Order]]) -> None:
        barrier.wait()
        for number, order in share:
            answered.append(place(service, order, idempotency_key=f"key-{number}").entry)

    numbered = list(enumerate(orders))
    workers = [threading.Thread(target=place_share, args=(numbered[n::threads],)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return answered


def test_orders_that_arrive_during_a_sync_share_the_next_one(
    opened: Opened, tmp_path: Path, log_syncs: list[int]
) -> None:
    orders = [Order("S", INSTRUMENTS[n % 40], Side.BUY if n % 3 else Side.SELL) for n in range(600)]
    answered = place_concurrently(opened.service, orders, threads=24)
    assert len(answered) == 600
    assert len(log_syncs) < 600, "some orders shared an fsync"
    # Every answer is in the log, gapless and in the order decided.
    logged = list(opened.log.entries_after(0))
    assert sorted(e.sequence for e in answered) == [e.sequence for e in logged] == list(range(1, 601))
    assert {e.sequence: e for e in answered} == {e.sequence: e for e in logged}
    # And the positions are what a sequential replay of that log gives.
    replayed, _ = service_over(PROFILE, *_fresh_stores(tmp_path / "replay"))
    replayed.start()
    for entry in logged:
        assert isinstance(entry, OrderLogEntry)
        place(replayed, entry.decision.order)
    assert _keys(replayed) == _keys(opened.service)


def _fresh_stores(directory: Path) -> tuple[TinyDBPositionStore, JsonLinesOrderLog, JsonLinesTradeLog]:
    return TinyDBPositionStore(directory), JsonLinesOrderLog(directory), JsonLinesTradeLog(directory)


def _keys(service: OrderService) -> set[tuple[str, str, str]]:
    return {(p.user, p.strategy, p.instrument) for p in service.open_positions()}


def test_a_checkpoint_moves_keys_and_order_ids_from_memory_to_the_index(opened: Opened, tmp_path: Path) -> None:
    first = place(opened.service, Order("S", "I01", Side.BUY), idempotency_key="k-1").entry
    for n in range(2, 40):
        place(opened.service, Order("S", INSTRUMENTS[n], Side.BUY), idempotency_key=f"k-{n}")
    assert opened.log.unindexed() == 39
    assert opened.store.checkpoint()
    assert opened.log.unindexed() == 0, "memory holds only the orders since the last checkpoint"
    assert opened.log.find_by_idempotency_key("k-1") == first
    assert opened.log.find_by_order_id(first.decision.order_id) == first
    retry = place(opened.service, Order("S", "I01", Side.BUY), idempotency_key="k-1")
    assert retry.replayed and retry.entry == first, "a retry of an indexed key is still answered from the log"


def test_start_up_checks_and_replays_only_the_log_after_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Opened(tmp_path)
    for n in range(30):
        place(store.service, Order("S", INSTRUMENTS[n], Side.BUY))
    store.store.checkpoint()
    tail_start = (tmp_path / ORDER_LOG_FILE).stat().st_size
    for n in range(30, 35):
        place(store.service, Order("S", INSTRUMENTS[n], Side.BUY))
    expected = store.service.open_positions()
    # A crash: no last checkpoint, the files released as the process's death would.
    for opened in (store.trades, store.log, store.positions):
        opened.close()

    checked_from: list[tuple[str, int]] = []
    real_check = JsonLinesFile.check

    def recording_check(self: JsonLinesFile, start: int = 0, previous_sequence: int = 0) -> None:
        checked_from.append((self.path.name, start))
        real_check(self, start, previous_sequence)

    monkeypatch.setattr(JsonLinesFile, "check", recording_check)
    restarted = Opened(tmp_path)
    assert sorted(checked_from) == [(ORDER_LOG_FILE, tail_start), (TRADE_LOG_FILE, 0)], (
        "only the order log's lines after the indexed ones were read, and the whole trade log"
    )
    assert restarted.report.replayed_orders == 5
    assert restarted.service.open_positions() == expected
    restarted.close()


def test_a_missing_index_is_rebuilt_from_the_log(tmp_path: Path) -> None:
    store = Opened(tmp_path)
    keyed = place(store.service, Order("S", "I00", Side.BUY), idempotency_key="keep").entry
    store.close()
    (tmp_path / "order_index.sqlite3").unlink()
    restarted = Opened(tmp_path)
    assert restarted.log.find_by_idempotency_key("keep") == keyed
    restarted.close()


def test_the_snapshot_is_taken_in_the_background_every_n_orders(tmp_path: Path) -> None:
    positions, log, trades = _fresh_stores(tmp_path)
    store = TinyDBOrderStore(
        positions, log, trades, PositionScope.STRATEGY, CheckpointPolicy(every_orders=10, every_seconds=3600)
    )
    service = OrderService(FixedProfile(PROFILE), store, SteppingClock(), CountingIds(), PositionScope.STRATEGY)
    service.start()
    for n in range(10):
        place(service, Order("S", INSTRUMENTS[n], Side.BUY))
    deadline = time.monotonic() + 10
    while positions.load().applied_sequence < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    snapshot = positions.load()
    assert snapshot.applied_sequence == 10 and len(snapshot.positions) == 10 + 10
    assert snapshot.log_offset == (tmp_path / ORDER_LOG_FILE).stat().st_size
    store.close()
    for opened in (trades, log, positions):
        opened.close()


def test_orders_awaited_on_an_event_loop_are_decided_at_once_and_share_syncs(
    opened: Opened, log_syncs: list[int]
) -> None:
    orders = [Order("S", INSTRUMENTS[n % 40], Side.BUY if n % 3 else Side.SELL) for n in range(300)]

    async def place_all() -> list[OrderLogEntry]:
        placed = await asyncio.gather(*(opened.service.place_order(order) for order in orders))
        return [p.entry for p in placed]

    answered = asyncio.run(place_all())
    assert [e.sequence for e in answered] == list(range(1, 301)), "decided in the order they were placed"
    assert list(opened.log.entries_after(0)) == answered, "and every one durable before its answer"
    assert len(log_syncs) < 300


def test_a_failed_sync_fails_every_order_awaiting_it_and_keeps_none_of_them(
    opened: Opened, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = place(opened.service, Order("S", "I00", Side.BUY)).entry
    before = (tmp_path / ORDER_LOG_FILE).read_bytes()
    real_fsync = os.fsync
    failures = {"left": 1}

    def failing_fsync(fd: int) -> None:
        if failures["left"] and os.readlink(f"/proc/self/fd/{fd}").endswith(ORDER_LOG_FILE):
            failures["left"] -= 1
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)

    async def place_all() -> list[object]:
        orders = [Order("S", INSTRUMENTS[n], Side.BUY) for n in range(1, 11)]
        return await asyncio.gather(*(opened.service.place_order(o) for o in orders), return_exceptions=True)

    outcomes = asyncio.run(place_all())
    failed = [o for o in outcomes if isinstance(o, StorageUnavailable)]
    answered = [o.entry for o in outcomes if isinstance(o, PlacedOrder)]
    assert failed and len(failed) + len(answered) == 10, outcomes
    # The failed batch left no trace; orders decided after it got the sequences it never kept.
    logged = list(opened.log.entries_after(0))
    assert logged == [first, *answered]
    assert [e.sequence for e in logged] == list(range(1, len(answered) + 2))
    assert (tmp_path / ORDER_LOG_FILE).read_bytes().startswith(before)
    held = {p.order_id for p in opened.service.open_positions()}
    assert held == {entry_id(e) for e in logged}, "no position of a failed order was kept"


def test_trades_queued_by_a_failed_write_are_written_once_when_a_failed_sync_rebuilds(
    opened: Opened, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    place(opened.service, Order("S", "I00", Side.BUY))
    real_write = opened.trades.write
    trade_failures = {"left": 1}

    def trade_write_fails_once(trades: tuple[Trade, ...], sequence: int) -> None:
        if trade_failures["left"]:
            trade_failures["left"] -= 1
            raise StorageUnavailable("no space left on device")
        real_write(trades, sequence)

    monkeypatch.setattr(opened.trades, "write", trade_write_fails_once)
    sell = place(opened.service, Order("S", "I00", Side.SELL)).entry  # its trades stay queued
    real_fsync = os.fsync
    sync_failures = {"left": 1}

    def fsync_fails_once(fd: int) -> None:
        if sync_failures["left"] and os.readlink(f"/proc/self/fd/{fd}").endswith(ORDER_LOG_FILE):
            sync_failures["left"] -= 1
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_fails_once)
    with pytest.raises(StorageUnavailable):
        place(opened.service, Order("S", "I01", Side.BUY))
    retried = place(opened.service, Order("S", "I01", Side.BUY)).entry
    assert retried.sequence == 3
    lines = [json.loads(line) for line in (tmp_path / TRADE_LOG_FILE).read_text().splitlines()]
    assert [line["sequence"] for line in lines] == [sell.sequence], "the SELL's trades, written once"


@pytest.mark.parametrize("unexpected", [RuntimeError("a bug"), SystemExit(3)])
def test_an_unexpected_error_in_the_committer_answers_its_batch_and_orders_go_on(
    opened: Opened, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unexpected: BaseException
) -> None:
    first = place(opened.service, Order("S", "I00", Side.BUY)).entry
    real_fsync = os.fsync
    failures = {"left": 1}

    def failing_fsync(fd: int) -> None:
        if failures["left"] and os.readlink(f"/proc/self/fd/{fd}").endswith(ORDER_LOG_FILE):
            failures["left"] -= 1
            raise unexpected
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)

    async def place_one(instrument: str) -> PlacedOrder | BaseException:
        try:
            return await asyncio.wait_for(opened.service.place_order(Order("S", instrument, Side.BUY)), 10)
        except StorageUnavailable as error:
            return error

    refused = asyncio.run(place_one("I01"))
    assert isinstance(refused, StorageUnavailable), refused
    assert "commit failed" in str(refused)
    # The committer rolled back, answered, and serves again after a pause.
    deadline = time.monotonic() + 10
    while not opened.store.state().reachable:
        assert time.monotonic() < deadline, "the store did not take orders again"
        time.sleep(0.01)
    later = asyncio.run(place_one("I02"))
    assert isinstance(later, PlacedOrder)
    assert [e.sequence for e in opened.log.entries_after(0)] == [first.sequence, later.entry.sequence] == [1, 2]
    assert {p.instrument for p in opened.service.open_positions()} == {"I00", "I02"}
