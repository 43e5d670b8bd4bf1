"""The trading-orders command line: `python -m trading_orders <command>`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import get_args

from trading_orders.application.errors import StartupError, StorageUnavailable
from trading_orders.ascii_numbers import ascii_number
from trading_orders.domain.model import PositionScope
from trading_orders.settings import Settings, StoreName

# Each command imports what only it needs, in the function that runs it: a
# command line process imports everything again on every run, and a read of
# positions need not pay for the service's web framework, stores and server.


def run_verify(settings: Settings) -> int:
    """Check that the TinyDB store's positions and order log agree; 0 agree, 1 differ, 2 unreadable, 3 damaged."""
    from rich.progress import Progress

    from trading_orders.bootstrap import build_container

    container = build_container(settings)
    try:
        with Progress(transient=True) as progress:
            task = progress.add_task("replaying the order log")
            checked = container.verification(
                replayed=lambda sequence, last: progress.update(task, completed=sequence, total=last)
            )
    except StartupError as error:
        print(f"cannot verify: {error}", file=sys.stderr)
        return 2
    report = checked.report
    damaged = dict(checked.damaged)
    print(f"{checked.order_log_path}: {report.orders_in_log} orders")
    if checked.positions_path not in damaged:
        print(
            f"{checked.positions_path}: {report.open_positions} open positions, "
            f"applied through sequence {report.applied_sequence}"
        )
    if checked.torn_tail:
        print(f"note: the log ends in a torn line of {checked.torn_tail} bytes; start-up drops it")
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.problems:
        print(f"DIFFERS: {problem}")
    for path, why in checked.damaged:
        print(f"DAMAGED: {path}: {why}; start-up sets it aside and rebuilds it from the order log")
    if not report.agree:
        print(f"{len(report.problems)} difference(s)")
        return 1
    if damaged:
        print(f"{len(damaged)} damaged file(s) derived from the order log")
        return 3
    print("OK: positions and order log agree")
    return 0


def run_serve(settings: Settings, host: str, port: int) -> int:
    """Serve until SIGTERM or SIGINT, drain the orders in flight, close the stores, and return 0."""
    import uvicorn

    from trading_orders.bootstrap import create_app_or_exit

    app = create_app_or_exit(settings, host)
    stopped_by: list[int] = []

    def note_stop(signal_number: int, frame: FrameType | None) -> None:
        stopped_by.append(signal_number)

    # uvicorn swaps in its own handlers while it serves and, once it has shut
    # down gracefully, restores these and re-raises the signal into them. Our
    # handler takes it as the planned stop it is, so the exit status is 0
    # rather than "killed by SIGTERM".
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, note_stop)
    # log_config None: uvicorn's lines go through the logging configure_logging set up, not its own.
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None)).run()
    return 0


DEFAULT_URL = "http://127.0.0.1:8080"
# The read commands, tools.desk_client's COLUMNS.
READS = {
    "positions": "open positions of a running service",
    "orders": "the order log of a running service, newest first",
    "trades": "closed trades of a running service, newest first",
}
PASS_THROUGH = {
    "generate-profiles": "generate Jsons/user_profile.json (the brief's generator; see its --help)",
    "produce": "send random orders to a running service (the brief's producer; see its --help)",
}


def _sequence(text: str) -> int:
    number = ascii_number(text)
    if number is None:
        raise argparse.ArgumentTypeError(f"expected a sequence, a whole number of ASCII digits: {text!r}")
    return number


