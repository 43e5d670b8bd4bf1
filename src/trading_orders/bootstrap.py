"""Builds the running service from configuration: logging, container, recovery, HTTP app."""

from __future__ import annotations

import gc
import ipaddress
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from trading_orders.adapters.log_files import configure_logging, write_logs_directly
from trading_orders.application.errors import StartupError
from trading_orders.ascii_case import ascii_lower
from trading_orders.container import Container
from trading_orders.settings import ENV_PREFIX, Settings, unknown_variables

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp

logger = logging.getLogger(__name__)

# serve's exit statuses besides 0 (docs/command-line.md, "Exit statuses").
CANNOT_START = 1
REFUSED = 2
# 128 + the signal, as a shell reports a program a signal ended: 130 for Ctrl-C (SIGINT), 143 for SIGTERM.
STOPPED_BY_SIGNAL = 128
# A worker of serve --workers that cannot start exits with uvicorn's
# STARTUP_FAILURE: its supervisor then stops, where any other status would
# have it start the worker again, and fail again, without end.
WORKER_CANNOT_START = 3
# The stores that keep their files in the data directory.
_STORES_WITH_FILES = ("tinydb", "sqlite")
# The stores several processes may serve at once.
_SHARED_STORES = ("sqlite", "postgres")

# How long a thread holds the interpreter lock before another may take it (see create_app).
SWITCH_INTERVAL_SECONDS = 0.001


def build_container(settings: Settings) -> Container:
    """A container configured from ``settings``; nothing is opened yet."""
    container = Container()
    container.config.from_pydantic(settings)
    return container


def create_app(settings: Settings, container: Container | None = None, warn_of_settings: bool = True) -> ASGIApp:
    """Recover the service's state and return the HTTP app that serves it; raises StartupError.

    ``container`` is one build_container(settings) made, perhaps with providers overridden (tests).
    ``warn_of_settings``: log a WARNING for each TRADING_ORDERS_* variable that is no setting.
    """
    _start_logging(settings, warn_of_settings)
    if settings.store in _STORES_WITH_FILES:
        _writable_directory(settings.data_dir, "data directory", "DATA_DIR")
    logger.info(
        "starting: store %s in %s, profile %s, position scope %s",
        settings.store,
        settings.data_dir,
        settings.profile_path,
        settings.position_scope.value,
    )
    if container is None:
        container = build_container(settings)
    try:
        container.order_service().start()
    except BaseException:
        container.shutdown_resources()
        raise
    # The positions and profile loaded at start-up live as long as the
    # process: keeping them out of the cyclic garbage collector's full
    # passes spares every later order a pause that grows with their number.
    gc.freeze()
    # The event loop, the committer and a read thread take turns on one
    # interpreter lock: at Python's default 5 ms an order waited up to 5 ms at
    # each hand-off behind a thread decoding a read. At 1 ms, beside 45
    # worst-case readers, create_order p99 fell from 68 to 20 ms and /health
    # from 77 to 29 ms; paced 1,000/s p99 from 23 to 10 ms; 64 connections
    # served 1,914/s instead of 1,716 (docs/performance.md).
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await container.decision_feed().close()
        # Uvicorn has drained the requests in flight by now: closing the
        # stores releases their locks for the next process.
        container.unwire()
        container.shutdown_resources()
        logger.info("stopped")
        # Uvicorn may end the process by re-raising the signal that stopped
        # it, which skips atexit: write every queued line now.
        write_logs_directly()

    # Imported here, not at the top: the command line's verify, export and
    # import build only the container, and the HTTP app's routes and schemas
    # cost a third of a second of CPU to import that they would never use.
    from trading_orders.adapters.http import api
    from trading_orders.adapters.http.wrong_keys import WrongKeyLimit

    container.wire(modules=api.ROUTE_MODULES)
    wrong_keys = WrongKeyLimit(settings.wrong_key_limit, settings.wrong_key_window_seconds)
    return api.build_api(lifespan, container.order_service(), settings.api_key, wrong_keys)


