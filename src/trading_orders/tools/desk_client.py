"""The read commands of the command line: positions, orders and trades from a running service.

`follow` borrows the error text from here. requests and rich are imported by the functions that
use them, so that `--help` and `follow` import at start-up only what they use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol, TextIO

from trading_orders.tools.text_table import Column, table_lines

# Each command's columns, and which to leave out first when they do not fit the width.
COLUMNS = {
    "positions": (
        Column("user", wraps=True),
        Column("strategy", wraps=True),
        Column("instrument", wraps=True),
        Column("order_id"),
        Column("opened_at"),
    ),
    "orders": (
        Column("sequence"),
        Column("received_at"),
        Column("strategy", wraps=True),
        Column("instrument", wraps=True),
        Column("position"),
        Column("RESPONSE"),
        Column("decisions", wraps=True),
    ),
    "trades": (
        Column("user", wraps=True),
        Column("strategy", wraps=True),
        Column("instrument", wraps=True),
        Column("bought_at"),
        Column("sold_at"),
        Column("holding_seconds"),
    ),
}
# The sequence orders the log, the sold_at and holding_seconds of a trade give its bought_at, and
# an order's decisions say more than its position: these go first.
DROP_FIRST = {
    "positions": ("order_id", "opened_at"),
    "orders": ("received_at", "position", "instrument"),
    "trades": ("bought_at", "holding_seconds", "instrument"),
}


class ServiceError(RuntimeError):
    """The service could not be reached or refused the request; the message says which."""


def ask(
    url: str,
    method: str,
    path: str,
    api_key: str | None,
    *,
    timeout: float,
    params: Mapping[str, str] | None = None,
    body: Mapping[str, Any] | None = None,
    user_agent: str | None = None,
) -> Any:
    """The JSON the service at ``url`` answers ``method`` ``path`` with; ServiceError when unreachable or refused."""
    import requests

    headers = {"User-Agent": user_agent} if user_agent else {}
    if api_key:
        headers["X-API-Key"] = api_key
    try:
        answer = requests.request(
            method, f"{url.rstrip('/')}{path}", params=params, json=body, headers=headers, timeout=timeout
        )
    except requests.RequestException as error:
        raise ServiceError(f"cannot reach the service at {url}: {error}") from error
    if answer.status_code != 200:
        raise ServiceError(f"{method} {path} answered {refusal(answer)}")
    return answer.json()


def fetch(url: str, what: str, filters: dict[str, str], api_key: str | None) -> list[dict[str, Any]]:
    """The rows GET ``url``/``what`` answers for ``filters`` (one page for orders and trades)."""
    rows: list[dict[str, Any]] = ask(url, "GET", f"/{what}", api_key, timeout=30, params=filters)[what]
    return rows


def decisions_cell(order: dict[str, Any], separator: str = ", ") -> str:
    """Each user's decision of ``order`` as "user: ACCEPTED|reason", or the order's own reason."""
    users = separator.join(f"{d['user']}: {d['reason'] or d['status']}" for d in order.get("decisions") or [])
    # An order rejected as a whole (UNKNOWN_STRATEGY) has no per-user decisions, only its reason.
    return users or str(order.get("reason") or "")


class HttpAnswer(Protocol):
    """What refusal reads of an answer, as requests' responses have it."""

    @property
    def status_code(self) -> int:
        """The HTTP status."""

    @property
    def headers(self) -> Mapping[str, str]:
        """The answer's headers, looked up without regard to case."""

    @property
    def text(self) -> str:
        """The body, decoded."""

    def json(self) -> Any:
        """The body, parsed as JSON."""


def refusal(answer: HttpAnswer) -> str:
    """What an error answer says: its status, and the problem's title and detail when it is one (RFC 9457)."""
    media_type = answer.headers.get("Content-Type", "").split(";")[0].strip()
    if media_type == "application/problem+json":
        try:
            problem = answer.json()
        except ValueError:
            problem = None
        if isinstance(problem, dict) and isinstance(problem.get("detail"), str):
            return f"{answer.status_code} {problem.get('title', '')}: {problem['detail']}"
    # Not a problem of this service (a proxy's page, uvicorn's plain text): as it came, cut short.
    return f"{answer.status_code}: {answer.text[:500]}"


def _cell(column: str, row: dict[str, Any]) -> str:
    if column == "decisions":
        # One line each: a user's name is never split from their decision by the table's wrapping.
        return decisions_cell(row, separator="\n")
    value = row.get(column)
    return "" if value is None else str(value)


def show(what: str, rows: list[dict[str, Any]], as_json: bool, out: TextIO, width: int) -> None:
    """Print ``rows`` as a table ``width`` characters wide for people, or as JSON lines for machines."""
    if as_json:
        if out.isatty():
            from rich.console import Console

            console = Console(file=out)
            for row in rows:
                console.print_json(json.dumps(row))
        else:
            for row in rows:
                out.write(json.dumps(row) + "\n")
        return
    columns = COLUMNS[what]
    cells = [[_cell(column.name, row) for column in columns] for row in rows]
    for line in table_lines(f"{what} ({len(rows)})", columns, cells, width, DROP_FIRST[what]):
        out.write(line + "\n")
