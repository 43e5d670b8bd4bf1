"""The trading-orders command line: `python -m trading_orders <command>`.

Each command imports what it needs when it runs, not before: the commands that only talk to a
running service over HTTP (positions, orders, trades, follow) and every --help import no web
framework, so they start in a fraction of the second FastAPI alone takes to import
(docs/command-line.md#start-up-time).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from trading_orders.ascii_numbers import ascii_number
from trading_orders.domain.model import PositionScope

if TYPE_CHECKING:
    from trading_orders.settings import Settings
    from trading_orders.tools.transfer import Moved

# settings.StoreName, named here so that --help need not import pydantic; a test keeps them the same.
STORES = ("tinydb", "memory", "sqlite", "postgres")
# The commands that read a running service's GET /<command>.
READ_COMMANDS = ("positions", "orders", "trades")
API_KEY_VARIABLE = "TRADING_ORDERS_API_KEY"


def run_verify(settings: Settings) -> int:
    """Check that the TinyDB store's positions and order log agree; 0 agree, 1 differ, 2 unreadable, 3 damaged."""
    from rich.progress import Progress

    from trading_orders.application.errors import StartupError
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
        remedy = "start-up sets it aside and rebuilds it from the order log"
        if path in checked.unseen_at_start_up:
            remedy = "start-up does not see this: move the file away, and start-up rebuilds it from the order log"
        print(f"DAMAGED: {path}: {why}; {remedy}")
    if not report.agree:
        print(f"{len(report.problems)} difference(s)")
        return 1
    if damaged:
        print(f"{len(damaged)} damaged file(s) derived from the order log")
        return 3
    print("OK: positions and order log agree")
    return 0


def run_serve(settings: Settings, host: str, port: int, workers: int = 1) -> int:
    """Serve until SIGTERM or SIGINT, drain the orders in flight, close the stores; the exit status (0 after a stop)."""
    from trading_orders.bootstrap import run_service

    return run_service(settings, host, port, workers)


DEFAULT_URL = "http://127.0.0.1:8080"
PASS_THROUGH = {
    "generate-profiles": "generate Jsons/user_profile.json (the brief's generator; see its --help)",
    "produce": "send random orders to a running service (the brief's producer; see its --help)",
}


# Far more than a machine's cores: each worker holds its own copy of the positions.
MAX_WORKERS = 64


def _port(text: str) -> int:
    # uvicorn takes any int and the system wraps it: 99999 would serve on 34463, 0 on any free port.
    number = ascii_number(text)
    if number is None or not 1 <= number <= 65_535:
        raise argparse.ArgumentTypeError(f"expected a port, a whole number 1-65535 in ASCII digits: {text!r}")
    return number


def _workers(text: str) -> int:
    number = ascii_number(text)
    if number is None or not 1 <= number <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"expected a number of processes, 1-{MAX_WORKERS} in ASCII digits: {text!r}")
    return number


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


# The operator controls, each sent to a running service (docs/controls.md): command -> the state it sets.
STATE_COMMANDS = {"halt": "HALTED", "reduce": "REDUCING", "resume": "ACTIVE"}
CONTROL_COMMANDS = (*STATE_COMMANDS, "flatten", "limit", "controls")


def _limit_value(kind: type[int] | type[float]) -> Callable[[str], int | float | None]:
    def read(text: str) -> int | float | None:
        if text.lower() == "none":
            return None
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number or none: {text!r}") from None
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"expected a number of 0 or more, or none: {text!r}")
        return value

    return read


