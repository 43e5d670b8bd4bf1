"""Start-up warns when the service listens beyond this machine with no API key: `serve` and `uvicorn --host`."""

import logging
import signal
import socket
from collections.abc import Iterator

import pytest
import uvicorn

from trading_orders import bootstrap, cli
from trading_orders.bootstrap import uvicorn_host

WARNING_START = "serving on "


@pytest.fixture
def serve_without_serving(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """`serve` runs up to uvicorn, which is not started; yields the hosts it would have served on."""
    for name in ("TRADING_ORDERS_API_KEY", "TRADING_ORDERS_STORE"):
        monkeypatch.delenv(name, raising=False)
    hosts: list[str] = []

    class NotServing:
        def __init__(self, config: uvicorn.Config) -> None:
            hosts.append(config.host)

        def run(self, sockets: list[socket.socket] | None = None) -> None:
            """Return at once, as after a stop."""

    monkeypatch.setattr(bootstrap, "create_app", lambda settings, container=None, warn_of_settings=True: object())
    # Some of the hosts are not this machine's: nothing is bound.
    monkeypatch.setattr(bootstrap, "listening_socket", lambda host, port: socket.socket())
    monkeypatch.setattr(uvicorn, "Server", NotServing)
    # serve installs its own stop handlers; the test process keeps its own.
    handlers = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    yield hosts
    for number, handler in handlers.items():
        signal.signal(number, handler)


@pytest.mark.parametrize(
    ("host", "api_key", "warned"),
    [
        ("0.0.0.0", None, True),
        ("::", None, True),
        ("192.168.1.20", None, True),
        ("desk-host.example", None, True),
        ("127.0.0.1", None, False),
        ("127.0.0.2", None, False),
        ("localhost", None, False),
        ("::1", None, False),
        ("0.0.0.0", "desk-key", False),
    ],
)
def test_serve_warns_only_on_a_reachable_address_without_an_api_key(
    serve_without_serving: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    host: str,
    api_key: str | None,
    warned: bool,
) -> None:
    if api_key is not None:
        monkeypatch.setenv("TRADING_ORDERS_API_KEY", api_key)
    with caplog.at_level(logging.WARNING, logger="trading_orders.bootstrap"):
        assert cli.main(["serve", "--host", host, "--store", "memory"]) == 0
    assert serve_without_serving == [host]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.getMessage().startswith(WARNING_START)]
    assert len(warnings) == int(warned), [r.getMessage() for r in caplog.records]
    if warned:
        assert "without an API key" in warnings[0].getMessage() and "TRADING_ORDERS_API_KEY" in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("argv", "environment", "host"),
    [
        (["uvicorn", "Order_Handler:app"], {}, "127.0.0.1"),
        (["uvicorn", "Order_Handler:app", "--host", "0.0.0.0", "--port", "8080"], {}, "0.0.0.0"),
        (["uvicorn", "Order_Handler:app", "--host=::"], {}, "::"),
        (["uvicorn", "Order_Handler:app"], {"UVICORN_HOST": "0.0.0.0"}, "0.0.0.0"),
        (["uvicorn", "Order_Handler:app", "--uds", "/run/orders.sock"], {}, None),
    ],
)
def test_the_uvicorn_host_is_read_from_its_command_line(
    argv: list[str], environment: dict[str, str], host: str | None
) -> None:
    assert uvicorn_host(argv, environment) == host
