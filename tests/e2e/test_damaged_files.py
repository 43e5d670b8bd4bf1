"""Damaged data files at start-up: what is derived from the order log is rebuilt, the rest refused in one line."""

import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import ServiceFactory, module_service
from tests.support.service_process import ServiceProcess, all_pages

PROFILE = {"U1": {"S1": ["ACC", "INFY", "TCS"]}, "U2": {"S1": ["ACC"]}}
ORDERS = [("ACC", "BUY"), ("INFY", "BUY"), ("ACC", "SELL"), ("TCS", "BUY"), ("ACC", "BUY")]
Damage = Callable[[Path], None]


def random_bytes(path: Path) -> None:
    """Overwrite the file with 8 KiB of bytes no writer of it would produce."""
    path.write_bytes(random.Random(path.name).randbytes(8192))


def truncated(path: Path) -> None:
    """Cut the file to 8 KiB, or to half its size when it is smaller."""
    size = path.stat().st_size
    os.truncate(path, 8192 if size > 8192 else size // 2)


def a_directory(path: Path) -> None:
    """Put a directory where the file was."""
    path.unlink()
    path.mkdir()


def a_text_offset_in_the_newest_row(path: Path) -> None:
    """Make the index's newest entry point at a byte offset that is text, as a hand edit could."""
    with sqlite3.connect(path) as index:
        index.execute("UPDATE entries SET offset = 'abc' WHERE sequence = (SELECT max(sequence) FROM entries)")
    index.close()


def a_true_applied_sequence(path: Path) -> None:
    """Write ``true`` where the snapshot says which order it applied through."""
    data = json.loads(path.read_text())
    data["meta"]["1"]["applied_sequence"] = True
    path.write_text(json.dumps(data))


def record_orders(
    service_factory: ServiceFactory, orders: list[tuple[str, str]] = ORDERS, first: int = 0
) -> dict[str, Any]:
    """Place ``orders`` (numbered from ``first``) through a real service, stop it, and return what it served."""
    with service_factory(PROFILE) as service:
        return place(service, orders, first)


def place(service: ServiceProcess, orders: list[tuple[str, str]], first: int = 0) -> dict[str, Any]:
    """Place ``orders`` (numbered from ``first``) through the running ``service``; what it then serves."""
    for number, (instrument, side) in enumerate(orders, start=first):
        body = {"STRATEGY": "S1", "INSTRUMENT": instrument, "POSITION": side}
        headers = {"Idempotency-Key": f"key-{number}"}
        requests.post(f"{service.base_url}/create_order", json=body, headers=headers, timeout=5).raise_for_status()
    return served(service)


Recorded = tuple[Path, dict[str, Any]]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """ORDERS placed once through a real service, then stopped: its data directory and what it served.

    Each test damages a copy of it: one service run for the module, not one per test.
    """
    service = module_service(tmp_path_factory, "recorded", PROFILE)
    with service:
        before = place(service, ORDERS)
    return Path(service.environment["TRADING_ORDERS_DATA_DIR"]), before


def copy_of(recorded: Recorded, data_dir: Path) -> dict[str, Any]:
    """Copy the recorded data directory into ``data_dir``; what the service served over it."""
    shutil.copytree(recorded[0], data_dir, dirs_exist_ok=True)
    return recorded[1]


def served(service: ServiceProcess) -> dict[str, Any]:
    orders = all_pages(service.base_url, "orders")
    return {
        "orders": orders,
        "each": [requests.get(f"{service.base_url}/orders/{o['order_id']}", timeout=5).json() for o in orders],
        "positions": requests.get(f"{service.base_url}/positions", timeout=5).json(),
        "trades": all_pages(service.base_url, "trades"),
    }


def verify(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trading_orders", "verify", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
    )


def warnings_in(service: ServiceProcess) -> list[str]:
    return [line for line in service.output().splitlines() if " WARNING " in line]


@pytest.mark.parametrize(
    ("file_name", "damage", "says"),
    [
        ("order_index.sqlite3", random_bytes, "file is not a database"),
        ("order_index.sqlite3", truncated, "database disk image is malformed"),
        ("positions.json", random_bytes, "not valid JSON at byte"),
        ("positions.json", truncated, "not valid JSON at byte"),
        ("trades.jsonl", random_bytes, "the last line (byte"),
        # Cut inside the SELL's line, before the snapshot: a torn last line, yet no crash's leftover.
        (
            "trades.jsonl",
            truncated,
            "it holds the trades of SELLs up to order 0, but the position snapshot found them up to order 3",
        ),
    ],
)
def test_a_damaged_derived_file_is_reported_by_verify_then_rebuilt_from_the_log_with_one_warning(
    service_factory: ServiceFactory, recorded: Recorded, data_dir: Path, file_name: str, damage: Damage, says: str
) -> None:
    before = copy_of(recorded, data_dir)
    damaged = data_dir / file_name
    damage(damaged)
    kept = damaged.read_bytes()

    checked = verify(data_dir)
    assert checked.returncode == 3, checked.stdout + checked.stderr
    assert f"DAMAGED: {damaged}: {says}" in checked.stdout
    assert "start-up sets it aside and rebuilds it from the order log" in checked.stdout

    with service_factory(PROFILE) as restarted:
        (warning,) = warnings_in(restarted)
        assert str(damaged) in warning and says in warning and "rebuil" in warning, warning
        assert served(restarted) == before, "every order, position and trade reads back as before"
    assert (data_dir / f"{file_name}.damaged").read_bytes() == kept, "the damaged file is set aside, not lost"
    rechecked = verify(data_dir)
    assert rechecked.returncode == 0, rechecked.stdout + rechecked.stderr


@pytest.mark.parametrize(
    ("file_name", "damage", "serves"),
    [
        ("order_log.jsonl", random_bytes, False),
        ("order_log.jsonl", truncated, False),  # the snapshot applied orders the log no longer holds
        ("order_log.jsonl", a_directory, False),
        ("trades.jsonl", random_bytes, True),
        ("trades.jsonl", truncated, True),
        ("trades.jsonl", a_directory, False),
        ("trades.jsonl", Path.unlink, True),
        ("positions.json", random_bytes, True),
        ("positions.json", truncated, True),
        ("positions.json", a_directory, False),
        ("positions.json", a_true_applied_sequence, True),
        ("order_index.sqlite3", random_bytes, True),
        ("order_index.sqlite3", truncated, True),
        ("order_index.sqlite3", a_directory, False),
        ("order_index.sqlite3", a_text_offset_in_the_newest_row, True),
    ],
)
def test_start_up_over_a_damaged_file_serves_or_refuses_in_one_line_never_a_traceback(
    service_factory: ServiceFactory, recorded: Recorded, data_dir: Path, file_name: str, damage: Damage, serves: bool
) -> None:
    copy_of(recorded, data_dir)
    damage(data_dir / file_name)
    service = service_factory(PROFILE)
    if serves:
        with service:
            assert requests.get(f"{service.base_url}/health", timeout=5).status_code == 200
    else:
        with pytest.raises(RuntimeError, match="exited with 1"):
            service.start()
        (line,) = [line for line in service.output().splitlines() if "cannot start" in line]
        assert f"{data_dir / file_name}" in line, line
    assert "Traceback" not in service.output()


def test_an_index_ahead_of_the_log_says_the_log_lost_entries_and_start_up_refuses_it(
    service_factory: ServiceFactory, recorded: Recorded, data_dir: Path
) -> None:
    copy_of(recorded, data_dir)
    log, index = data_dir / "order_log.jsonl", data_dir / "order_index.sqlite3"
    log.write_bytes(b"".join(log.read_bytes().splitlines(keepends=True)[:3]))
    (data_dir / "positions.json").unlink()  # no snapshot to say so: only the index knows of orders 4 and 5
    kept = log.read_bytes()

    checked = verify(data_dir)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"DIFFERS: {index} indexes order-log entry 5 but the order log ends at 3" in checked.stdout

    service = service_factory(PROFILE)
    with pytest.raises(RuntimeError, match="exited with 1"):
        service.start()
    (line,) = [line for line in service.output().splitlines() if "cannot start" in line]
    assert f"{index} indexes order-log entry 5 at byte" in line and f"{log} ends at sequence 3" in line, line
    assert "Traceback" not in service.output()
    assert log.read_bytes() == kept and index.exists(), "nothing is rebuilt over the loss"


def test_trades_lost_beside_a_snapshot_older_than_the_mark_are_written_again_from_the_whole_log(
    service_factory: ServiceFactory, recorded: Recorded, data_dir: Path
) -> None:
    before = copy_of(recorded, data_dir)
    snapshot = data_dir / "positions.json"
    data = json.loads(snapshot.read_text())
    del data["meta"]["1"]["trades_through"]  # as written before the trade log's mark was recorded
    snapshot.write_text(json.dumps(data))
    truncated(data_dir / "trades.jsonl")

    with service_factory(PROFILE) as restarted:
        assert served(restarted) == before, "every trade reads back, the SELL's included"
    assert json.loads(snapshot.read_text())["meta"]["1"]["trades_through"] == 3, "the next snapshot has the mark"
    assert verify(data_dir).returncode == 0


def test_a_damaged_log_line_the_index_covers_refuses_start_up_in_one_line_naming_it(
    service_factory: ServiceFactory, data_dir: Path
) -> None:
    snapshot = data_dir / "positions.json"
    record_orders(service_factory, ORDERS[:2])
    older = snapshot.read_bytes()
    record_orders(service_factory, ORDERS[2:], first=2)
    snapshot.write_bytes(older)  # a snapshot at order 2, the index through order 5: a failed snapshot's leftover
    log = data_dir / "order_log.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    lines[3] = b"x" * (len(lines[3]) - 1) + b"\n"  # the same length: the index still matches the log's end
    log.write_bytes(b"".join(lines))

    service = service_factory(PROFILE)
    with pytest.raises(RuntimeError, match="exited with 1"):
        service.start()
    (line,) = [line for line in service.output().splitlines() if "cannot start" in line]
    byte = len(b"".join(lines[:3]))
    assert f"order-log entry 4 cannot be read: {log}, line 4 (byte {byte}), is damaged" in line, line
    assert "Traceback" not in service.output()


def test_a_deleted_trade_log_is_rebuilt_from_the_whole_log_with_one_warning(
    service_factory: ServiceFactory, recorded: Recorded, data_dir: Path
) -> None:
    before = copy_of(recorded, data_dir)
    (data_dir / "trades.jsonl").unlink()

    with service_factory(PROFILE) as restarted:
        (warning,) = warnings_in(restarted)
        assert "trades.jsonl: it is missing, but the position snapshot found the trades" in warning, warning
        assert served(restarted) == before, "the SELL's trades read back"
    assert verify(data_dir).returncode == 0


def test_a_torn_last_line_the_index_vouched_for_is_kept_and_start_up_refuses(
    service_factory: ServiceFactory, recorded: Recorded, data_dir: Path
) -> None:
    copy_of(recorded, data_dir)
    log, index = data_dir / "order_log.jsonl", data_dir / "order_index.sqlite3"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]) + lines[-1][:40])  # order 5 was answered: no crash tore its line
    kept = log.read_bytes()

    service = service_factory(PROFILE)
    with pytest.raises(RuntimeError, match="exited with 1"):
        service.start()
    (line,) = [line for line in service.output().splitlines() if "cannot start" in line]
    assert (
        f"{index} indexes order-log entry 5" in line and "ends at sequence 4 and 40 bytes of a line cut short" in line
    )
    assert "dropped a torn last line" not in service.output()
    assert log.read_bytes() == kept, "the source of truth is left as it was found"


