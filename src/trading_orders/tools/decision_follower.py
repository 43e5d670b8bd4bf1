"""`trading-orders follow`: print the service's decisions as they are logged, resuming where it left off.

The pattern a downstream system (an executor, a risk monitor) copies: read
GET /events from the last sequence handled, handle each order, then record
its sequence durably; after a crash or a restart of either side, resume
from the recorded sequence. Stopped by SIGTERM or SIGINT, it finishes the
order in hand and records it first, so each order is handled exactly once;
killed outright, the one order being handled may be handled again on
restart (the same sequence: a handler that records it can tell).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import requests
from sseclient import Event, SSEClient

from trading_orders.atomic_file import write_atomically
from trading_orders.tools.desk_client import ServiceError, decisions_cell, refusal

# Waits between attempts to reach the service: doubling, at most this long.
MOST_SECONDS_BETWEEN_ATTEMPTS = 10.0
# Longer than the stream's 15 s heartbeat: silence past it means a dead connection.
READ_TIMEOUT_SECONDS = 45.0
# A service that has not accepted the connection by then is treated as down, and tried again.
CONNECT_TIMEOUT_SECONDS = 30.0


class StateFileError(RuntimeError):
    """The state file cannot be read or written; the message says which and why."""


@dataclass(frozen=True)
class ResumeState:
    """The file that holds the last sequence handled, written atomically."""

    path: Path

    def load(self) -> int | None:
        """The last sequence handled, None when there is no state file yet."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StateFileError(f"cannot read the state file {self.path}: {error.strerror}") from error
        try:
            sequence = json.loads(text)["last_sequence"]
        except (ValueError, KeyError, TypeError) as error:
            raise StateFileError(f"the state file {self.path} is not one this command wrote: {text[:80]!r}") from error
        if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
            raise StateFileError(f"the state file {self.path} holds no sequence: {text[:80]!r}")
        return sequence

    def save(self, sequence: int) -> None:
        """Record ``sequence`` as handled; durable when this returns."""
        try:
            write_atomically(self.path, json.dumps({"last_sequence": sequence}).encode() + b"\n")
        except OSError as error:
            raise StateFileError(f"cannot write the state file {self.path}: {error.strerror}") from error


class _Stopped(Exception):
    """SIGTERM or SIGINT arrived outside the handling of an order."""


class _StopSignals:
    """Lets a stop signal end the follower at once, except while an order is handled and recorded."""

    def __init__(self) -> None:
        self.requested = False
        self._handling = False

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        self.requested = True
        if not self._handling:
            raise _Stopped

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Catch SIGTERM and SIGINT for the duration of the block."""
        previous = {number: signal.signal(number, self._on_signal) for number in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    @contextmanager
    def handling(self) -> Iterator[None]:
        """A block a stop signal does not interrupt; a stop asked for during it ends the follower after it."""
        self._handling = True
        try:
            yield
        finally:
            self._handling = False
        if self.requested:
            raise _Stopped


@dataclass
class _Handled:
    """The last sequence the follower handled."""

    sequence: int


def _media_type(answer: requests.Response) -> str:
    """The answer's media type, without its parameters."""
    return answer.headers.get("Content-Type", "").split(";")[0].strip()


def order_line(order: dict[str, Any]) -> str:
    """One order as a line for people: sequence, time, order, answer, and each user's decision."""
    return "  ".join(
        [
            str(order["sequence"]).rjust(8),
            order["received_at"],
            f"{order['strategy']} {order['instrument']} {order['position']}",
            order["RESPONSE"],
            decisions_cell(order),
        ]
    )


