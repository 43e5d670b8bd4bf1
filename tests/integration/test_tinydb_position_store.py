"""The TinyDB position store on a real file: atomic writes, recovery, one owner."""

import errno
import json
import logging
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tinydb import TinyDB

from trading_orders.adapters.storage.tinydb_store import position_snapshots as tinydb_position_store
from trading_orders.adapters.storage.tinydb_store.parts import StoredPositions
from trading_orders.adapters.storage.tinydb_store.position_snapshots import POSITIONS_FILE, TinyDBPositionStore
from trading_orders.application.errors import CorruptStore, StorageUnavailable, StoreInUse
from trading_orders.domain.model import Position

T0 = datetime(2026, 11, 24, 9, 15, 0, 123456, tzinfo=UTC)
ACC = Position("U1", "S", "ACC", "o1", T0)
INFY = Position("U1", "S", "INFY", "o2", T0)
TCS = Position("U2", "T", "TCS", "o3", T0)


def test_positions_and_sequence_round_trip(tmp_path: Path) -> None:
    store = TinyDBPositionStore(tmp_path)
    assert store.load().positions == () and store.load().applied_sequence == 0
    store.save(StoredPositions((ACC, INFY), 1, 120))
    store.save(StoredPositions((INFY, TCS), 2, 240, 2))
    store.close()
    reopened = TinyDBPositionStore(tmp_path)
    assert reopened.load() == StoredPositions((INFY, TCS), 2, 240, 2)
    reopened.close()


def test_a_snapshot_written_before_the_trade_log_mark_loads_with_the_mark_unknown(tmp_path: Path) -> None:
    (tmp_path / POSITIONS_FILE).write_text('{"positions": {}, "meta": {"1": {"applied_sequence": 4, "log_offset": 9}}}')
    store = TinyDBPositionStore(tmp_path)
    assert store.load() == StoredPositions((), 4, 9, trades_through=None)
    store.close()


def test_a_snapshot_is_a_tinydb_database_tinydb_itself_reads(tmp_path: Path) -> None:
    store = TinyDBPositionStore(tmp_path)
    store.save(StoredPositions((ACC, TCS), 9, 4096))
    store.close()
    with TinyDB(tmp_path / POSITIONS_FILE) as database:
        assert [d["instrument"] for d in database.table("positions").all()] == ["ACC", "TCS"]
        assert database.table("meta").all() == [{"applied_sequence": 9, "log_offset": 4096}]


def test_store_survives_a_new_process(tmp_path: Path) -> None:
    store = TinyDBPositionStore(tmp_path)
    store.save(StoredPositions((ACC,), 7))
    store.close()
    script = (
        "import sys; from pathlib import Path\n"
        "from trading_orders.adapters.storage.tinydb_store.position_snapshots import TinyDBPositionStore\n"
        "s = TinyDBPositionStore(Path(sys.argv[1])); stored = s.load()\n"
        "print(stored.applied_sequence, [(p.user, p.instrument, p.order_id, p.opened_at.isoformat()) "
        "for p in stored.positions])\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == f"7 [('U1', 'ACC', 'o1', '{T0.isoformat()}')]"


def test_a_torn_temporary_file_from_a_cut_write_is_ignored_and_removed(tmp_path: Path) -> None:
    store = TinyDBPositionStore(tmp_path)
    store.save(StoredPositions((ACC,), 1))
    store.close()
    torn = tmp_path / f".{POSITIONS_FILE}.abc123.tmp"
    torn.write_text('{"positions": {"1": {"user": "U1", "stra')
    reopened = TinyDBPositionStore(tmp_path)
    assert reopened.load().positions == (ACC,)
    assert not torn.exists()
    reopened.close()


def test_a_failed_write_keeps_the_previous_content_in_memory_and_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TinyDBPositionStore(tmp_path)
    store.save(StoredPositions((ACC,), 1))
    before = (tmp_path / POSITIONS_FILE).read_bytes()

    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tinydb_position_store, "write_atomically", disk_full)
    with pytest.raises(StorageUnavailable, match="No space left on device"):
        store.save(StoredPositions((INFY,), 2))
    assert (tmp_path / POSITIONS_FILE).read_bytes() == before
    assert store.load() == StoredPositions((ACC,), 1)
    monkeypatch.undo()
    store.save(StoredPositions((ACC, TCS), 2))
    assert store.load() == StoredPositions((ACC, TCS), 2)
    store.close()


def test_a_damaged_file_is_named_with_its_byte_offset_by_a_reader_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / POSITIONS_FILE
    path.write_text('{"positions": {"1": {"user": "U1",,}}}')
    with pytest.raises(CorruptStore, match=rf"{path}: not valid JSON at byte 34"):
        TinyDBPositionStore(tmp_path, read_only=True)
    assert path.read_text() == '{"positions": {"1": {"user": "U1",,}}}'


@pytest.mark.parametrize(
    ("damaged", "says"),
    [
        ('{"positions": {"1": {"user": "U1",,}}}', "not valid JSON at byte 34"),
        (json.dumps({"positions": {"4": {"user": "U1"}}}), "position document 4 is not a valid position"),
    ],
)
def test_a_writer_sets_a_damaged_snapshot_aside_and_starts_empty_saying_why(
    tmp_path: Path, damaged: str, says: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The snapshot is derived from the order log: the store rebuilds it by a replay of the whole log.
    path = tmp_path / POSITIONS_FILE
    path.write_text(damaged)
    with caplog.at_level(logging.WARNING):
        store = TinyDBPositionStore(tmp_path)
    assert store.load() == StoredPositions((), 0, None)
    store.close()
    assert (tmp_path / f"{POSITIONS_FILE}.damaged").read_text() == damaged
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert says in warning and "set aside as positions.json.damaged" in warning


def test_a_second_owner_is_refused_while_the_first_holds_the_store(tmp_path: Path) -> None:
    store = TinyDBPositionStore(tmp_path)
    script = (
        "import sys; from pathlib import Path\n"
        "from trading_orders.adapters.storage.tinydb_store.position_snapshots import TinyDBPositionStore\n"
        "TinyDBPositionStore(Path(sys.argv[1]))\n"
    )
    other = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True)
    assert other.returncode != 0
    assert StoreInUse.__name__ in other.stderr and "in use by another process" in other.stderr
    store.close()
    assert subprocess.run([sys.executable, "-c", script, str(tmp_path)]).returncode == 0
