"""The tables of the SQL order stores, written once, and how a statement reaches them.

SQLite and PostgreSQL hold the same tables; only the words for a 64-bit
integer and for a key the database numbers differ (``ColumnTypes``).
Statements use ``?`` placeholders; each database's ``Sql`` turns them into its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from trading_orders.application.errors import DamagedLogEntry
from trading_orders.domain.controls import LogEntry
from trading_orders.domain.model import DomainError, Position, PositionScope
from trading_orders.json_records import log_entry_from_dict, parse_time


class Sql(Protocol):
    """One connection's statements, with ``?`` placeholders."""

    def rows(self, statement: str, values: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """The rows a query answers."""
        ...

    def run(self, statement: str, values: Sequence[object] = ()) -> None:
        """Execute a statement that answers no rows."""
        ...

    def run_many(self, statement: str, rows: Sequence[Sequence[object]]) -> None:
        """Execute a statement once per row of values (nothing for none)."""
        ...


@dataclass(frozen=True, slots=True)
class ColumnTypes:
    """A database's words for the column types the two databases spell differently."""

    # A sequence: 64 bits wide, as the order log may outgrow 32.
    integer: str
    # A table's own key, numbered by the database in the order rows arrive.
    row_id: str


def migrations(types: ColumnTypes) -> tuple[tuple[str, ...], ...]:
    """The statements of each schema version, oldest first, in the words of ``types``.

    Each step brings a database from the version before it to its own: a new
    database runs them all, an old one the ones it lacks.
    """
    return (
        (
            "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
            f"CREATE TABLE orders (sequence {types.integer} PRIMARY KEY, order_id TEXT NOT NULL UNIQUE, "
            "received_at TEXT NOT NULL, idempotency_key TEXT UNIQUE, entry TEXT NOT NULL)",
            f"CREATE TABLE positions (id {types.row_id}, holding_key TEXT NOT NULL UNIQUE, "
            "username TEXT NOT NULL, strategy TEXT NOT NULL, instrument TEXT NOT NULL, order_id TEXT NOT NULL, "
            "opened_at TEXT NOT NULL)",
            f"CREATE TABLE trades (id {types.row_id}, sequence {types.integer} NOT NULL REFERENCES orders (sequence), "
            "username TEXT NOT NULL, strategy TEXT NOT NULL, instrument TEXT NOT NULL, buy_order_id TEXT NOT NULL, "
            "bought_at TEXT NOT NULL, sell_order_id TEXT NOT NULL, sold_at TEXT NOT NULL)",
        ),
        (
            # Operator controls (issue 25). A control change is a row of orders
            # like an order; this table names which rows are control changes,
            # so the controls in force are rebuilt from those rows alone.
            f"CREATE TABLE control_changes (sequence {types.integer} PRIMARY KEY REFERENCES orders (sequence))",
            # Each rate-limited strategy's token bucket, read and saved in the
            # transaction of each of its orders, so every process shares it.
            "CREATE TABLE rate_buckets (strategy TEXT PRIMARY KEY, tokens DOUBLE PRECISION NOT NULL, at TEXT NOT NULL)",
            # A BUY for a user with a position limit counts the user's open positions.
            "CREATE INDEX positions_by_user ON positions (username, strategy)",
        ),
    )


# The version migrations() brings a database to: one per step.
SCHEMA_VERSION = len(migrations(ColumnTypes(integer="", row_id="")))


def versions_after(version: int, types: ColumnTypes) -> Iterator[tuple[int, tuple[str, ...]]]:
    """Each schema version after ``version``, with the statements that bring the one before it up to it."""
    return enumerate(migrations(types)[version:], start=version + 1)


def holding_key(scope: PositionScope, user: str, strategy: str, instrument: str) -> str:
    """The key no two open positions may share under ``scope`` (the positions table's unique constraint)."""
    parts = (user, instrument) if scope is PositionScope.USER else (user, strategy, instrument)
    return json.dumps(parts)


def position_of(row: Sequence[Any]) -> Position:
    """The position a row of the positions table holds (username, strategy, instrument, order_id, opened_at)."""
    return Position(row[0], row[1], row[2], row[3], parse_time(row[4]))


def logged_entry(sequence: int, entry: str, where: str) -> LogEntry:
    """The order-log entry (an order's or a control change's) of row ``sequence``; DamagedLogEntry if none."""
    try:
        return log_entry_from_dict(json.loads(entry))
    except (DomainError, KeyError, TypeError, ValueError) as error:
        raise DamagedLogEntry(
            f"order-log entry {sequence} cannot be read: its row in {where} is damaged ({error}); "
            "restore the database from a backup, or repair that row by hand",
            sequence,
        ) from error