def test_a_trade_line_lost_from_the_middle_is_reported_by_verify_then_rebuilt_with_one_warning(
    service_factory: ServiceFactory, data_dir: Path
) -> None:
    round_trips = [(instrument, side) for instrument in ("ACC", "INFY", "TCS") for side in ("BUY", "SELL")]
    before = record_orders(service_factory, round_trips)
    trades = data_dir / "trades.jsonl"
    lines = trades.read_bytes().splitlines(keepends=True)
    trades.write_bytes(lines[0] + lines[2])  # every line left whole, and the last still the snapshot's mark
    lost = "it was written after the trades of order 4, but the line before holds order 2: the lines between were lost"

    checked = verify(data_dir)
    assert checked.returncode == 3, checked.stdout + checked.stderr
    assert f"DAMAGED: {trades}: line 2 (byte {len(lines[0])}) is not a valid trade-log line ({lost})" in checked.stdout

    with service_factory(PROFILE) as restarted:
        (warning,) = warnings_in(restarted)
        assert f"{trades} is damaged (" in warning and lost in warning and "rebuilding it" in warning, warning
        assert served(restarted) == before, "/trades lists every trade again, the lost SELL's too"
    assert (data_dir / "trades.jsonl.damaged").read_bytes() == lines[0] + lines[2]
    rechecked = verify(data_dir)
    assert rechecked.returncode == 0, rechecked.stdout + rechecked.stderr
