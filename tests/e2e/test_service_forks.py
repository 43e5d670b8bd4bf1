"""The tests' fork server: a forked service is the real one in a process of its own, and ends as a new one would."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import ROOT, SCRIPTS, ServiceFactory
from tests.support.service_forks import NO_FORK_VARIABLE, ForkServer, fork_server, forking_allowed
from tests.support.service_process import LOOPBACK, ServiceProcess, free_port

PROFILE = {"U1": {"S1": ["ACC", "INFY"]}}
ORDER = {"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "BUY"}
# For the tests of what a fork is: with the fork server turned off, no service is one.
forks_only = pytest.mark.skipif(not forking_allowed(), reason=f"{NO_FORK_VARIABLE}=1 turns the fork server off")


def parent_of(pid: int) -> int:
    """The parent process id of ``pid``, as the kernel has it."""
    found = re.search(r"^PPid:\s+(\d+)$", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    assert found is not None
    return int(found.group(1))


ServiceIn = Callable[..., ServiceProcess]


@pytest.fixture
def service_in() -> Iterator[ServiceIn]:
    """Builds (not starts) services over data of their own in a directory; kills those left at the end."""
    made: list[ServiceProcess] = []

    def make(directory: Path, forked: bool = True, **settings: str) -> ServiceProcess:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "profile.json").write_text(json.dumps(PROFILE))
        environment = {
            "TRADING_ORDERS_DATA_DIR": str(directory / "data"),
            "TRADING_ORDERS_PROFILE_PATH": str(directory / "profile.json"),
            "TRADING_ORDERS_LOG_DIR": str(directory / "logs"),
            **{f"TRADING_ORDERS_{name.upper()}": value for name, value in settings.items()},
        }
        made.append(ServiceProcess(SCRIPTS, environment, directory / "service.out", forked=forked))
        return made[-1]

    yield make
    for service in made:
        service.kill()


@forks_only
def test_a_forked_service_is_a_child_of_the_fork_server_in_its_own_directory_and_output(
    tmp_path: Path, service_in: ServiceIn
) -> None:
    with service_in(tmp_path) as service:
        assert requests.get(f"{service.base_url}/health", timeout=10).status_code == 200
        server = fork_server()
        assert service.pid != server.pid
        assert parent_of(service.pid) == server.pid
        assert parent_of(server.pid) == os.getpid()
        assert Path(f"/proc/{service.pid}/cwd").resolve() == SCRIPTS
        output = str(tmp_path / "service.out")
        assert [os.readlink(f"/proc/{service.pid}/fd/{fd}") for fd in range(3)] == [os.devnull, output, output]
    assert "starting: store tinydb" in service.output()


@forks_only
@pytest.mark.parametrize(
    ("how", "status"),
    # uvicorn drains on SIGTERM, then raises it again on itself.
    [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, -signal.SIGTERM)],
)
def test_a_signal_ends_a_forked_service_with_the_status_of_a_new_one_and_leaves_no_zombie(
    tmp_path: Path, service_in: ServiceIn, how: signal.Signals, status: int
) -> None:
    statuses = []
    for forked in (True, False):
        service = service_in(tmp_path / str(forked), forked=forked).start()
        assert (parent_of(service.pid) == os.getpid()) is not forked
        os.kill(service.pid, how)
        statuses.append(service.stop())
        # Reported once reaped: nothing is left of the process, not even a zombie.
        assert not Path(f"/proc/{service.pid}").exists()
    assert statuses == [status, status]


def test_a_service_that_cannot_start_ends_with_the_status_and_words_of_a_new_one(
    tmp_path: Path, service_in: ServiceIn
) -> None:
    (tmp_path / "a file").write_text("")
    ends = []
    for forked in (True, False):
        service = service_in(tmp_path / str(forked), forked=forked, data_dir=str(tmp_path / "a file" / "data"))
        with pytest.raises(RuntimeError, match=r"service exited with (-?\d+)") as refused:
            service.start()
        # The last line, less its time.
        ends.append((str(refused.value).split(":")[0], service.output().splitlines()[-1].split(" ", 1)[1]))
    assert ends[0] == ends[1]
    assert "data directory" in ends[0][1]


@forks_only
def test_each_forked_service_reads_its_own_settings(tmp_path: Path, service_in: ServiceIn) -> None:
    with service_in(tmp_path / "first") as first, service_in(tmp_path / "second", position_scope="user") as second:
        answers = [requests.post(f"{s.base_url}/create_order", json=ORDER, timeout=10).json() for s in (first, second)]
        assert parent_of(first.pid) == parent_of(second.pid) == fork_server().pid
    assert answers[0]["order_id"] != answers[1]["order_id"]
    for directory, answer in zip(("first", "second"), answers, strict=True):
        assert answer["order_id"] in (tmp_path / directory / "data" / "order_log.jsonl").read_text()
    assert "position scope strategy" in first.output()
    assert "position scope user" in second.output()


@pytest.mark.parametrize(
    "how",
    [{"workers": 2}, {"entry": "serve"}, {"wrapper": ["env", "--"]}],
    ids=["workers", "serve", "wrapper"],
)
def test_what_a_fork_cannot_be_starts_a_new_interpreter(
    service_factory: ServiceFactory, how: dict[str, object]
) -> None:
    with service_factory(PROFILE, **how) as service:
        assert parent_of(service.pid) == os.getpid()


@pytest.mark.parametrize(("variable", "value"), [("PYTHONWARNINGS", "error"), (NO_FORK_VARIABLE, "1")])
def test_a_variable_that_changes_how_python_starts_or_no_fork_starts_a_new_interpreter(
    service_factory: ServiceFactory, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with service_factory(PROFILE) as service:
        assert parent_of(service.pid) == os.getpid()


def _answers(port: int) -> bool:
    """Whether the service on ``port`` answers /health within 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            return requests.get(f"http://{LOOPBACK}:{port}/health", timeout=5).status_code == 200
        except requests.ConnectionError:
            time.sleep(0.05)
    return False