def _add_control_commands(commands: argparse._SubParsersAction[_OneLineParser]) -> None:
    def against_service(command: argparse.ArgumentParser) -> None:
        command.add_argument("--url", default=DEFAULT_URL, help=f"the service (default {DEFAULT_URL})")
        command.add_argument("--api-key", help=f"default: {API_KEY_VARIABLE}")
        command.add_argument("--json", action="store_true", help="the answer as JSON, for machines")

    def scoped(command: argparse.ArgumentParser) -> None:
        command.add_argument("--user", help="one user (with --strategy: that user's strategy)")
        command.add_argument("--strategy", help="one strategy; with neither --user nor --strategy: the whole desk")
        command.add_argument("--reason", default="", help="why, recorded in the order log (at most 500 characters)")
        against_service(command)

    helps = {
        "halt": "refuse every order of a scope until it is resumed (closes nothing)",
        "reduce": "refuse the BUYs of a scope; SELLs still close positions (closes nothing)",
        "resume": "let a scope's orders through again (reopens nothing)",
    }
    for name, text in helps.items():
        scoped(commands.add_parser(name, help=text))
    flatten = commands.add_parser(
        "flatten", help="close every open position of a scope now, with a trade each (halts nothing unless asked)"
    )
    scoped(flatten)
    then = flatten.add_mutually_exclusive_group()
    then.add_argument("--halt", action="store_true", help="and halt the scope in the same step")
    then.add_argument("--reduce", action="store_true", help="and set the scope to reduce only in the same step")
    limit = commands.add_parser("limit", help="set or remove (none) a limit on open positions or on order rate")
    scoped(limit)
    kinds = limit.add_mutually_exclusive_group(required=True)
    # SUPPRESS: a limit given as none (remove it) must differ from a limit not given.
    kinds.add_argument(
        "--max-open-positions", type=_limit_value(int), metavar="N|none", default=argparse.SUPPRESS, help="needs --user"
    )
    kinds.add_argument(
        "--max-orders-per-second",
        type=_limit_value(float),
        metavar="X|none",
        default=argparse.SUPPRESS,
        help="needs --strategy and --burst",
    )
    limit.add_argument("--burst", type=int, help="orders admitted at once under --max-orders-per-second")
    against_service(commands.add_parser("controls", help="the states and limits in force at a running service"))


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser that refuses a command line in one line, not under a screen of usage."""

    def error(self, message: str) -> NoReturn:
        """Print what is wrong and where the usage is, and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="trading-orders", description="The trading-orders service and its tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the service; SIGTERM drains it and exits 0")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8080, help="port to listen on, 1-65535 (default 8080)")
    serve.add_argument(
        "--workers", type=_workers, default=1, help="processes to serve with (default 1); sqlite and postgres only"
    )
    serve.add_argument("--store", choices=STORES, help="default: TRADING_ORDERS_STORE or tinydb")
    serve.add_argument("--scope", choices=[s.value for s in PositionScope], help="default: the configured scope")
    for name, text in PASS_THROUGH.items():
        commands.add_parser(name, help=text, add_help=False)
    for what, text in [
        ("positions", "open positions of a running service"),
        ("orders", "the order log of a running service, newest first"),
        ("trades", "closed trades of a running service, newest first"),
    ]:
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
    _add_control_commands(commands)
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
    if args.command in CONTROL_COMMANDS:
        return _run_control(args)
    if args.command in READ_COMMANDS:
        return _run_read(args, api_key_from_environment())
    if args.command == "follow":
        return _run_follow(args, api_key_from_environment())
    from trading_orders.application.errors import StartupError, StorageUnavailable
    from trading_orders.settings import Settings
    from trading_orders.tools.transfer import TransferError

    try:
        settings = Settings.from_environment(Path.cwd())
    except StartupError as error:
        print(f"trading-orders: {error}", file=sys.stderr)
        return 2
    if args.command != "serve":  # serve logs them, once its log is set up
        from trading_orders.settings import unknown_variables

        for line in unknown_variables(os.environ):
            print(f"trading-orders: warning: {line}", file=sys.stderr)
    scope = PositionScope(args.scope) if getattr(args, "scope", None) else settings.position_scope
    if args.command == "serve":
        overrides = {"store": args.store, "position_scope": scope}
        chosen = settings.model_copy(update={k: v for k, v in overrides.items() if v})
        return run_serve(chosen, args.host, args.port, args.workers)
    data_dir: Path = args.data_dir or settings.data_dir
    chosen = settings.model_copy(update={"data_dir": data_dir, "position_scope": scope})
    try:
        if args.command == "export":
            moved = run_export(chosen, args.output)
            print(f"exported {moved.entries} and {moved.positions} open positions ({chosen.store}) to {args.output}")
            return 0
        if args.command == "import":
            moved = run_import(chosen, args.source)
            print(f"imported {moved.entries} ({chosen.store}): {moved.positions} open positions, trades rebuilt")
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


