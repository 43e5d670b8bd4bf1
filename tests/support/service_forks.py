"""The tests' fork server: a service starts as a child of a process that has already imported its libraries.

A service's start spends about 0.5 s of CPU importing FastAPI, pydantic, uvicorn,
dependency-injector and the rest before a line of its own runs, and the tests
start about 230. The fork server (a "zygote", one per pytest worker, started on
first use) imports those once. Each service is a child forked from it that takes
the environment, directory and output the test gave it, imports Order_Handler
itself (so the service's settings are read and its start-up runs in the child)
and runs uvicorn's command line as ``python -m uvicorn`` would. The fork server
is the child's parent: it reaps it and reports its exit status as Popen would
give it.

What a child does not get as a new interpreter would: a hash seed and an
address layout of its own (it has the fork server's), and its own
/proc/<pid>/cmdline and /proc/<pid>/environ (they show the fork server's; the
child's os.environ is set after the fork).

Only the tests use it (``ServiceProcess(..., forked=True)``): the demo and the
benchmarks start every service as a new interpreter, whose cost is part of what
they measure. TESTS_NO_FORK_SERVER=1 turns it off, to compare.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib
import itertools
import json
import os
import random
import runpy
import select
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parents[2]
# Not TRADING_ORDERS_*: every service would warn that it is no setting.
NO_FORK_VARIABLE = "TESTS_NO_FORK_SERVER"

# What a service imports on its way to serving /health (python -X importtime),
# less Order_Handler and trading_orders.bootstrap, which read the settings and
# the files of the run: the child imports those itself. The service's modules
# here only define things (the desk's pages and redoc's script, read from the
# package, are the same for every child).
PRELOADED = (
    "fastapi",
    "pydantic",
    "pydantic_settings",
    "dependency_injector.containers",
    "dependency_injector.providers",
    "dependency_injector.wiring",
    "starlette",
    "sse_starlette",
    "tinydb",
    "prometheus_client",
    "sqlite3",
    # What uvicorn's command line picks when it runs (loop, http and websockets "auto").
    "uvicorn.main",
    "uvicorn.config",
    "uvicorn.server",
    "uvicorn.lifespan.on",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.websockets_sansio_impl",
    "encodings.idna",
    "anyio._backends._asyncio",
    "trading_orders.settings",
    "trading_orders.adapters.log_files",
    "trading_orders.container",
    "trading_orders.adapters.http.api",
    # psycopg and its pool, which the container imports when PostgreSQL is chosen.
    "trading_orders.adapters.storage.sql.postgres",
)

# A child's environment may differ from the fork server's only in these: the
# service's own settings, read in the child, and pytest's name of the test.
# Any other difference (PYTHON*, LANG, LD_*, TZ, ... or a variable a library
# here reads when imported) starts the service as a new interpreter.
_OWN_PREFIX = "TRADING_ORDERS_"
_PYTEST_TEST = "PYTEST_CURRENT_TEST"

# The environment as this module was first imported (at collection): a test
# that changes os.environ while the fork server starts does not give it to
# every later service.
_STARTING_ENVIRONMENT = dict(os.environ)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_START_BOUND_SECONDS = 120.0  # the first start waits for the fork server's imports, on a busy machine
_CLOSE_BOUND_SECONDS = 10.0


def _comparable(environment: Mapping[str, str]) -> dict[str, str]:
    """``environment`` less what a child may set for itself."""
    return {
        name: value
        for name, value in environment.items()
        if not name.upper().startswith(_OWN_PREFIX) and name != _PYTEST_TEST
    }


class ForkedProcess:
    """A service the fork server forked, as much of a subprocess.Popen as ServiceProcess uses."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self._server = server
        self.pid = pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the fork server has reaped it (-N: killed by signal N), else None."""
        return self._server.status_of(self.pid)

    def poll(self) -> int | None:
        """The exit status if it has ended, else None; does not wait."""
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit status; raises subprocess.TimeoutExpired after ``timeout`` seconds."""
        return self._server.wait(self.pid, timeout)

    def send_signal(self, number: int) -> None:
        """Send signal ``number``, unless it has already been reaped (its pid may be another's by then)."""
        self._server.signal(self.pid, number)

    def kill(self) -> None:
        """SIGKILL."""
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """The fork server process, and what it has said of the services it forked."""

    def __init__(self) -> None:
        """Start the fork server with the environment this process started with; it imports while a request waits."""
        self.owner = os.getpid()
        self._environment = _STARTING_ENVIRONMENT
        # Open as long as the fork server runs: what it says of a failure, for the errors this raises.
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115
        # It ends when its stdin closes, as it does when this process ends, however
        # it ends. Not by PR_SET_PDEATHSIG: that fires when the thread that started
        # it ends, and the first start may come from a test's thread.
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__],
            cwd=ROOT,
            env=self._environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
        )
        self._sending = threading.Lock()
        self._heard = threading.Condition()
        self._started: dict[int, int | str] = {}
        self._exits: dict[int, int] = {}
        self._ended = False
        self._requests = itertools.count(1)
        threading.Thread(target=self._listen, name="fork-server", daemon=True).start()

    @property
    def pid(self) -> int:
        """The fork server's process id."""
        return self._process.pid

    def fits(self, environment: Mapping[str, str]) -> bool:
        """Whether a service with ``environment`` can be forked from this server, not only started anew."""
        return _comparable(environment) == _comparable(self._environment)

    def start(
        self, module: str, arguments: Sequence[str], cwd: Path, environment: Mapping[str, str], output: Path
    ) -> ForkedProcess:
        """Fork a child that runs ``python -m module arguments`` in ``cwd``, its output appended to ``output``."""
        request = next(self._requests)
        self._send(
            kind="start",
            request=request,
            module=module,
            arguments=list(arguments),
            cwd=str(cwd),
            environment=dict(environment),
            output=str(output),
        )
        with self._heard:
            self._heard.wait_for(lambda: request in self._started or self._ended, _START_BOUND_SECONDS)
            answer = self._started.pop(request, None)
        if answer is None:
            raise RuntimeError(f"the fork server did not fork within {_START_BOUND_SECONDS}s: {self.errors()}")
        if isinstance(answer, str):
            raise RuntimeError(f"the fork server could not fork: {answer}")
        return ForkedProcess(self, answer)

    def status_of(self, pid: int) -> int | None:
        """The exit status of child ``pid`` if the fork server has reported it."""
        with self._heard:
            return self._exits.get(pid)

    def wait(self, pid: int, timeout: float | None) -> int:
        """The exit status of child ``pid``, waited for up to ``timeout`` seconds (None: no bound)."""
        with self._heard:
            if not self._heard.wait_for(lambda: pid in self._exits or self._ended, timeout):
                raise subprocess.TimeoutExpired(f"forked service {pid}", timeout or 0.0)
            if pid not in self._exits:
                raise RuntimeError(f"the fork server ended before service {pid}: {self.errors()}")
            return self._exits[pid]

    def signal(self, pid: int, number: int) -> None:
        """Have the fork server send signal ``number`` to its child ``pid`` if it has not reaped it yet."""
        if self.status_of(pid) is None:
            self._send(kind="signal", pid=pid, signal=number)

    def errors(self) -> str:
        """What the fork server wrote to its stderr."""
        self._errors.seek(0)
        return self._errors.read().decode(errors="replace")

    def close(self) -> None:
        """End the fork server and, with it, every child still running; waits for it."""
        if self._process.stdin is not None and not self._process.stdin.closed:
            self._process.stdin.close()
        try:
            self._process.wait(_CLOSE_BOUND_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _send(self, **request: Any) -> None:
        assert self._process.stdin is not None
        line = json.dumps(request).encode() + b"\n"
        try:
            with self._sending:
                self._process.stdin.write(line)
                self._process.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise RuntimeError(f"the fork server has ended: {self.errors()}") from None

    def _listen(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            message = json.loads(line)
            with self._heard:
                if message["kind"] == "exited":
                    self._exits[message["pid"]] = message["status"]
                else:
                    self._started[message["request"]] = message.get("pid", message.get("error", "?"))
                self._heard.notify_all()
        with self._heard:
            self._ended = True
            self._heard.notify_all()


_server: ForkServer | None = None
_server_guard = threading.Lock()


def fork_server() -> ForkServer:
    """The fork server of this process, started on first use; it ends when this process closes it or exits."""
    global _server
    with _server_guard:
        if _server is None or _server.owner != os.getpid():
            _server = ForkServer()
            atexit.register(_server.close)
        return _server


def close_fork_server() -> None:
    """End this process's fork server, if it started one, and reap it."""
    global _server
    with _server_guard:
        if _server is not None and _server.owner == os.getpid():
            _server.close()
        _server = None


def forking_allowed() -> bool:
    """Whether the tests may fork their services (TESTS_NO_FORK_SERVER=1 says no)."""
    return os.environ.get(NO_FORK_VARIABLE, "") != "1"


# The fork server's side, run as `python -m tests.support.service_forks`: it
# reads requests from stdin and writes answers to stdout, one JSON object a line.

_REQUESTS = 0
_ANSWERS = 1
Handler = Callable[[int, FrameType | None], Any] | int | None


class _Zygote:
    """The fork server's loop: fork on request, signal its children on request, reap them and report."""

    def __init__(self) -> None:
        # As this interpreter started, so as a service's own would start: each child gets them back.
        self._handlers: dict[int, Handler] = {number: signal.getsignal(number) for number in signal.valid_signals()}
        # Ctrl-C reaches the services themselves; the fork server ends when the tests do.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._children: set[int] = set()
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def run(self) -> None:
        """Preload, then serve requests until stdin closes; then kill and reap the children left."""
        for name in PRELOADED:
            try:
                importlib.import_module(name)
            except Exception:  # the child imports it anew, and fails there as a fresh start would
                print(f"fork server: cannot preload {name}:\n{traceback.format_exc()}", file=sys.stderr)
        # Only the forking thread survives a fork: a lock another held would stay held in the child.
        threads = len(os.listdir("/proc/self/task"))
        if threads != 1:
            raise SystemExit(f"fork server: {threads} threads after the imports; it forks only with one")
        signal.set_wakeup_fd(self._wake_write)
        signal.signal(signal.SIGCHLD, lambda number, frame: None)
        try:
            self._serve()
        finally:
            for pid in self._children:
                os.kill(pid, signal.SIGKILL)
            for pid in self._children:
                os.waitpid(pid, 0)

    def _serve(self) -> None:
        pending = b""
        while True:
            readable, _, _ = select.select([_REQUESTS, self._wake_read], [], [])
            if self._wake_read in readable:
                while True:
                    try:
                        os.read(self._wake_read, 512)
                    except BlockingIOError:
                        break
            self._reap()
            if _REQUESTS in readable:
                data = os.read(_REQUESTS, 1 << 16)
                if not data:
                    return
                *lines, pending = (pending + data).split(b"\n")
                for line in lines:
                    self._answer(json.loads(line))

    def _answer(self, request: dict[str, Any]) -> None:
        if request["kind"] == "signal":
            # Only a child not yet reaped: the pid of one reaped may be another process's by now.
            if request["pid"] in self._children:
                os.kill(request["pid"], request["signal"])
            return
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as error:
            self._tell(kind="started", request=request["request"], error=str(error))
            return
        if pid == 0:
            self._become_service(request)
        self._children.add(pid)
        self._tell(kind="started", request=request["request"], pid=pid)

    def _reap(self) -> None:
        while self._children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            self._children.discard(pid)
            self._tell(kind="exited", pid=pid, status=os.waitstatus_to_exitcode(status))

    def _tell(self, **answer: Any) -> None:
        line = json.dumps(answer).encode() + b"\n"
        while line:
            line = line[os.write(_ANSWERS, line) :]

    def _become_service(self, request: dict[str, Any]) -> NoReturn:
        """In the child: take the service's signals, descriptors, environment and directory, run it and exit."""
        status = 1
        try:
            parent = os.getppid()
            signal.set_wakeup_fd(-1)
            os.close(self._wake_read)
            os.close(self._wake_write)
            for number, handler in self._handlers.items():
                if handler is not None and signal.getsignal(number) != handler:
                    signal.signal(number, handler)
            # Killed with the fork server, whatever kills it.
            if self._libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
            if os.getppid() != parent:
                os._exit(1)
            _take_descriptors(Path(request["output"]))
            os.environ.clear()
            os.environ.update(request["environment"])
            os.chdir(request["cwd"])
            # As `python -m` does: the working directory first on the path.
            sys.path[0] = request["cwd"]
            sys.argv = ["", *request["arguments"]]
            random.seed()
            status = _run_as_main(request["module"])
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(status)


def _take_descriptors(output: Path) -> None:
    """Stdin from /dev/null, stdout and stderr appended to ``output``: what the child holds of its parent's goes."""
    null = os.open(os.devnull, os.O_RDONLY)
    written = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    os.dup2(null, 0)
    os.dup2(written, 1)
    os.dup2(written, 2)
    os.close(null)
    os.close(written)


def _run_as_main(module: str) -> int:
    """Run ``module`` as ``python -m`` would, and end as the interpreter does; returns its exit status."""
    interrupted = False
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        status = 0
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            status = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            status = 1
    except BaseException as error:
        sys.excepthook(type(error), error, error.__traceback__)
        status = 1
        interrupted = isinstance(error, KeyboardInterrupt)
    # The interpreter's own end: wait for the threads that are not daemons, run atexit, flush.
    getattr(threading, "_shutdown")()  # noqa: B009 - private, as the interpreter calls it
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if interrupted:
        # An interrupt no one caught ends the interpreter by SIGINT itself, so its parent sees it.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return status


if __name__ == "__main__":
    _Zygote().run()
