"""A PostgreSQL server that vanished without a reset is noticed by the kernel within a bound, not when TCP gives up.

What can be seen on loopback is that every pooled connection's socket carries
the keep-alive and user-timeout options: the kernel then ends a connection
whose server stopped answering probes or acknowledging what was sent. (A
server process stopped with SIGSTOP on the same machine is no such case: its
kernel still acknowledges, so only the lock bounds apply; see docs/stores.md.)
"""

import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from tests.support.service_process import LOOPBACK, free_port
from trading_orders.adapters.storage.sql import postgres
from trading_orders.adapters.storage.sql.postgres import DEAD_SERVER_PARAMETERS, PostgresOrderStore
from trading_orders.application.errors import StorageUnavailable
from trading_orders.domain.model import PositionScope


def socket_options(connection: psycopg.Connection[Any]) -> dict[str, int]:
    """The keep-alive and user-timeout options the kernel holds for ``connection``'s socket."""
    with socket.socket(fileno=socket.dup(connection.fileno())) as sock:
        return {
            "keepalives": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            "keepalives_idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            "keepalives_interval": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            "keepalives_count": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            "tcp_user_timeout": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        }


@contextmanager
def pooled_connection(url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection of the store's own pool, as every order, read and settling of a lost COMMIT gets one."""
    store = PostgresOrderStore(url, PositionScope.STRATEGY)
    try:
        store.recover()
        with store._connection() as connection:
            yield connection
    finally:
        store.close()


def test_every_pooled_connection_has_its_socket_probe_the_server_and_give_up_within_a_bound(
    postgres_url: Callable[[], str],
) -> None:
    with pooled_connection(postgres_url()) as connection:
        expected = {name: value for name, value in DEAD_SERVER_PARAMETERS.items() if name != "connect_timeout"}
        assert socket_options(connection) == expected
        # A dead idle connection is given up after idle + interval x count seconds,
        # one with a statement in flight after the user timeout.
        assert expected["keepalives_idle"] + expected["keepalives_interval"] * expected["keepalives_count"] <= 10
        assert expected["tcp_user_timeout"] <= 10_000


def test_a_url_that_sets_its_own_keepalive_keeps_it(postgres_url: Callable[[], str]) -> None:
    with pooled_connection(f"{postgres_url()}?keepalives_idle=42&tcp_user_timeout=7000") as connection:
        options = socket_options(connection)
        assert options["keepalives_idle"] == 42 and options["tcp_user_timeout"] == 7000
        # The rest are still the store's.
        assert options["keepalives_count"] == DEAD_SERVER_PARAMETERS["keepalives_count"]


def test_a_server_that_never_answers_is_awaited_in_one_line_and_given_up_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(postgres, "OPEN_WAIT_SECONDS", 1.0)
    port = free_port()  # nothing listens there
    store = PostgresOrderStore(f"postgresql://desk:secret@{LOOPBACK}:{port}/orders", PositionScope.STRATEGY)
    try:
        with caplog.at_level(logging.INFO), pytest.raises(StorageUnavailable) as gave_up:
            store.recover()
    finally:
        store.close()
    where = f"PostgreSQL database orders at {LOOPBACK}:{port} as desk"
    assert str(gave_up.value).startswith(f"cannot reach {where}: no connection within 1 s (connection to server at")
    assert "Connection refused" in str(gave_up.value)
    said = [(record.name, record.getMessage()) for record in caplog.records]
    assert [message for _, message in said if "waiting" in message] == [
        f"waiting up to 1 s for {where} to take a connection "
        f'(connection to server at "{LOOPBACK}", port {port} failed: Connection refused); Ctrl-C stops'
    ]
    assert not [name for name, _ in said if name == "psycopg.pool"], said
    assert "secret" not in repr(said) + str(gave_up.value)
