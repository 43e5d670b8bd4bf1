"""Fixtures every tier may use (a throwaway PostgreSQL server, once per test session), and the order tests run in."""

import os
from collections.abc import Callable, Iterator

import pytest

from tests.support.postgres_server import PostgresUnavailable, ThrowawayPostgres
from tests.support.service_forks import close_fork_server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ThrowawayPostgres]:
    """The session's PostgreSQL server; in CI a server that cannot start fails the tests, never skips them."""
    server = ThrowawayPostgres()
    try:
        server.start()
    except PostgresUnavailable as error:
        server.stop()
        message = f"cannot start a throwaway PostgreSQL for the postgres tests: {error}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: ThrowawayPostgres) -> Callable[[], str]:
    """Makes a new empty database on the session's server and returns its URL."""
    return postgres_server.new_database


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests marked slow first, so no parallel worker starts a long one while the others finish."""
    # A stable sort: the slow tests keep their order among themselves, and so do the others.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_sessionfinish() -> None:
    """End this process's fork server (its services with it) and reap it, so its CPU time counts as the run's."""
    close_fork_server()
