"""Builds the running service from configuration: logging, container, recovery, HTTP app."""

from __future__ import annotations

import gc
import ipaddress
import logging
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from trading_orders.adapters.log_files import configure_logging, write_logs_directly
from trading_orders.application.errors import StartupError
from trading_orders.ascii_case import ascii_lower
from trading_orders.container import Container
from trading_orders.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp

logger = logging.getLogger(__name__)

# How long a thread holds the interpreter lock before another may take it (see create_app).
SWITCH_INTERVAL_SECONDS = 0.001


def build_container(settings: Settings) -> Container:
    """A container configured from ``settings``; nothing is opened yet."""
    container = Container()
    container.config.from_pydantic(settings)
    return container


def create_app(settings: Settings, container: Container | None = None) -> ASGIApp:
    """Recover the service's state and return the HTTP app that serves it; raises StartupError.

    ``container`` is one build_container(settings) made, perhaps with providers overridden (tests).
    """
    configure_logging(settings.log_dir, settings.log_level, settings.log_format)
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


def create_app_or_exit(source: Path | Settings, host: str | None = None) -> ASGIApp:
    """The app for ``source``: settings, or a project root to read them for; on a start-up problem, one line, exit 1.

    A start-up problem is a StartupError, or an OSError from a file the service cannot use.

    ``host``, the address the app will be served on if known, is checked by warn_if_exposed.
    """
    try:
        settings = source if isinstance(source, Settings) else Settings.from_environment(source)
        app = create_app(settings)
        if host is not None:
            warn_if_exposed(host, settings.api_key)
        return app
    except (StartupError, OSError) as error:
        # An OSError is the system refusing a file or a socket (a directory
        # where a data file should be, a permission): its message names it.
        why = f"{error.filename}: {error.strerror}" if isinstance(error, OSError) and error.filename else error
        if logging.getLogger().handlers:
            logger.critical("cannot start: %s", why)
        else:
            print(f"trading-orders: cannot start: {why}", file=sys.stderr)
        raise SystemExit(1) from None


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
