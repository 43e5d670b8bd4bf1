"""The JSON-lines order log on a real file: append-only, fsync'd, checked at open."""

import errno
import json
import os
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from trading_orders.adapters.storage.tinydb_store.durable_end import (
    DURABLE_END_FILE,
    DurableEndRecord,
    read_durable_end,
)
from trading_orders.adapters.storage.tinydb_store.order_log import ORDER_LOG_FILE, JsonLinesOrderLog
from trading_orders.application.errors import CorruptStore, StorageUnavailable
from trading_orders.domain.model import (
    Order,
    OrderDecision,
    OrderLogEntry,
    OrderStatus,
    RejectReason,
    Side,
    UserDecision,
)

T0 = datetime(2026, 11, 24, 9, 15, tzinfo=UTC)


def entry(sequence: int, side: Side = Side.BUY) -> OrderLogEntry:
    decisions = (
        UserDecision("U1", OrderStatus.ACCEPTED),
        UserDecision("U2", OrderStatus.REJECTED, RejectReason.INSTRUMENT_NOT_IN_STRATEGY),
    )
    return OrderLogEntry(sequence, OrderDecision(f"o{sequence}", T0, Order("S", "ACC", side), decisions))


def test_entries_round_trip_in_order_across_reopen(tmp_path: Path) -> None:
    log = JsonLinesOrderLog(tmp_path)
    written = [entry(1), entry(2, Side.SELL), entry(3)]
    for item in written:
        log.append(item)
    log.close()
    reopened = JsonLinesOrderLog(tmp_path)
    assert reopened.last_sequence() == 3
    assert list(reopened.entries_after(0)) == written
    assert list(reopened.entries_after(2)) == written[2:]
    reopened.close()


def test_each_line_is_a_json_object_with_sequence_and_every_decision(tmp_path: Path) -> None:
    log = JsonLinesOrderLog(tmp_path)
    log.append(entry(1))
    log.close()
    line = json.loads((tmp_path / ORDER_LOG_FILE).read_text().splitlines()[0])
    assert line["sequence"] == 1 and line["status"] == "ACCEPTED" and line["received_at"] == "2026-11-24T09:15:00Z"
    assert line["decisions"][1] == {"user": "U2", "status": "REJECTED", "reason": "INSTRUMENT_NOT_IN_STRATEGY"}


def test_an_out_of_sequence_append_is_refused(tmp_path: Path) -> None:
    log = JsonLinesOrderLog(tmp_path)
    with pytest.raises(ValueError, match="cannot append 2"):
        log.append(entry(2))
    log.close()


def test_a_torn_last_line_from_a_crash_is_cut_off(tmp_path: Path) -> None:
    log = JsonLinesOrderLog(tmp_path)
    log.append(entry(1))
    log.close()
    path = tmp_path / ORDER_LOG_FILE
    intact = path.read_bytes()
    with path.open("ab") as handle:
        handle.write(b'{"sequence":2,"order_id":"o2","rece')
    reopened = JsonLinesOrderLog(tmp_path)
    assert reopened.last_sequence() == 1
    assert path.read_bytes() == intact
    reopened.append(entry(2))
    assert [e.sequence for e in reopened.entries_after(0)] == [1, 2]
    reopened.close()


def test_damage_before_the_end_is_refused_naming_line_and_byte(tmp_path: Path) -> None:
    log = JsonLinesOrderLog(tmp_path)
    for sequence in (1, 2, 3):
        log.append(entry(sequence))
    log.close()
    path = tmp_path / ORDER_LOG_FILE
    lines = path.read_bytes().splitlines(keepends=True)
    damaged = lines[0] + b'{"sequence": 2, "hand": "edited"}\n' + lines[2]
    path.write_bytes(damaged)
    says = rf"{path}: line 2 \(byte {len(lines[0])}\), sequence 2, is not a valid order-log entry"
    with pytest.raises(CorruptStore, match=says):
        JsonLinesOrderLog(tmp_path)
    assert path.read_bytes() == damaged, "a damaged log is never rewritten by the service"


def test_a_gap_in_sequences_is_refused(tmp_path: Path) -> None:
    log = JsonLinesOrderLog(tmp_path)
    log.append(entry(1))
    log.append(entry(2))
    log.close()
    path = tmp_path / ORDER_LOG_FILE
    first, second = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(second + first)
    with pytest.raises(CorruptStore, match=r"line 1 \(byte 0\), sequence 1, .*sequence 2 follows 0"):
        JsonLinesOrderLog(tmp_path)


def test_a_failed_append_is_cut_back_and_leaves_no_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = JsonLinesOrderLog(tmp_path)
    log.append(entry(1))
    size = (tmp_path / ORDER_LOG_FILE).stat().st_size
    real_fsync = os.fsync
    calls = {"count": 0}

    def fsync_fails_once(fd: int) -> None:
        calls["count"] += 1
        if calls["count"] == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_fails_once)
    with pytest.raises(StorageUnavailable, match="No space left on device"):
        log.append(entry(2))
    assert (tmp_path / ORDER_LOG_FILE).stat().st_size == size
    assert log.last_sequence() == 1
    log.append(entry(2))
    assert [e.sequence for e in log.entries_after(0)] == [1, 2]
    log.close()


