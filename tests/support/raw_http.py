"""One HTTP request with its headers exactly as given: repeated, blank or padded, which requests refuses to send."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass

from tests.support.service_process import LOOPBACK


@dataclass(frozen=True)
class RawAnswer:
    """The status, headers (names in lower case) and body of an answer."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        """The body read as a JSON object."""
        parsed: dict[str, object] = json.loads(self.body)
        return parsed


def send(port: int, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"") -> RawAnswer:
    """Send one request to 127.0.0.1:``port`` with ``headers`` in order, and Content-Length unless among them."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        if not any(name.lower() == "content-length" for name, _ in headers):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return RawAnswer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()
