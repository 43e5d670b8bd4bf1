"""A plain reader of the service's GET /events over one HTTP connection, and who serves that connection."""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit


@dataclass(frozen=True)
class StreamEvent:
    """One Server-Sent Event as it arrived."""

    event: str
    id: str | None
    data: str

    def json(self) -> Any:
        """The event's data, decoded."""
        return json.loads(self.data)


class EventStreamReader:
    """Reads GET /events event by event: http.client, so the socket and its port are at hand."""

    def __init__(
        self,
        base_url: str,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        """Open the stream with these query parameters and headers; raises AssertionError unless it is 200."""
        address = urlsplit(base_url)
        self.connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=timeout)
        query = f"?{urlencode(params)}" if params else ""
        self.connection.request("GET", f"/events{query}", headers={"Accept": "text/event-stream", **(headers or {})})
        self.response = self.connection.getresponse()
        if self.response.status != 200:
            raise AssertionError(f"/events answered {self.response.status}: {self.response.read()!r}")
        assert self.response.getheader("content-type", "").startswith("text/event-stream")

    @property
    def local_port(self) -> int:
        """The client side's port of the connection."""
        assert self.connection.sock is not None
        port: int = self.connection.sock.getsockname()[1]
        return port

    def next_event(self) -> StreamEvent | None:
        """The next event (comments and pings skipped), None when the stream ended."""
        event, event_id, data = "message", None, list[str]()
        while True:
            raw = self.response.readline()
            if not raw:
                return None
            line = raw.decode().rstrip("\r\n")
            if line == "":
                if data or event_id is not None:
                    return StreamEvent(event, event_id, "\n".join(data))
                event, event_id, data = "message", None, []
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "id":
                event_id = value
            elif field == "data":
                data.append(value)

    def orders(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The next ``count`` order events' bodies; raises AssertionError when the stream ends or stalls first."""
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(found)} of {count} orders arrived in {timeout} s")
            event = self.next_event()
            if event is None:
                raise AssertionError(f"the stream ended after {len(found)} of {count} orders")
            if event.event == "order":
                body = event.json()
                assert event.id == str(body["sequence"])
                found.append(body)
        return found

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


def worker_pids(master_pid: int) -> list[int]:
    """The processes whose parent is ``master_pid`` (uvicorn's workers)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == master_pid:
                children.append(int(entry.name))
    return children


def serving_pid(service_port: int, client_port: int, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the server side of the loopback connection from ``client_port``."""
    wanted = f"0100007F:{service_port:04X}", f"0100007F:{client_port:04X}"
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[1], fields[2]) == wanted:
            inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        try:
            if any(os.readlink(fd) == f"socket:[{inode}]" for fd in Path(f"/proc/{pid}/fd").iterdir()):
                return pid
        except OSError:
            continue
    return None