def _add_history_filters(command: argparse.ArgumentParser, with_status: bool) -> None:
    for name in ("strategy", "instrument", "user"):
        command.add_argument(f"--{name}")
    command.add_argument("--since", help="ISO-8601")
    command.add_argument("--until", help="ISO-8601")
    command.add_argument("--limit", type=int, default=100, help="1-1000 (default 100)")
    if with_status:
        command.add_argument("--status", choices=["ACCEPTED", "REJECTED"])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trading-orders", description="The trading-orders service and its tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the service; SIGTERM drains it and exits 0")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    serve.add_argument("--store", choices=get_args(StoreName), help="default: TRADING_ORDERS_STORE or tinydb")
    serve.add_argument("--scope", choices=[s.value for s in PositionScope], help="default: the configured scope")
    for name, text in PASS_THROUGH.items():
        commands.add_parser(name, help=text, add_help=False)
    for what, text in READS.items():
        read = commands.add_parser(what, help=text)
        read.add_argument("--url", default=DEFAULT_URL, help=f"the service (default {DEFAULT_URL})")
        read.add_argument("--json", action="store_true", help="one JSON object per line, for machines")
        if what == "positions":
            for name in ("user", "strategy", "instrument"):
                read.add_argument(f"--{name}")
        else:
            _add_history_filters(read, with_status=what == "orders")
    follow = commands.add_parser(
        "follow", help="print a running service's decisions as they are logged; with --state, resume after a stop"
    )
    follow.add_argument("--url", default=DEFAULT_URL, help=f"the service (default {DEFAULT_URL})")
    follow.add_argument("--json", action="store_true", help="one JSON object per line, for machines")
    follow.add_argument(
        "--after", type=_sequence, help="start after this sequence (0: the whole log; default: from now on)"
    )
    follow.add_argument(
        "--state", type=Path, help="keep the last sequence handled in this file and resume after it (wins over --after)"
    )
    for name in ("strategy", "instrument", "user"):
        follow.add_argument(f"--{name}")
    follow.add_argument("--status", choices=["ACCEPTED", "REJECTED"])
    check = commands.add_parser("verify", help="check that the position store and the order log agree")
    check.add_argument("--data-dir", type=Path, help="default: TRADING_ORDERS_DATA_DIR or ./Jsons")
    check.add_argument("--scope", choices=[s.value for s in PositionScope], help="default: the configured scope")
    export = commands.add_parser("export", help="write the configured store's order log and positions as JSON lines")
    export.add_argument("output", type=Path)
    export.add_argument("--data-dir", type=Path, help="default: TRADING_ORDERS_DATA_DIR or ./Jsons")
    load = commands.add_parser("import", help="load an export into an empty store (TRADING_ORDERS_STORE)")
    load.add_argument("source", type=Path)
    load.add_argument("--data-dir", type=Path, help="tinydb: a new or empty directory; sqlite: where its file goes")
    load.add_argument("--scope", choices=[s.value for s in PositionScope], help="default: the configured scope")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the command; returns the exit status."""
    arguments = sys.argv[1:] if argv is None else argv
    if arguments and arguments[0] in PASS_THROUGH:
        return _run_tool(arguments[0], arguments[1:])
    args = _parser().parse_args(arguments)
    try:
        settings = Settings.from_environment(Path.cwd())
    except StartupError as error:
        print(f"trading-orders: {error}", file=sys.stderr)
        return 2
    scope = PositionScope(args.scope) if getattr(args, "scope", None) else settings.position_scope
    if args.command == "serve":
        overrides = {"store": args.store, "position_scope": scope}
        return run_serve(settings.model_copy(update={k: v for k, v in overrides.items() if v}), args.host, args.port)
    if args.command in READS:
        return _run_read(args, settings.api_key)
    if args.command == "follow":
        from trading_orders.tools.decision_follower import DecisionFollower, ResumeState

        filters = {name: getattr(args, name) for name in ("strategy", "instrument", "user", "status")}
        follower = DecisionFollower(
            url=args.url,
            filters={name: value for name, value in filters.items() if value is not None},
            api_key=settings.api_key,
            as_json=args.json,
            out=sys.stdout,
            state=ResumeState(args.state) if args.state is not None else None,
        )
        return follower.run(args.after)
    data_dir: Path = args.data_dir or settings.data_dir
    chosen = settings.model_copy(update={"data_dir": data_dir, "position_scope": scope})
    from trading_orders.tools.transfer import TransferError

    try:
        if args.command == "export":
            orders, positions = run_export(chosen, args.output)
            print(f"exported {orders} orders and {positions} open positions ({chosen.store}) to {args.output}")
            return 0
        if args.command == "import":
            orders, positions = run_import(chosen, args.source)
            print(f"imported {orders} orders ({chosen.store}): {positions} open positions, trades rebuilt")
            return 0
    except (TransferError, StartupError, StorageUnavailable, OSError) as error:
        print(f"trading-orders {args.command}: {error}", file=sys.stderr)
        return 1
    if chosen.store != "tinydb":
        # Their positions and order log change in one database transaction; a
        # TinyDB check of their data directory would find no files and say OK.
        print(
            f"cannot verify: verify checks the TinyDB store's files; the configured store is {chosen.store}, "
            "whose positions change with its order log in one transaction",
            file=sys.stderr,
        )
        return 2
    if not data_dir.is_dir():
        print(f"cannot verify: {data_dir} is not a directory", file=sys.stderr)
        return 2
    return run_verify(chosen)


def run_export(settings: Settings, output: Path) -> tuple[int, int]:
    """Export the configured store as it is at one moment, read-only, safe while the service runs; the counts."""
    from trading_orders.bootstrap import build_container
    from trading_orders.tools.transfer import TransferError, export_orders

    if settings.store == "memory":
        raise TransferError("the memory store keeps nothing to export")
    container = build_container(settings)
    try:
        entries, positions, orders = container.export_view()
        return export_orders(entries, positions, orders, output)
    finally:
        container.shutdown_resources()


def run_import(settings: Settings, source: Path) -> tuple[int, int]:
    """Import into the configured store, in the data directory its container says an import fills."""
    from trading_orders.bootstrap import build_container
    from trading_orders.tools.transfer import TransferError, import_orders

    if settings.store == "memory":
        raise TransferError("the memory store would lose the import at once")
    with build_container(settings).import_destination() as data_dir:
        container = build_container(settings.model_copy(update={"data_dir": data_dir}))
        try:
            return asyncio.run(import_orders(source, container.order_store()))
        finally:
            # The store's last checkpoint and closed files, before its directory is renamed into place.
            container.shutdown_resources()


def _run_tool(name: str, arguments: list[str]) -> int:
    jsons = Path.cwd() / "Jsons"
    if name == "generate-profiles":
        from trading_orders.tools.profile_generator import main as generate_profiles

        return generate_profiles(
            arguments, raw_details=jsons / "raw_details.json", profile_path=jsons / "user_profile.json"
        )
    from trading_orders.tools.order_producer import main as produce_orders

    return produce_orders(arguments, raw_details=jsons / "raw_details.json")


def _run_read(args: argparse.Namespace, api_key: str | None) -> int:
    from rich.console import Console

    from trading_orders.tools.desk_client import ServiceError, fetch, show

    names = ("user", "strategy", "instrument", "since", "until", "limit", "status")
    filters = {name: str(getattr(args, name)) for name in names if getattr(args, name, None) is not None}
    try:
        rows = fetch(args.url, args.command, filters, api_key)
    except ServiceError as error:
        print(f"trading-orders {args.command}: {error}", file=sys.stderr)
        return 1
    show(args.command, rows, args.json, Console())
    return 0
