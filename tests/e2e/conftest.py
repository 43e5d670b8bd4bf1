"""Fixtures that run the real service (uvicorn, Order_Handler:app) on a free loopback port."""

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.support.desk_browser import chromium_path, launch_chromium
from tests.support.postgres_server import PostgresUnavailable, ThrowawayPostgres
from tests.support.service_process import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "Scripts"

ServiceFactory = Callable[..., ServiceProcess]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A fresh data directory for one test's service."""
    directory = tmp_path / "data"
    directory.mkdir()
    return directory


@pytest.fixture
def service_factory(tmp_path: Path, data_dir: Path) -> Iterator[ServiceFactory]:
    """Builds (not starts) services over ``data_dir`` with a profile and settings of the test's choosing."""
    made: list[ServiceProcess] = []

    def make(
        profile: dict[str, dict[str, list[str]]] | None = None,
        entry: str = "uvicorn",
        workers: int = 1,
        wrapper: Sequence[str] = (),
        **settings: str,
    ) -> ServiceProcess:
        profile_path = tmp_path / "user_profile.json"
        if profile is not None:
            profile_path.write_text(json.dumps(profile, indent=4))
        environment = {
            "TRADING_ORDERS_DATA_DIR": str(data_dir),
            "TRADING_ORDERS_PROFILE_PATH": str(profile_path),
            "TRADING_ORDERS_LOG_DIR": str(tmp_path / "logs"),
            **{f"TRADING_ORDERS_{name.upper()}": value for name, value in settings.items()},
        }
        output = tmp_path / f"service-{len(made)}.out"
        service = ServiceProcess(SCRIPTS, environment, output, entry, workers, wrapper=wrapper, forked=True)
        made.append(service)
        return service

    yield make
    for service in made:
        service.kill()


def module_service(
    tmp_path_factory: pytest.TempPathFactory, name: str, profile: dict[str, dict[str, list[str]]], **settings: str
) -> ServiceProcess:
    """A service (not started) over a directory of its own named after ``name``: one test module's shared service."""
    directory = tmp_path_factory.mktemp(name)
    (directory / "profile.json").write_text(json.dumps(profile))
    environment = {
        "TRADING_ORDERS_DATA_DIR": str(directory / "data"),
        "TRADING_ORDERS_PROFILE_PATH": str(directory / "profile.json"),
        "TRADING_ORDERS_LOG_DIR": str(directory / "logs"),
        **{f"TRADING_ORDERS_{setting.upper()}": value for setting, value in settings.items()},
    }
    return ServiceProcess(SCRIPTS, environment, directory / "service.out", forked=True)


# Module scope, not session: Playwright's sync API runs an event loop in this
# thread while it is open, and every later test that calls asyncio.run() fails.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium under Playwright, once per test module; in CI a missing chromium fails, never skips."""
    executable = chromium_path()
    if executable is None:
        message = "the desk's browser tests need chromium: apt-get install -y chromium (make test does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = launch_chromium(playwright, executable)
        yield launched
        launched.close()


@pytest.fixture
def own_server() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL server of this test's own, for a test that stops or crashes it."""
    server = ThrowawayPostgres(durable=True)
    try:
        server.start()
    except PostgresUnavailable as error:
        server.stop()
        pytest.fail(f"cannot start a throwaway PostgreSQL: {error}")
    yield server
    server.stop()