def create_app_or_exit(source: Path | Settings, host: str | None = None, supervised: bool = False) -> ASGIApp:
    """The app for ``source``: settings, or a project root to read them for; on a start-up problem, one line, exit 1.

    A start-up problem is a StartupError, or an OSError from a file the service cannot use;
    Ctrl-C during start-up is one line too, and exit 130.

    ``host``, the address the app will be served on if known, is checked by warn_if_exposed.
    ``supervised``: a worker of serve --workers, whose supervisor gave the warnings; a start-up
    problem exits 3, which stops the supervisor.
    """
    with _start_up_or_exit(WORKER_CANNOT_START if supervised else CANNOT_START), _stoppable_start_up():
        settings = source if isinstance(source, Settings) else Settings.from_environment(source)
        app = create_app(settings, warn_of_settings=not supervised)
        if host is not None:
            warn_if_exposed(host, settings.api_key)
        return app


def worker_app() -> ASGIApp:
    """The app of one worker process of serve --workers, from the settings serve left in the environment."""
    return create_app_or_exit(Path.cwd(), supervised=True)


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port`` for uvicorn to serve on; StartupError, one line, if none can be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As uvicorn sets it: a port whose last connections are still closing is free to serve on.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host.strip("[]"), port))
        # Listening, not only bound: two sockets that set SO_REUSEADDR may both
        # bind one port until one of them listens.
        listener.listen(socket.SOMAXCONN)
    except (OSError, OverflowError) as error:
        listener.close()
        why = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise StartupError(f"cannot listen on {_address(host, port)}: {why}") from None
    listener.set_inheritable(True)
    return listener


def run_service(settings: Settings, host: str, port: int, workers: int = 1) -> int:
    """Serve until SIGTERM or SIGINT, drain the orders in flight, close the stores; the exit status.

    0 after a stop, 1 when the service cannot start, 2 for --workers on a store of one
    process, 130 or 143 for Ctrl-C or SIGTERM during start-up (docs/command-line.md).
    """
    if workers > 1 and settings.store not in _SHARED_STORES:
        print(
            f"trading-orders serve: --workers {workers} needs a store several processes share, sqlite or postgres; "
            f"the {settings.store} store is one process's",
            file=sys.stderr,
        )
        return REFUSED
    # The port is taken before any start-up work, and uvicorn serves on this
    # very socket: left to uvicorn, a port in use is found only once the
    # stores have recovered, after "Application startup complete".
    try:
        listener = listening_socket(host, port)
    except StartupError as error:
        print(f"trading-orders: cannot start: {error}", file=sys.stderr)
        return CANNOT_START
    with listener:
        if workers > 1:
            return _serve_workers(settings, listener, host, port, workers)
        return _serve_one(settings, listener, host, port)


def _serve_one(settings: Settings, listener: socket.socket, host: str, port: int) -> int:
    import uvicorn  # Here, not above: the commands that never serve do not pay for importing it.

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
    # uvicorn names the address only when it binds the socket itself.
    logger.info("listening on http://%s; SIGTERM or Ctrl-C drains and stops", _address(host, port))
    # log_config None: uvicorn's lines go through the logging configure_logging set up, not its own.
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None)).run(sockets=[listener])
    return 0


def _serve_workers(settings: Settings, listener: socket.socket, host: str, port: int, workers: int) -> int:
    from uvicorn import Config
    from uvicorn.supervisors import Multiprocess

    with _start_up_or_exit(CANNOT_START):
        # What the workers would each fail on, said once here.
        _start_logging(settings, warn_of_settings=True)
        if settings.store in _STORES_WITH_FILES:
            _writable_directory(settings.data_dir, "data directory", "DATA_DIR")
    warn_if_exposed(host, settings.api_key)
    # Each worker is a new interpreter that reads its settings from the
    # environment: serve's --store and --scope go there for them.
    os.environ[f"{ENV_PREFIX}STORE"] = settings.store
    os.environ[f"{ENV_PREFIX}POSITION_SCOPE"] = settings.position_scope.value
    config = Config(f"{__name__}:worker_app", factory=True, host=host, port=port, workers=workers, log_config=None)
    logger.info(
        "listening on http://%s with %d worker processes; SIGTERM or Ctrl-C drains and stops",
        _address(host, port),
        workers,
    )
    supervisor = Multiprocess(config, sockets=[listener])
    supervisor.run()
    if any(worker.exitcode == WORKER_CANNOT_START for worker in supervisor.processes):
        logger.critical("cannot start: a worker process could not start; its line above says why")
        return CANNOT_START
    return 0


