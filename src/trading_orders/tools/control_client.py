"""The control commands of the command line: halt, reduce, resume, flatten, limit and controls, against a service.

Like the read commands, these import no web framework: they only send a request and print its answer.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from trading_orders.tools.desk_client import ask
from trading_orders.tools.text_table import Column, table_lines

# What the service records as who made a change made with no API key: the command line.
USER_AGENT = "trading-orders-cli/1"

STATE_COLUMNS = (
    Column("scope", wraps=True),
    Column("state"),
    Column("reason", wraps=True),
    Column("sequence"),
    Column("at"),
)
LIMIT_COLUMNS = (Column("scope", wraps=True), Column("limit", wraps=True), Column("sequence"), Column("at"))


def send_change(url: str, path: str, method: str, body: dict[str, Any], api_key: str | None) -> dict[str, Any]:
    """Send one control change to the service at ``url``; the recorded change it answers."""
    change: dict[str, Any] = ask(url, method, path, api_key, timeout=60, body=body, user_agent=USER_AGENT)
    return change


def fetch_controls(url: str, api_key: str | None) -> dict[str, Any]:
    """The states and limits in force at the service at ``url``."""
    controls: dict[str, Any] = ask(url, "GET", "/controls", api_key, timeout=30)
    return controls


def scope_text(user: str | None, strategy: str | None) -> str:
    """A scope in words: "the desk", "strategy S", "user U" or "user U's strategy S"."""
    if user is None:
        return "the desk" if strategy is None else f"strategy {strategy}"
    return f"user {user}" if strategy is None else f"user {user}'s strategy {strategy}"


def _limit_text(limit: dict[str, Any] | int | None) -> str:
    if limit is None:
        return "none"
    if isinstance(limit, int):
        return f"{limit} open position(s)"
    if limit.get("max_open_positions") is not None:
        return f"{limit['max_open_positions']} open position(s)"
    return f"{limit['max_orders_per_second']:g} orders/s, burst {limit['burst']}"


def change_line(change: dict[str, Any]) -> str:
    """One line saying what a recorded change did, for a person."""
    scope = scope_text(change["user"], change["strategy"])
    action = change["action"]
    if action == "state":
        what = f"{scope}: {change['before']} -> {change['after']}"
    elif action in ("position_limit", "rate_limit"):
        what = f"{scope}: limit {_limit_text(change['before'])} -> {_limit_text(change['after'])}"
    else:
        what = f"{scope} flattened: {len(change['closed'])} position(s) closed, each with a trade"
        if change["after"] is not None:
            what += f"; {change['before']} -> {change['after']}"
    reason = f" ({change['reason']})" if change["reason"] else ""
    return f"#{change['sequence']} {what}{reason}, by {change['operator']} at {change['at']}"


def show_change(change: dict[str, Any], as_json: bool, out: TextIO) -> None:
    """Print a recorded change: one line for people, or its JSON for machines."""
    out.write((json.dumps(change) if as_json else change_line(change)) + "\n")


def show_controls(controls: dict[str, Any], as_json: bool, out: TextIO, width: int) -> None:
    """Print the states and limits in force as two tables ``width`` characters wide, or as JSON."""
    if as_json:
        out.write(json.dumps(controls) + "\n")
        return
    states = [
        [scope_text(s["user"], s["strategy"]), s["state"], s["reason"] or "", str(s["sequence"]), s["at"]]
        for s in controls["states"]
    ]
    limits = [
        [scope_text(limit["user"], limit["strategy"]), _limit_text(limit), str(limit["sequence"]), limit["at"]]
        for limit in controls["limits"]
    ]
    lines = table_lines(f"scopes not ACTIVE ({len(states)})", STATE_COLUMNS, states, width, ("at", "sequence"))
    lines += ["", *table_lines(f"limits ({len(limits)})", LIMIT_COLUMNS, limits, width, ("at", "sequence"))]
    for line in lines:
        out.write(line + "\n")