def test_closing_the_fork_server_ends_its_services_and_it(tmp_path: Path, service_in: ServiceIn) -> None:
    service = service_in(tmp_path)
    port = free_port()
    server = ForkServer()
    try:
        arguments = ["Order_Handler:app", "--host", LOOPBACK, "--port", str(port)]
        child = server.start("uvicorn", arguments, SCRIPTS, {**os.environ, **service.environment}, tmp_path / "out")
        assert _answers(port)
    finally:
        server.close()
    assert not Path(f"/proc/{child.pid}").exists()
    assert not Path(f"/proc/{server.pid}").exists()


# Run in a process of its own that adopts orphans, so that it (not init) reaps
# the service the dead fork server leaves, and reads how it ended.
_KILLED_SERVER = """
import ctypes, json, os, signal, sys, time
from pathlib import Path
from tests.support.service_forks import ForkServer
PR_SET_CHILD_SUBREAPER = 36
ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1)
port, scripts, environment, output = json.loads(sys.argv[1])
server = ForkServer()
child = server.start("uvicorn", ["Order_Handler:app", "--port", str(port)], Path(scripts), environment, Path(output))
while not Path(output).exists() or "ready:" not in Path(output).read_text():
    time.sleep(0.05)
os.kill(server.pid, signal.SIGKILL)
server.close()
_, status = os.waitpid(child.pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


def test_a_service_dies_with_its_fork_server(tmp_path: Path, service_in: ServiceIn) -> None:
    service = service_in(tmp_path)
    request = [free_port(), str(SCRIPTS), {**os.environ, **service.environment}, str(tmp_path / "out")]
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_SERVER, json.dumps(request)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == 0, killed.stderr
    assert int(killed.stdout) == -signal.SIGKILL