@contextmanager
def _start_up_or_exit(status: int) -> Iterator[None]:
    """Turn a start-up problem, or Ctrl-C, into one line and SystemExit."""
    try:
        yield
    except (StartupError, OSError) as error:
        # An OSError is the system refusing a file or a socket (a directory
        # where a data file should be, a permission): its message names it.
        why = f"{error.filename}: {error.strerror}" if isinstance(error, OSError) and error.filename else error
        _say_cannot_start(f"cannot start: {why}")
        raise SystemExit(status) from None
    except (KeyboardInterrupt, _StartUpStopped) as stop:
        number = stop.signal_number if isinstance(stop, _StartUpStopped) else signal.SIGINT
        how = "interrupted (Ctrl-C)" if number == signal.SIGINT else f"stopped ({signal.Signals(number).name})"
        _say_cannot_start(f"start-up {how}; nothing was served", logging.WARNING)
        raise SystemExit(STOPPED_BY_SIGNAL + number) from None


class _StartUpStopped(BaseException):
    """SIGINT or SIGTERM arrived during start-up."""

    def __init__(self, signal_number: int) -> None:
        """``signal_number``: the signal that arrived."""
        super().__init__(signal_number)
        self.signal_number = signal_number


@contextmanager
def _stoppable_start_up() -> Iterator[None]:
    """Let SIGINT and SIGTERM end start-up where it is, a wait for a database included."""
    # uvicorn, which loads the brief's app under handlers of its own, would
    # only note the signal and stop once start-up had finished: after a 30 s
    # wait for an unreachable database, say. serve's default SIGTERM would
    # end the process without a word.
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signal_number: int, frame: FrameType | None) -> None:
        raise _StartUpStopped(signal_number)

    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _say_cannot_start(line: str, level: int = logging.CRITICAL) -> None:
    if logging.getLogger().handlers:
        logger.log(level, "%s", line)
    else:
        print(f"trading-orders: {line}", file=sys.stderr)


def _start_logging(settings: Settings, warn_of_settings: bool) -> None:
    """Send log records to the log directory and stderr, and warn of the variables that are no setting."""
    _writable_directory(settings.log_dir, "log directory", "LOG_DIR")
    configure_logging(settings.log_dir, settings.log_level, settings.log_format)
    if warn_of_settings:
        for line in unknown_variables(os.environ):
            logger.warning("%s", line)


def _writable_directory(path: Path, what: str, setting: str) -> None:
    """Create ``path`` if it is missing; StartupError naming it and its setting if it is no directory to write in."""
    named = f"{what} {path} ({ENV_PREFIX}{setting})"
    if path.exists() and not path.is_dir():
        raise StartupError(f"{named} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StartupError(f"{named} cannot be created: {error.strerror or error}") from None
    try:
        # A file made and dropped at once: a directory may be there and still
        # refuse new files (a read-only mount, a permission, /proc).
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise StartupError(f"{named} cannot be written: {error.strerror or error}") from None


def _address(host: str, port: int) -> str:
    return f"[{host.strip('[]')}]:{port}" if ":" in host else f"{host or '0.0.0.0'}:{port}"


def warn_if_exposed(host: str, api_key: str | None) -> None:
    """Log a WARNING when ``host`` takes connections from other machines and no API key guards the service."""
    if api_key or _is_loopback(host):
        return
    logger.warning(
        "serving on %s without an API key: anyone who can reach this address can place orders and reload "
        "the profile; set TRADING_ORDERS_API_KEY, or serve on 127.0.0.1",
        host or "every address",
    )


def _is_loopback(host: str) -> bool:
    if ascii_lower(host) == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name, or "" for every address: assume others can reach it


def uvicorn_host(argv: list[str], environment: Mapping[str, str]) -> str | None:
    """The address ``uvicorn ... --host`` serves on, read from its command line; None for a socket or descriptor."""
    host = environment.get("UVICORN_HOST", "127.0.0.1")
    for number, argument in enumerate(argv):
        if argument in ("--uds", "--fd") or argument.startswith(("--uds=", "--fd=")):
            return None
        if argument == "--host" and number + 1 < len(argv):
            host = argv[number + 1]
        elif argument.startswith("--host="):
            host = argument.removeprefix("--host=")
    return host
