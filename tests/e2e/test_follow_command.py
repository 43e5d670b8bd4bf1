"""`trading-orders follow` as a real subprocess against a real service: every order, once, across stops."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import ServiceFactory

PROFILE = {"U1": {"S1": ["ACC", "INFY"]}, "U2": {"S1": ["ACC"]}}
# Orders streamed while the follower is stopped and restarted three times:
# enough that the stream outlasts the restarts on a slow machine.
ORDERS = 120


class Follower:
    """`trading-orders follow --json` writing to a file, started and stopped by the test."""

    def __init__(self, base_url: str, output: Path, *args: str) -> None:
        self._command = [sys.executable, "-m", "trading_orders", "follow", "--url", base_url, "--json", *args]
        self._output = output
        self.errors = output.with_suffix(".err")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it, appending to the output file, and wait until it follows the stream."""
        connected = self.connections()
        with open(self._output, "ab") as out, open(self.errors, "ab") as errors:
            self._process = subprocess.Popen(self._command, stdout=out, stderr=errors, stdin=subprocess.DEVNULL)
        # Until then it has not installed its signal handlers, nor learnt where "now" is.
        wait_for(lambda: self.connections() > connected)

    def connections(self) -> int:
        """How many times it has connected to the stream so far."""
        return self.errors.read_text().count(": following ") if self.errors.exists() else 0

    def stop(self, how: signal.Signals) -> int:
        """Send ``how`` and wait for it to exit; returns its exit status."""
        assert self._process is not None
        self._process.send_signal(how)
        return self._process.wait(timeout=20)

    def sequences(self) -> list[int]:
        """The sequence of every order it printed, in the order printed."""
        return [json.loads(line)["sequence"] for line in self._output.read_text().splitlines()]