@dataclass
class DecisionFollower:
    """Follows GET /events of the service at ``url`` with ``filters``, printing each order to ``out``."""

    url: str
    filters: dict[str, str]
    api_key: str | None
    as_json: bool
    out: TextIO
    state: ResumeState | None = None
    # For tests: the pause between attempts, given the attempt's number.
    pause: Callable[[int], float] = lambda attempt: min(MOST_SECONDS_BETWEEN_ATTEMPTS, 0.5 * 2**attempt)

    def run(self, after: int | None) -> int:
        """Follow until stopped; returns the exit status (0 stopped by a signal, 1 on an error it cannot outlast)."""
        stops = _StopSignals()
        try:
            with stops.installed():
                last = self.state.load() if self.state is not None else None
                if last is None:
                    last = after if after is not None else self._newest_sequence()
                self._follow_from(last, stops)
        except _Stopped:
            return 0
        except (ServiceError, StateFileError) as error:
            print(f"trading-orders follow: {error}", file=sys.stderr)
            return 1
        return 0

    def _headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def _newest_sequence(self) -> int:
        """Where "from now" is: the newest order's sequence, 0 for an empty log."""
        try:
            answer = requests.get(
                f"{self.url.rstrip('/')}/orders", params={"limit": 1}, headers=self._headers(), timeout=30
            )
        except requests.RequestException as error:
            raise ServiceError(f"cannot reach the service at {self.url}: {error}") from error
        if answer.status_code != 200:
            raise ServiceError(f"GET /orders answered {answer.status_code}: {answer.text}")
        orders: list[dict[str, Any]] = answer.json()["orders"]
        return int(orders[0]["sequence"]) if orders else 0

    def _follow_from(self, last: int, stops: _StopSignals) -> None:
        attempt = 0
        # Outlives a connection that breaks mid-stream, so the next resumes after the last handled.
        handled = _Handled(last)
        with requests.Session() as session:
            while True:
                try:
                    with session.get(
                        f"{self.url.rstrip('/')}/events",
                        params=self.filters,
                        headers={
                            **self._headers(),
                            "Accept": "text/event-stream",
                            "Last-Event-ID": str(handled.sequence),
                        },
                        stream=True,
                        timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
                    ) as answer:
                        if answer.status_code != 200:
                            self._refused(answer)
                        elif _media_type(answer) != "text/event-stream":
                            # Not the service's stream (a proxy's page, say): a misrouting a retry may outlast.
                            print(
                                f"trading-orders follow: {self.url}: GET /events answered {_media_type(answer)!r}, "
                                "not an event stream; retrying",
                                file=sys.stderr,
                            )
                        else:
                            attempt = 0
                            print(
                                f"trading-orders follow: following {self.url} after {handled.sequence}", file=sys.stderr
                            )
                            # chunk_size=None: each chunk as it arrives, never waiting to fill a buffer.
                            events = SSEClient(answer.iter_content(chunk_size=None)).events()
                            self._read(events, handled, stops)
                except requests.RequestException as error:
                    print(f"trading-orders follow: {self.url}: {error}; retrying", file=sys.stderr)
                except (json.JSONDecodeError, UnicodeDecodeError) as error:
                    # The parser hands on what it has when a stream that is not chunked ends mid-event:
                    # data cut short is no JSON, and nothing of it was handled or recorded.
                    print(f"trading-orders follow: {self.url}: an event cut short ({error}); retrying", file=sys.stderr)
                # The stream ended (a restart, a resume event) or broke: resume after the last handled.
                time.sleep(self.pause(attempt))
                attempt += 1

    def _read(self, events: Iterator[Event], handled: _Handled, stops: _StopSignals) -> None:
        """Handle the events of one connection, keeping in ``handled`` the last sequence handled."""
        for event in events:
            if event.event == "order":
                order = json.loads(event.data)
                with stops.handling():
                    self._handle(order)
                    self._record(handled, int(order["sequence"]))
            elif event.event == "control":
                change = json.loads(event.data)
                with stops.handling():
                    self._handle_control(change)
                    self._record(handled, int(change["sequence"]))
            elif event.event in ("progress", "resume"):
                data = json.loads(event.data)
                with stops.handling():
                    self._record(handled, int(data["sequence"] if event.event == "progress" else data["after"]))
                if event.event == "resume":
                    print(
                        f"trading-orders follow: {data['reason']}; resuming after {handled.sequence}", file=sys.stderr
                    )

    def _record(self, handled: _Handled, sequence: int) -> None:
        """Note ``sequence`` as handled, in the state file too when there is one."""
        handled.sequence = sequence
        if self.state is not None:
            self.state.save(sequence)

    def _refused(self, response: requests.Response) -> None:
        """Raise ServiceError for a refusal that retrying does not change; a 503 is retried."""
        said = refusal(response)
        if response.status_code != 503:
            raise ServiceError(f"GET /events answered {said}")
        print(f"trading-orders follow: the service is not ready ({said}); retrying", file=sys.stderr)

    def _handle_control(self, change: dict[str, Any]) -> None:
        """Print one control change (a halt, a limit, a flatten), and push it out before its sequence is recorded."""
        from trading_orders.tools.control_client import change_line

        # As JSON, a change is told from an order by its "action" (an order has "RESPONSE").
        self.out.write((json.dumps(change) if self.as_json else f"{' ' * 8}  CONTROL {change_line(change)}") + "\n")
        self.out.flush()

    def _handle(self, order: dict[str, Any]) -> None:
        """Print one order, and push it out before its sequence is recorded."""
        self.out.write((json.dumps(order) if self.as_json else order_line(order)) + "\n")
        self.out.flush()
