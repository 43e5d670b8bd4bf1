"""The log file over real HTTP: whatever a client sends, every line is one of the service's own (CWE-117)."""

import json
import re
import time
from pathlib import Path
from urllib.parse import quote

import requests

from tests.e2e.conftest import ServiceFactory
from tests.support.service_process import ServiceProcess

PROFILE = {"U1": {"S1": ["ACC"]}}
FORGED_TIME = "2026-11-26T00:00:00.000Z"
FORGED_LINE = f"{FORGED_TIME} INFO trading_orders.application.order_service: order deadbeef #1 S1 ACC BUY -> ACCEPTED"
# A forged line as short as a name must be (64 characters).
FORGED_NAME = f"{FORGED_TIME} INFO deadbeef"
# The forged line after each kind of line break a log reader might honour:
# LF (the reproduction), CR, CR LF, NEL (U+0085), the line and
# paragraph separators, and an ANSI "erase line, back to column 0".
BREAKS = ["%0A", "%0D", "%0D%0A", "%C2%85", "%E2%80%A8", "%E2%80%A9", "%1B%5B2K%0D"]
OWN_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


def send_forgeries(service: ServiceProcess, headers: dict[str, str]) -> list[int]:
    """Send the forged line in a path after every kind of break, and in an order's STRATEGY; the statuses."""
    statuses = []
    encoded = quote(FORGED_LINE, safe="")
    for line_break in BREAKS:
        answer = requests.get(f"{service.base_url}/x{line_break}{encoded}", headers=headers, timeout=5)
        statuses.append(answer.status_code)
    # Names may hold U+2028: the order is decided (no user runs that strategy) and, at DEBUG, logged.
    body = {"STRATEGY": f"S1\u2028{FORGED_NAME}", "INSTRUMENT": "ACC", "POSITION": "BUY"}
    statuses.append(
        requests.post(f"{service.base_url}/create_order", json=body, headers=headers, timeout=5).status_code
    )
    return statuses


def read_log(directory: Path) -> str:
    """The service's log file, once its writer thread has flushed it."""
    deadline = time.monotonic() + 5
    path = directory / "trading_orders.log"
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.read_text(encoding="utf-8")


def test_no_request_writes_a_line_of_its_own_with_or_without_the_api_key(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    with service_factory(PROFILE, log_level="DEBUG") as open_service:
        assert send_forgeries(open_service, {}) == [404] * len(BREAKS) + [200]
    with service_factory(PROFILE, log_level="DEBUG", api_key="the-desk-key") as guarded:
        # Refused by the key guard, which logs the path too: without a key and with a wrong one.
        assert send_forgeries(guarded, {}) == [401] * (len(BREAKS) + 1)
        assert send_forgeries(guarded, {"X-API-Key": "a-guess"}) == [401] * (len(BREAKS) + 1)
    log = read_log(tmp_path / "logs")

    # Split on LF only: str.splitlines() would also split on the very
    # characters under test, and a reader that does must find none of them.
    lines = log.split("\n")
    assert lines[-1] == "" and len(lines) > 20
    for line in lines[:-1]:
        assert not line.startswith(FORGED_TIME), line
        assert OWN_LINE.match(line), line
    for character in ("\r", "\x85", "\u2028", "\u2029", "\x1b"):
        assert character not in log
    # Each forgery was logged, escaped, inside the service's own line: served, refused, and in a body.
    assert f"GET /x\\n{FORGED_LINE} 404" in log
    assert f"refused GET /x\\u2028{FORGED_LINE} from 127.0.0.1: X-API-Key missing" in log
    assert f"refused GET /x\\x1b[2K\\r{FORGED_LINE} from 127.0.0.1: X-API-Key wrong" in log
    assert f"S1\\u2028{FORGED_NAME} ACC BUY -> REJECTED UNKNOWN_STRATEGY" in log


def test_json_lines_logs_are_one_object_per_line_whatever_a_client_sends(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    with service_factory(PROFILE, log_level="DEBUG", log_format="json") as service:
        assert send_forgeries(service, {}) == [404] * len(BREAKS) + [200]
    lines = read_log(tmp_path / "logs").split("\n")
    assert lines[-1] == "" and len(lines) > 10
    records = [json.loads(line) for line in lines[:-1]]
    for record in records:
        assert {"timestamp", "level", "logger", "message"} <= record.keys(), record
        assert record["timestamp"].endswith("+00:00")
    messages = [record["message"] for record in records]
    assert f"GET /x\n{FORGED_LINE} 404" in " ".join(messages), "the path is in a message, as sent"
