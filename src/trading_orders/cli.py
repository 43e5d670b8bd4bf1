"""The trading-orders command line: `python -m trading_orders <command>`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from trading_orders.adapters.storage.jsonl_order_log import ORDER_LOG_FILE, JsonLinesOrderLog
from trading_orders.adapters.storage.tinydb_position_store import POSITIONS_FILE, TinyDBPositionStore
from trading_orders.application.errors import StartupError
from trading_orders.application.verification import verify
from trading_orders.domain.model import PositionScope
from trading_orders.settings import Settings


def run_verify(data_dir: Path, scope: PositionScope) -> int:
    """Check that positions.json and order_log.jsonl in ``data_dir`` agree; 0 agree, 1 differ, 2 unreadable."""
    try:
        order_log = JsonLinesOrderLog(data_dir, read_only=True)
        store = TinyDBPositionStore(data_dir, read_only=True)
        stored = store.load()
        report = verify(stored, order_log, scope)
    except StartupError as error:
        print(f"cannot verify: {error}", file=sys.stderr)
        return 2
    print(
        f"{data_dir / ORDER_LOG_FILE}: {report.orders_in_log} orders\n"
        f"{data_dir / POSITIONS_FILE}: {report.open_positions} open positions, "
        f"applied through sequence {report.applied_sequence}"
    )
    if order_log.torn_tail:
        print(f"note: the log ends in a torn line of {order_log.torn_tail} bytes; start-up drops it")
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.problems:
        print(f"DIFFERS: {problem}")
    print("OK: positions and order log agree" if report.agree else f"{len(report.problems)} difference(s)")
    return 0 if report.agree else 1


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="trading-orders", description="The trading-orders service's tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("verify", help="check that the position store and the order log agree")
    check.add_argument("--data-dir", type=Path, help="default: TRADING_ORDERS_DATA_DIR or ./Jsons")
    check.add_argument("--scope", choices=[s.value for s in PositionScope], help="default: the configured scope")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_environment(Path.cwd())
    except StartupError as error:
        parser.error(str(error))
    data_dir: Path = args.data_dir or settings.data_dir
    if not data_dir.is_dir():
        print(f"cannot verify: {data_dir} is not a directory ({os.strerror(2)})", file=sys.stderr)
        return 2
    return run_verify(data_dir, PositionScope(args.scope) if args.scope else settings.position_scope)
