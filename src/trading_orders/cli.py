"""The trading-orders command line: `python -m trading_orders <command>`."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import get_args

import uvicorn

from trading_orders.adapters.storage.jsonl_order_log import ORDER_LOG_FILE, JsonLinesOrderLog
from trading_orders.adapters.storage.tinydb_position_store import POSITIONS_FILE, TinyDBPositionStore
from trading_orders.application.errors import StartupError
from trading_orders.application.verification import verify
from trading_orders.bootstrap import create_app_or_exit
from trading_orders.domain.model import PositionScope
from trading_orders.settings import Settings, StoreName


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


def run_serve(settings: Settings, host: str, port: int) -> int:
    """Serve until SIGTERM or SIGINT, drain the orders in flight, close the stores, and return 0."""
    app = create_app_or_exit(settings)
    stopped_by: list[int] = []

    def note_stop(signal_number: int, frame: FrameType | None) -> None:
        stopped_by.append(signal_number)

    # uvicorn swaps in its own handlers while it serves and, once it has shut
    # down gracefully, restores these and re-raises the signal into them. Our
    # handler takes it as the planned stop it is, so the exit status is 0
    # rather than "killed by SIGTERM".
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, note_stop)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port)).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="trading-orders", description="The trading-orders service's tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the service; SIGTERM drains it and exits 0")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    serve.add_argument("--store", choices=get_args(StoreName), help="default: TRADING_ORDERS_STORE or tinydb")
    serve.add_argument("--scope", choices=[s.value for s in PositionScope], help="default: the configured scope")
    check = commands.add_parser("verify", help="check that the position store and the order log agree")
    check.add_argument("--data-dir", type=Path, help="default: TRADING_ORDERS_DATA_DIR or ./Jsons")
    check.add_argument("--scope", choices=[s.value for s in PositionScope], help="default: the configured scope")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_environment(Path.cwd())
    except StartupError as error:
        parser.error(str(error))
    if args.command == "serve":
        overrides = {"store": args.store, "position_scope": PositionScope(args.scope) if args.scope else None}
        chosen = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
        return run_serve(chosen, args.host, args.port)
    data_dir: Path = args.data_dir or settings.data_dir
    if not data_dir.is_dir():
        print(f"cannot verify: {data_dir} is not a directory", file=sys.stderr)
        return 2
    return run_verify(data_dir, PositionScope(args.scope) if args.scope else settings.position_scope)
