"""Runs the real service as a uvicorn process on a free loopback port, for the demo and the tests."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from tests.support.service_forks import ForkedProcess, fork_server, forking_allowed

LOOPBACK = "127.0.0.1"


# Servers listen below the kernel's ephemeral range (32768-60999 on Linux), each
# pytest-xdist worker in ports of its own: a port the kernel hands out may be
# handed again to another worker, or to a client's connection, between the
# probe and the server's bind, and then the server cannot start.
_PORTS_FROM = 20_000
_PORTS_PER_WORKER = 1_000
# From a point of the process's own, so two test runs side by side seldom probe the same port.
_next_port = itertools.count(os.getpid())


def _port_range() -> range:
    """The ports of this process: by xdist worker (gw0, gw1, ...), else spread by process id."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    slot = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else os.getpid()
    first = _PORTS_FROM + (slot % 12) * _PORTS_PER_WORKER
    return range(first, first + _PORTS_PER_WORKER)


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now, from this process's own range."""
    ports = _port_range()
    for _ in ports:
        port = ports[next(_next_port) % len(ports)]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                continue  # taken, by another process or a connection still closing
            return port
    raise RuntimeError(f"no free loopback port in {ports.start}-{ports.stop - 1}")


class ServiceProcess:
    """The service from ``scripts_dir`` with the given TRADING_ORDERS_* settings.

    ``entry`` "uvicorn" runs it the brief's way (``uvicorn Order_Handler:app``);
    "serve" runs ``python -m trading_orders serve``. ``forked``: the tests' way, a
    child of this process's fork server (tests.support.service_forks) where it can
    be one, else a new interpreter as always.
    """

    def __init__(
        self,
        scripts_dir: Path,
        environment: dict[str, str],
        output: Path,
        entry: str = "uvicorn",
        workers: int = 1,
        app: str = "Order_Handler:app",
        wrapper: Sequence[str] = (),
        forked: bool = False,
    ) -> None:
        """Prepare (not start) a service; its console output goes to ``output``.

        ``workers`` uvicorn processes; ``app`` is the ASGI app uvicorn runs from ``scripts_dir``;
        ``wrapper`` a command the service runs under (``setpriv ... --``, to take a privilege away).
        """
        if entry not in ("uvicorn", "serve"):
            raise ValueError(f"entry must be 'uvicorn' or 'serve', got {entry!r}")
        self._scripts_dir = scripts_dir
        self._environment = environment
        self._output = output
        self._entry = entry
        self._workers = workers
        self._app = app
        self._wrapper = tuple(wrapper)
        self._forked = forked
        self._process: subprocess.Popen[bytes] | ForkedProcess | None = None
        self.port = 0

    @property
    def environment(self) -> dict[str, str]:
        """The settings (TRADING_ORDERS_* variables) the service runs with."""
        return dict(self._environment)

    @property
    def base_url(self) -> str:
        """The URL the service answers on, http://127.0.0.1:<port>."""
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 20.0, same_port: bool = False) -> ServiceProcess:
        """Start the process and wait until /health answers; raises RuntimeError with its output if not.

        ``same_port`` restarts on the port of the last start, as a restarted
        server comes back where its clients (a browser's EventSource) left it.
        """
        self.launch(same_port)
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"service exited with {self._process.returncode}: {self.output()}")
            try:
                # The time left, not a second: on a machine busy with parallel
                # tests a service still starting may take longer to answer.
                left = max(deadline - time.monotonic(), 0.1)
                if requests.get(f"{self.base_url}/health", timeout=left).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"service did not answer /health within {timeout}s: {self.output()}")

    def launch(self, same_port: bool = False) -> None:
        """Start the process without waiting for it to be ready (to kill it during start-up)."""
        if not (same_port and self.port):
            self.port = free_port()
        listen = ["--host", LOOPBACK, "--port", str(self.port)]
        if self._entry == "serve":
            command = [sys.executable, "-m", "trading_orders", "serve", *listen, "--workers", str(self._workers)]
        else:
            command = [sys.executable, "-m", "uvicorn", self._app, *listen, "--log-level", "warning"]
            if self._workers > 1:
                command += ["--workers", str(self._workers)]
        environment = {**os.environ, **self._environment}
        if self._forks(environment):
            # command is [python, -m, uvicorn, ...]: the child runs the same.
            self._process = fork_server().start("uvicorn", command[3:], self._scripts_dir, environment, self._output)
            return
        with open(self._output, "ab") as output:
            self._process = subprocess.Popen(
                [*self._wrapper, *command],
                cwd=self._scripts_dir,
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def _forks(self, environment: dict[str, str]) -> bool:
        """Whether this start is a fork: one uvicorn process as such, with nothing that changes how Python starts."""
        if not (self._forked and forking_allowed()):
            return False
        return self._entry == "uvicorn" and self._workers == 1 and not self._wrapper and fork_server().fits(environment)

    @property
    def pid(self) -> int:
        """The process id of the running service."""
        if self._process is None:
            raise RuntimeError("the service has not been started")
        return self._process.pid

    def output(self) -> str:
        """Everything the process printed so far."""
        return self._output.read_text(errors="replace") if self._output.exists() else ""

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as in a crash."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait for a graceful exit; returns the exit status."""
        if self._process is None:
            return 0
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
        # wait(): the status, at once if it had ended, else once the kill has ended it.
        return self._process.wait()

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def all_pages(base_url: str, what: str) -> list[dict[str, Any]]:
    """Every row of the paged list ``what`` (orders, trades) the service at ``base_url`` serves, oldest first."""
    rows: list[dict[str, Any]] = []
    params = {"limit": "1000"}
    while True:
        page = requests.get(f"{base_url}/{what}", params=params, timeout=10).json()
        rows += page[what]
        if page["next_cursor"] is None:
            return rows[::-1]
        params["cursor"] = page["next_cursor"]
