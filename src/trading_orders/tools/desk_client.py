"""The read commands of the command line: positions, orders and trades from a running service.

`follow` borrows the error text from here and reads with httpx: requests and rich are imported
by the functions that use them, so that it does not pay for them at start-up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rich.console import Console

COLUMNS = {
    "positions": ("user", "strategy", "instrument", "order_id", "opened_at"),
    "orders": ("sequence", "received_at", "strategy", "instrument", "position", "RESPONSE", "decisions"),
    "trades": ("user", "strategy", "instrument", "bought_at", "sold_at", "holding_seconds"),
}


class ServiceError(RuntimeError):
    """The service could not be reached or refused the request; the message says which."""


def fetch(url: str, what: str, filters: dict[str, str], api_key: str | None) -> list[dict[str, Any]]:
    """The rows GET ``url``/``what`` answers for ``filters`` (one page for orders and trades)."""
    import requests

    headers = {"X-API-Key": api_key} if api_key else {}
    try:
        answer = requests.get(f"{url.rstrip('/')}/{what}", params=filters, headers=headers, timeout=30)
    except requests.RequestException as error:
        raise ServiceError(f"cannot reach the service at {url}: {error}") from error
    if answer.status_code != 200:
        raise ServiceError(f"GET /{what} answered {refusal(answer)}")
    rows: list[dict[str, Any]] = answer.json()[what]
    return rows


def decisions_cell(order: dict[str, Any]) -> str:
    """Each user's decision of ``order`` as "user: ACCEPTED|reason", or the order's own reason."""
    users = ", ".join(f"{d['user']}: {d['reason'] or d['status']}" for d in order.get("decisions") or [])
    # An order rejected as a whole (UNKNOWN_STRATEGY) has no per-user decisions, only its reason.
    return users or str(order.get("reason") or "")


class HttpAnswer(Protocol):
    """What refusal reads of an answer; requests' and httpx's responses both have it."""

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
        return decisions_cell(row)
    value = row.get(column)
    return "" if value is None else str(value)


def show(what: str, rows: list[dict[str, Any]], as_json: bool, console: Console) -> None:
    """Print ``rows`` as a table for people, or as JSON lines for machines."""
    if as_json:
        for row in rows:
            console.print_json(json.dumps(row)) if console.is_terminal else print(json.dumps(row))
        return
    from rich.table import Table

    table = Table(title=f"{what} ({len(rows)})")
    for column in COLUMNS[what]:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(column, row) for column in COLUMNS[what]))
    console.print(table)
