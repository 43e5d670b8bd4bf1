"""`python -m trading_orders verify` on real files: agree, behind, differ, damaged."""

import json
import logging
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_storage_faults import WITHOUT_PERMISSION_OVERRIDE
from tests.integration.tinydb_over_memory import MANUAL_CHECKPOINTS, service_over
from tests.service.fakes import place
from trading_orders import cli
from trading_orders.adapters.storage.tinydb_store.order_index import INDEX_FILE
from trading_orders.adapters.storage.tinydb_store.order_log import ORDER_LOG_FILE, JsonLinesOrderLog
from trading_orders.adapters.storage.tinydb_store.position_snapshots import POSITIONS_FILE, TinyDBPositionStore
from trading_orders.adapters.storage.tinydb_store.resources import open_tinydb_store
from trading_orders.adapters.storage.tinydb_store.trade_log import TRADE_LOG_FILE, JsonLinesTradeLog
from trading_orders.domain.model import Order, PositionScope, Side, Trade

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


# Three round trips: the trade log holds one line per SELL, at orders 2, 4 and 6.
ROUND_TRIPS = [(instrument, side) for instrument in ("ACC", "INFY", "TCS") for side in (Side.BUY, Side.SELL)]


Verified = tuple[int, str]


@pytest.fixture
def verify_here(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[[Path], Verified]:
    """`verify` run in this process, so no interpreter starts: its exit status and what it printed."""
    for name in ("TRADING_ORDERS_STORE", "TRADING_ORDERS_DATA_DIR", "TRADING_ORDERS_POSITION_SCOPE"):
        monkeypatch.delenv(name, raising=False)

    def run(directory: Path) -> Verified:
        status = cli.main(["verify", "--data-dir", str(directory)])
        return status, capsys.readouterr().out

    return run


def trade_lines(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (directory / TRADE_LOG_FILE).read_text().splitlines()]


def write_trade_lines(directory: Path, lines: list[dict[str, Any]]) -> None:
    (directory / TRADE_LOG_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))


def as_written_before_lines_named_their_predecessor(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in line.items() if key != "after"} for line in lines]


def start_up(directory: Path) -> list[Trade]:
    """Open the store over ``directory`` as the service starts it, and list its trades, newest first."""
    with contextmanager(open_tinydb_store)(directory, PositionScope.STRATEGY, MANUAL_CHECKPOINTS) as store:
        store.recover()
        return [trade for _, trade in store.trade_log.newest_first()]


def test_each_trade_line_names_the_sell_of_the_line_before_it(tmp_path: Path) -> None:
    record_orders(tmp_path, ROUND_TRIPS)
    assert [(line["after"], line["sequence"]) for line in trade_lines(tmp_path)] == [(0, 2), (2, 4), (4, 6)]


def test_a_trade_line_lost_from_the_middle_is_reported_by_verify_then_rebuilt_at_start_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, verify_here: Callable[[Path], Verified]
) -> None:
    record_orders(tmp_path, ROUND_TRIPS)
    every_trade = start_up(tmp_path)
    lines = trade_lines(tmp_path)
    write_trade_lines(tmp_path, [lines[0], lines[2]])  # whole lines, still reaching the snapshot's mark
    kept = (tmp_path / TRADE_LOG_FILE).read_bytes()

    status, out = verify_here(tmp_path)
    assert status == 3, out
    lost = "it was written after the trades of order 4, but the line before holds order 2: the lines between were lost"
    assert f"DAMAGED: {tmp_path / TRADE_LOG_FILE}: line 2 (byte" in out and lost in out, out
    assert "start-up sets it aside and rebuilds it from the order log" in out

    with caplog.at_level(logging.WARNING):
        assert start_up(tmp_path) == every_trade, "every trade is listed again, the lost SELL's too"
    (warning,) = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert f"{tmp_path / TRADE_LOG_FILE} is damaged (" in warning and lost in warning, warning
    assert "rebuilding it from the whole order log" in warning
    assert (tmp_path / f"{TRADE_LOG_FILE}.damaged").read_bytes() == kept, "the damaged file is set aside"
    assert [line["sequence"] for line in trade_lines(tmp_path)] == [2, 4, 6]
    assert verify_here(tmp_path)[0] == 0


@pytest.mark.parametrize(("field", "value"), [("user", "U9"), ("sold_at", "2030-01-01T00:00:00+00:00")])
def test_an_edited_trade_is_damage_only_verify_finds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, verify_here: Callable[[Path], Verified], field: str, value: str
) -> None:
    record_orders(tmp_path, ROUND_TRIPS)
    every_trade = start_up(tmp_path)
    lines = trade_lines(tmp_path)
    lines[1]["trades"][0][field] = value
    write_trade_lines(tmp_path, lines)

    status, out = verify_here(tmp_path)
    assert status == 3, out
    assert f"DAMAGED: {tmp_path / TRADE_LOG_FILE}: its trades of order 4 differ from the order log's" in out
    assert "start-up does not see this: move the file away, and start-up rebuilds it" in out

    with caplog.at_level(logging.WARNING):
        start_up(tmp_path)
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING], "every line reads whole"
    (tmp_path / TRADE_LOG_FILE).rename(tmp_path / "trades.jsonl.edited")
    assert start_up(tmp_path) == every_trade, "moved away, the trade log is rebuilt from the order log"
    assert verify_here(tmp_path)[0] == 0


@pytest.mark.parametrize("old", [3, 2], ids=["every line old", "old lines, then a new one"])
def test_a_trade_log_written_before_lines_named_their_predecessor_still_opens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, verify_here: Callable[[Path], Verified], old: int
) -> None:
    record_orders(tmp_path, ROUND_TRIPS)
    every_trade = start_up(tmp_path)
    lines = trade_lines(tmp_path)
    write_trade_lines(tmp_path, as_written_before_lines_named_their_predecessor(lines[:old]) + lines[old:])

    with caplog.at_level(logging.WARNING):
        assert start_up(tmp_path) == every_trade
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING], "nothing set aside"
    assert not (tmp_path / f"{TRADE_LOG_FILE}.damaged").exists()
    status, out = verify_here(tmp_path)
    assert status == 0, out


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (
            lambda lines: [lines[0], lines[2]],
            "it lacks the trades of order 4, a SELL in the order log: a line was lost",
        ),
        (
            lambda lines: [lines[0], {**lines[1], "sequence": 3}, *lines[1:]],
            "it holds trades of order 3, which made none in the order log",
        ),
    ],
)
def test_a_line_lost_or_added_among_lines_that_name_no_predecessor_is_found_by_verify(
    tmp_path: Path,
    verify_here: Callable[[Path], Verified],
    change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    says: str,
) -> None:
    record_orders(tmp_path, ROUND_TRIPS)
    write_trade_lines(tmp_path, change(as_written_before_lines_named_their_predecessor(trade_lines(tmp_path))))
    status, out = verify_here(tmp_path)
    assert status == 3, out
    assert f"DAMAGED: {tmp_path / TRADE_LOG_FILE}: {says}" in out
    assert "start-up does not see this" in out