def wait_for(condition: Any, timeout: float = 20.0) -> None:
    """Poll ``condition()`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def stream_orders(base_url: str, count: int, gap: float) -> threading.Thread:
    """Start a thread that places ``count`` orders, BUY and SELL of ACC, ``gap`` seconds apart."""

    def place_all() -> None:
        for n in range(count):
            body = {"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "BUY" if n % 2 == 0 else "SELL"}
            requests.post(f"{base_url}/create_order", json=body, timeout=10).raise_for_status()
            time.sleep(gap)

    thread = threading.Thread(target=place_all)
    thread.start()
    return thread


def follow_through_stops(service_url: str, tmp_path: Path, how: signal.Signals) -> tuple[Follower, list[int]]:
    """Follow ORDERS orders with --state, stopped by ``how`` and restarted three times mid-stream.

    Returns the follower, stopped, and how many lines it had printed at each stop.
    """
    state = tmp_path / "follow.state"
    follower = Follower(service_url, tmp_path / "out.jsonl", "--after", "0", "--state", str(state))
    follower.start()
    placing = stream_orders(service_url, ORDERS, 0.05)
    stops = []
    for _ in range(3):
        before = len(follower.sequences())
        # A few orders printed by this run: it is past its start-up, mid-stream.
        wait_for(lambda: len(follower.sequences()) >= before + 3)  # noqa: B023
        status = follower.stop(how)
        assert how == signal.SIGKILL or status == 0, status
        stops.append(len(follower.sequences()))
        follower.start()
    placing.join()
    wait_for(lambda: ORDERS in follower.sequences())
    assert follower.stop(signal.SIGINT) == 0
    assert json.loads(state.read_text()) == {"last_sequence": ORDERS}
    return follower, stops


@pytest.mark.slow
def test_stopped_and_restarted_mid_stream_it_handles_every_order_exactly_once(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    with service_factory(PROFILE) as service:
        follower, _ = follow_through_stops(service.base_url, tmp_path, signal.SIGTERM)
        assert follower.sequences() == list(range(1, ORDERS + 1))


@pytest.mark.slow
def test_killed_outright_it_loses_nothing_and_repeats_at_most_the_order_in_hand(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    with service_factory(PROFILE) as service:
        follower, kills = follow_through_stops(service.base_url, tmp_path, signal.SIGKILL)
        printed = follower.sequences()
        # A repeat is the first line after a kill saying again the last line before it.
        repeats = [i for i in range(1, len(printed)) if printed[i] == printed[i - 1]]
        assert all(i in kills for i in repeats), (printed, kills)
        assert [s for i, s in enumerate(printed) if i not in repeats] == list(range(1, ORDERS + 1))


def test_a_follower_that_falls_behind_resumes_by_itself_and_misses_nothing(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    with service_factory(PROFILE, events_buffer="2", events_poll_seconds="0.5") as service:
        follower = Follower(service.base_url, tmp_path / "out.jsonl", "--after", "0")
        follower.start()
        stream_orders(service.base_url, 1, 0.0).join()
        # Printed: the follower has caught up and follows live, where its buffer holds 2.
        wait_for(lambda: len(follower.sequences()) == 1)
        # Six clients at once: their orders commit together, faster than a buffer of 2 drains.
        for placing in [stream_orders(service.base_url, 5, 0.0) for _ in range(6)]:
            placing.join()
        wait_for(lambda: len(follower.sequences()) >= 31)
        assert follower.stop(signal.SIGTERM) == 0
        assert follower.sequences() == list(range(1, 32))
        assert "resuming after" in follower.errors.read_text(), "it was cut off at least once"


def test_a_service_killed_mid_stream_is_followed_again_after_the_last_order_printed(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    with service_factory(PROFILE) as service:
        follower = Follower(service.base_url, tmp_path / "out.jsonl", "--after", "0")
        follower.start()
        stream_orders(service.base_url, 5, 0.0).join()
        wait_for(lambda: len(follower.sequences()) == 5)
        # Killed, the service breaks the stream mid-body; back on its port, it is reached again.
        service.kill()
        service.start(same_port=True)
        stream_orders(service.base_url, 2, 0.0).join()
        wait_for(lambda: 7 in follower.sequences())
        assert follower.stop(signal.SIGTERM) == 0
        assert follower.sequences() == list(range(1, 8)), "nothing printed twice after the break"
        assert "retrying" in follower.errors.read_text(), "the stream did break"


@pytest.mark.slow
def test_from_now_on_by_default_with_filters_and_refusals_that_say_what_is_wrong(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    with service_factory(PROFILE) as service:
        stream_orders(service.base_url, 3, 0.0).join()
        follower = Follower(service.base_url, tmp_path / "out.jsonl", "--status", "REJECTED")
        follower.start()
        # 1-3 were BUY, SELL, BUY: 4, a BUY, is rejected (both hold ACC), 5, a SELL,
        # accepted, and 6, a SELL, rejected (nothing open).
        stream_orders(service.base_url, 2, 0.0).join()
        body = {"STRATEGY": "S1", "INSTRUMENT": "ACC", "POSITION": "SELL"}
        requests.post(f"{service.base_url}/create_order", json=body, timeout=10).raise_for_status()
        wait_for(lambda: len(follower.sequences()) >= 2)
        time.sleep(0.5)
        assert follower.stop(signal.SIGTERM) == 0
        assert follower.sequences() == [4, 6], "only orders after the start, and only the rejected ones"
        bad_state = tmp_path / "bad.state"
        bad_state.write_text("not json")
        refused = subprocess.run(
            [sys.executable, "-m", "trading_orders", "follow", "--url", service.base_url, "--state", str(bad_state)],
            capture_output=True,
            text=True,
            timeout=30,
            env=os.environ,
        )
        assert refused.returncode == 1 and "is not one this command wrote" in refused.stderr
        ahead = subprocess.run(
            [sys.executable, "-m", "trading_orders", "follow", "--url", service.base_url, "--after", "99"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert ahead.returncode == 1 and "answered 409" in ahead.stderr and "beyond" in ahead.stderr
        not_a_number = subprocess.run(
            [sys.executable, "-m", "trading_orders", "follow", "--after", "²"], capture_output=True, text=True
        )
        assert not_a_number.returncode == 2 and "expected a sequence" in not_a_number.stderr