def run_export(settings: Settings, output: Path) -> Moved:
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


def run_import(settings: Settings, source: Path) -> Moved:
    """Import into the configured store, in the data directory its container says an import fills."""
    import asyncio

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

    return produce_orders(arguments, raw_details=jsons / "raw_details.json", profile_path=jsons / "user_profile.json")


def api_key_from_environment() -> str | None:
    """TRADING_ORDERS_API_KEY as Settings reads it (its name in any letter case, empty is unset), without pydantic."""
    # pydantic-settings lowercases every variable's name into one dict: of two spellings, the later one wins.
    key = None
    for name, value in os.environ.items():
        if name.upper() == API_KEY_VARIABLE:
            key = value
    return key or None


def _run_follow(args: argparse.Namespace, api_key: str | None) -> int:
    from trading_orders.tools.decision_follower import DecisionFollower, ResumeState

    filters = {name: getattr(args, name) for name in ("strategy", "instrument", "user", "status")}
    follower = DecisionFollower(
        url=args.url,
        filters={name: value for name, value in filters.items() if value is not None},
        api_key=api_key,
        as_json=args.json,
        out=sys.stdout,
        state=ResumeState(args.state) if args.state is not None else None,
    )
    return follower.run(args.after)


def _run_read(args: argparse.Namespace, api_key: str | None) -> int:
    from trading_orders.tools.desk_client import ServiceError, fetch, show

    names = ("user", "strategy", "instrument", "since", "until", "limit", "status")
    filters = {name: str(getattr(args, name)) for name in names if getattr(args, name, None) is not None}
    try:
        rows = fetch(args.url, args.command, filters, api_key)
    except ServiceError as error:
        print(f"trading-orders {args.command}: {error}", file=sys.stderr)
        return 1
    # The terminal's width; 80 when the output is piped or the width unknown (COLUMNS, when set, wins).
    show(args.command, rows, args.json, sys.stdout, shutil.get_terminal_size((80, 24)).columns)
    return 0


def _run_control(args: argparse.Namespace) -> int:
    from trading_orders.tools.control_client import fetch_controls, send_change, show_change, show_controls
    from trading_orders.tools.desk_client import ServiceError

    api_key = args.api_key or api_key_from_environment()
    try:
        if args.command == "controls":
            show_controls(
                fetch_controls(args.url, api_key), args.json, sys.stdout, shutil.get_terminal_size((80, 24)).columns
            )
            return 0
        scope = {"user": args.user, "strategy": args.strategy, "reason": args.reason}
        if args.command in STATE_COMMANDS:
            change = send_change(
                args.url, "/controls/state", "PUT", {**scope, "state": STATE_COMMANDS[args.command]}, api_key
            )
        elif args.command == "flatten":
            state = "HALTED" if args.halt else "REDUCING" if args.reduce else None
            change = send_change(args.url, "/controls/flatten", "POST", {**scope, "state": state}, api_key)
        elif hasattr(args, "max_orders_per_second"):
            rate = {**scope, "max_orders_per_second": args.max_orders_per_second}
            if args.burst is not None:
                rate["burst"] = args.burst
            change = send_change(args.url, "/controls/limits", "PUT", rate, api_key)
        else:
            body = {**scope, "max_open_positions": args.max_open_positions}
            change = send_change(args.url, "/controls/limits", "PUT", body, api_key)
    except ServiceError as error:
        print(f"trading-orders {args.command}: {error}", file=sys.stderr)
        return 1
    show_change(change, args.json, sys.stdout)
    return 0
