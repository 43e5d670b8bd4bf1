"""`python -m trading_orders verify` on real files: agree, behind, differ, damaged."""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_storage_faults import WITHOUT_PERMISSION_OVERRIDE
from tests.integration.tinydb_over_memory import service_over
from tests.service.fakes import place
from trading_orders.adapters.storage.tinydb_store.order_index import INDEX_FILE
from trading_orders.adapters.storage.tinydb_store.order_log import ORDER_LOG_FILE, JsonLinesOrderLog
from trading_orders.adapters.storage.tinydb_store.position_snapshots import POSITIONS_FILE, TinyDBPositionStore
from trading_orders.adapters.storage.tinydb_store.trade_log import TRADE_LOG_FILE, JsonLinesTradeLog
from trading_orders.domain.model import Order, Side

PROFILE = {"U1": {"S": ["ACC", "INFY", "TCS"]}}


def record_orders(directory: Path, orders: list[tuple[str, Side]]) -> None:
    store, log, trades = TinyDBPositionStore(directory), JsonLinesOrderLog(directory), JsonLinesTradeLog(directory)
    service, tinydb = service_over(PROFILE, store, log, trades)
    service.start()
    for instrument, side in orders:
        place(service, Order("S", instrument, side))
    tinydb.close()  # the last checkpoint: positions.json applied through the last order
    for opened in (store, log, trades):
        opened.close()


def run_verify(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trading_orders", "verify", "--data-dir", str(directory)],
        capture_output=True,
        text=True,
    )


def test_files_that_agree_verify_ok(tmp_path: Path) -> None:
    record_orders(tmp_path, [("ACC", Side.BUY), ("INFY", Side.BUY), ("ACC", Side.SELL)])
    result = run_verify(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 orders" in result.stdout and "1 open positions, applied through sequence 3" in result.stdout
    assert result.stdout.rstrip().endswith("OK: positions and order log agree")


def test_a_store_behind_the_log_is_a_note_not_a_difference(tmp_path: Path) -> None:
    record_orders(tmp_path, [("ACC", Side.BUY)])
    snapshot = (tmp_path / POSITIONS_FILE).read_bytes()
    record_orders(tmp_path, [("INFY", Side.BUY)])
    (tmp_path / POSITIONS_FILE).write_bytes(snapshot)
    with (tmp_path / ORDER_LOG_FILE).open("ab") as handle:
        handle.write(b'{"sequence": 3, "ord')
    result = run_verify(tmp_path)
    assert result.returncode == 0
    assert "note: the position store is 1 order(s) behind the log; start-up replays them" in result.stdout
    assert "note: the log ends in a torn line of 20 bytes; start-up drops it" in result.stdout


def test_a_hand_edited_store_is_reported_position_by_position(tmp_path: Path) -> None:
    record_orders(tmp_path, [("ACC", Side.BUY), ("INFY", Side.BUY)])
    data = json.loads((tmp_path / POSITIONS_FILE).read_text())
    removed_id, removed = next(iter(data["positions"].items()))
    del data["positions"][removed_id]
    data["positions"]["99"] = {**removed, "instrument": "TCS", "order_id": "forged"}
    (tmp_path / POSITIONS_FILE).write_text(json.dumps(data))
    result = run_verify(tmp_path)
    assert result.returncode == 1
    assert "DIFFERS: missing from the position store: U1 S/ACC (order o1)" in result.stdout
    assert "DIFFERS: in the position store but not in the log: U1 S/TCS (order forged)" in result.stdout
    assert result.stdout.rstrip().endswith("2 difference(s)")


def test_a_damaged_log_cannot_be_verified_and_says_where_and_which_sequence(tmp_path: Path) -> None:
    record_orders(tmp_path, [("ACC", Side.BUY), ("INFY", Side.BUY), ("TCS", Side.BUY)])
    path = tmp_path / ORDER_LOG_FILE
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + b"garbage\n" + lines[2])
    result = run_verify(tmp_path)
    assert result.returncode == 2
    says = f"cannot verify: {path}: line 2 (byte {len(lines[0])}), sequence 2, is not a valid order-log entry"
    assert says in result.stderr


def test_an_index_pointing_elsewhere_than_the_log_is_damaged_and_rebuilt_at_start_up(tmp_path: Path) -> None:
    record_orders(tmp_path, [("ACC", Side.BUY), ("INFY", Side.BUY)])
    with sqlite3.connect(tmp_path / INDEX_FILE) as index:
        index.execute("UPDATE entries SET offset = offset + 1 WHERE sequence = 2")
    index.close()
    result = run_verify(tmp_path)
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"DAMAGED: {tmp_path / INDEX_FILE}: it has entry #2 at byte" in result.stdout
    assert "OK" not in result.stdout
    JsonLinesOrderLog(tmp_path).close()  # start-up's opening of the log rebuilds the index
    assert run_verify(tmp_path).returncode == 0


def test_a_damaged_snapshot_is_reported_and_the_log_still_checked(tmp_path: Path) -> None:
    record_orders(tmp_path, [("ACC", Side.BUY)])
    (tmp_path / POSITIONS_FILE).write_text('{"positions": [1, 2]}')
    result = run_verify(tmp_path)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "1 orders" in result.stdout
    assert f"DAMAGED: {tmp_path / POSITIONS_FILE}: table 'positions' is not an object of documents" in result.stdout


@pytest.mark.parametrize("file_name", [ORDER_LOG_FILE, TRADE_LOG_FILE, POSITIONS_FILE])
def test_a_file_verify_may_not_read_is_one_line_not_a_traceback(tmp_path: Path, file_name: str) -> None:
    record_orders(tmp_path, [("ACC", Side.BUY), ("ACC", Side.SELL)])
    unreadable = tmp_path / file_name
    unreadable.chmod(0)
    try:
        result = subprocess.run(
            [
                *WITHOUT_PERMISSION_OVERRIDE,
                sys.executable,
                "-m",
                "trading_orders",
                "verify",
                "--data-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
        )
    finally:
        unreadable.chmod(0o644)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [f"cannot verify: cannot read {unreadable}: Permission denied"]