def test_appending_writes_only_the_new_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = JsonLinesOrderLog(tmp_path)
    for sequence in range(1, 51):
        log.append(entry(sequence))
    written: list[int] = []
    real_write = os.write

    def counting_write(fd: int, data: bytes) -> int:
        written.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting_write)
    log.append(entry(51))
    line = (tmp_path / ORDER_LOG_FILE).read_bytes().splitlines(keepends=True)[-1]
    assert written == [len(line)], "an append writes its own line and nothing of the history"
    log.close()


def test_entries_are_found_by_idempotency_key_across_reopen(tmp_path: Path) -> None:
    log = JsonLinesOrderLog(tmp_path)
    keyed = OrderLogEntry(2, entry(2).decision, "retry-me")
    log.append(entry(1))
    log.append(keyed)
    assert log.find_by_idempotency_key("retry-me") == keyed
    log.close()
    reopened = JsonLinesOrderLog(tmp_path)
    assert reopened.find_by_idempotency_key("retry-me") == keyed
    assert reopened.find_by_idempotency_key("other") is None
    reopened.close()


def test_a_read_only_log_takes_no_lock_and_leaves_a_torn_tail_in_place(tmp_path: Path) -> None:
    writer = JsonLinesOrderLog(tmp_path)
    writer.append(entry(1))
    path = tmp_path / ORDER_LOG_FILE
    with path.open("ab") as handle:
        handle.write(b'{"sequence":2,"ord')
    reader = JsonLinesOrderLog(tmp_path, read_only=True)
    assert (reader.last_sequence(), reader.torn_tail) == (1, len(b'{"sequence":2,"ord'))
    assert [e.sequence for e in reader.entries_after(0)] == [1]
    assert path.read_bytes().endswith(b'"ord'), "reading never changes the file"
    with pytest.raises(PermissionError):
        reader.append(entry(2))
    reader.close()
    writer.close()


def test_readers_find_entries_while_one_thread_appends_and_another_moves_them_to_the_index(tmp_path: Path) -> None:
    # The entries past the index live in memory, appended by the event loop,
    # drained by the checkpoint thread and searched by readers, all at once.
    # Switching threads every microsecond makes an unguarded deque, mutated
    # while a reader walks it, fail within a few hundred reads.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    log = JsonLinesOrderLog(tmp_path)
    total = 6000
    failures: list[BaseException] = []
    written = threading.Event()

    def append() -> None:
        for sequence in range(1, total + 1):
            log.write(entry(sequence))
            if sequence % 100 == 0:
                log.sync()
        log.sync()
        written.set()

    def drain() -> None:
        while not written.is_set():
            log.index_through(log.durable_sequence() - 1000)

    def read() -> None:
        try:
            while not written.is_set():
                through = log.durable_sequence()
                if through > 1:
                    found = next(log.entries_after(through - 1), None)
                    assert found is not None and found.sequence == through
        except BaseException as error:
            failures.append(error)

    workers = [threading.Thread(target=work) for work in (append, drain, read, read)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(switch_interval)
    assert failures == []
    log.index_through(total)
    assert log.unindexed() == 0
    assert [e.sequence for e in log.entries_after(total - 3)] == [total - 2, total - 1, total]
    log.close()


def test_entries_whose_durable_end_cannot_be_recorded_are_not_durable_and_are_cut_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = JsonLinesOrderLog(tmp_path)
    log.append(entry(1))
    log.close()

    record = DurableEndRecord.record

    def refused(self: DurableEndRecord, size: int, sequence: int) -> None:
        if sequence == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        record(self, size, sequence)

    monkeypatch.setattr(DurableEndRecord, "record", refused)
    log = JsonLinesOrderLog(tmp_path)
    try:
        # Another process would still stop at entry 1: entry 2 is not durable, whatever the fsync did.
        with pytest.raises(StorageUnavailable, match="No space left on device"):
            log.append(entry(2))
        assert log.durable_sequence() == log.last_sequence() == 1
        reader = JsonLinesOrderLog(tmp_path, read_only=True)
        assert [found.sequence for found in reader.entries_after(0)] == [1]
        reader.close()
    finally:
        log.close()


def test_a_durable_end_record_read_half_overwritten_names_nothing(tmp_path: Path) -> None:
    record = DurableEndRecord(tmp_path)
    record.record(9876, 41)
    record.close()
    assert read_durable_end(tmp_path) == (9876, 41)
    path = tmp_path / DURABLE_END_FILE
    # A new end beside the old check: what a read in the middle of an overwrite could see.
    path.write_bytes(path.read_bytes().replace(b"9876", b"9877"))
    assert read_durable_end(tmp_path) is None
