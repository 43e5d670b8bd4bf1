"""Data sets for the load benchmark: open positions and a long order log, written the way the service writes them.

Every entry is a real decision of the domain core, so the files are what a
service that had taken those orders would hold: an order log, a position
snapshot stamped with the log's last sequence, and the log's index.

    holders  users of strategy PRE, each holding all 100 PRE instruments
             (100 holders = 10,000 open positions)
    history  orders in the load strategies S0..S4 before the benchmark
"""

import json
import random
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from trading_orders.adapters.storage.sql.postgres import PostgresOrderStore
from trading_orders.adapters.storage.sql.schema import holding_key
from trading_orders.adapters.storage.sql.sqlite import SQLITE_FILE, SqliteOrderStore
from trading_orders.adapters.storage.tinydb_store.order_index import IndexRow, OrderIndex
from trading_orders.adapters.storage.tinydb_store.order_log import ORDER_LOG_FILE
from trading_orders.adapters.storage.tinydb_store.parts import StoredPositions
from trading_orders.adapters.storage.tinydb_store.position_snapshots import TinyDBPositionStore
from trading_orders.domain.model import Order, OrderLogEntry, Position, PositionScope, Side, Trade
from trading_orders.domain.portfolio import Portfolio
from trading_orders.domain.profile import Profile
from trading_orders.json_records import entry_to_dict, format_time

INSTRUMENTS = [f"SYM{n:03d}" for n in range(50)]
LOAD_STRATEGIES = [f"S{s}" for s in range(5)]
LOAD_USERS = [f"U{u}" for u in range(3)]
PRE_INSTRUMENTS = [f"PRE{n:03d}" for n in range(100)]
START = datetime(2026, 11, 24, 3, 45, tzinfo=UTC)


def profile(holders: int) -> dict[str, dict[str, list[str]]]:
    """The load users on S0..S4, and ``holders`` users of strategy PRE."""
    universes: dict[str, dict[str, list[str]]] = {u: dict.fromkeys(LOAD_STRATEGIES, INSTRUMENTS) for u in LOAD_USERS}
    universes.update({f"P{n:04d}": {"PRE": PRE_INSTRUMENTS} for n in range(holders)})
    return universes


@dataclass
class History:
    """Orders in the load strategies, encoded once and reused for every data set."""

    lines: Path
    offsets: list[int]
    order_ids: list[str]
    positions: tuple[Position, ...]
    trades: list[tuple[int, Trade]]


def _line(entry: OrderLogEntry) -> bytes:
    return (json.dumps(entry_to_dict(entry), separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def history(directory: Path, orders: int, first_sequence: int) -> History:
    """``orders`` decided BUY/SELL orders in S0..S4, numbered from ``first_sequence``, in ``directory``."""
    rng = random.Random(1124)
    decider = Profile(profile(0))
    portfolio = Portfolio(PositionScope.STRATEGY)
    path = directory / "history.jsonl"
    offsets, order_ids, offset = [], [], 0
    trades: list[tuple[int, Trade]] = []
    with path.open("wb") as handle:
        for number in range(orders):
            order = Order(rng.choice(LOAD_STRATEGIES), rng.choice(INSTRUMENTS), rng.choice([Side.BUY, Side.SELL]))
            order_id = f"h{number:031x}"
            decision = portfolio.decide(order, decider, order_id, START + timedelta(milliseconds=number))
            change = portfolio.apply(decision)
            trades += [(first_sequence + number, trade) for trade in change.trades]
            line = _line(OrderLogEntry(first_sequence + number, decision, None))
            handle.write(line)
            offsets.append(offset)
            order_ids.append(order_id)
            offset += len(line)
    return History(path, offsets, order_ids, tuple(portfolio), trades)


def _pre_orders(holders: int) -> tuple[list[bytes], tuple[Position, ...]]:
    """The log lines of the PRE holders' BUYs, sequences 1..100, and the positions they open."""
    decider = Profile(profile(holders))
    portfolio = Portfolio(PositionScope.STRATEGY)
    lines = []
    for number, instrument in enumerate(PRE_INSTRUMENTS):
        decision = portfolio.decide(Order("PRE", instrument, Side.BUY), decider, f"p{number:031x}", START)
        portfolio.apply(decision)
        lines.append(_line(OrderLogEntry(number + 1, decision, None)))
    return lines, tuple(portfolio)


def write_data_set(directory: Path, holders: int, past: History | None) -> None:
    """The files of a service whose PRE holders bought every PRE instrument, then took ``past``'s orders."""
    directory.mkdir(parents=True)
    pre_lines, positions = _pre_orders(holders)
    rows: list[IndexRow] = []
    log_path = directory / ORDER_LOG_FILE
    with log_path.open("wb") as handle:
        offset = 0
        for number, line in enumerate(pre_lines):
            handle.write(line)
            rows.append((number + 1, offset, f"p{number:031x}", None))
            offset += len(line)
    sequence = len(PRE_INSTRUMENTS)
    if past is not None:
        with log_path.open("ab") as handle, past.lines.open("rb") as source:
            shutil.copyfileobj(source, handle, 1 << 20)
        pairs = enumerate(zip(past.offsets, past.order_ids, strict=True))
        rows += [(sequence + 1 + n, offset + o, order_id, None) for n, (o, order_id) in pairs]
        sequence += len(past.offsets)
        positions += past.positions
    index = OrderIndex(directory)
    index.add(rows)
    index.close()
    store = TinyDBPositionStore(directory)
    # No trade log is written: a mark of 0 says so, so start-up replays only what follows the snapshot.
    store.save(StoredPositions(positions, sequence, log_path.stat().st_size, trades_through=0))
    store.close()


class SqlRows:
    """The rows of a SQL store that took the same orders: orders, open positions, trades."""

    def __init__(self, holders: int, past: History | None) -> None:
        """Decide the PRE orders; ``past``'s rows are read from its file as they are written."""
        self._pre_lines, self._pre_positions = _pre_orders(holders)
        self._past = past

    def orders(self) -> Iterator[tuple[int, str, str, None, str]]:
        """(sequence, order id, received at, idempotency key, entry JSON), oldest first."""
        for line in self._pre_lines:
            yield _order_row(line)
        if self._past is not None:
            with self._past.lines.open("rb") as source:
                for line in source:
                    yield _order_row(line)

    def positions(self) -> Iterator[tuple[str, str, str, str, str, str]]:
        """(holding key, user, strategy, instrument, order id, opened at) of every open position."""
        held = self._pre_positions + (self._past.positions if self._past is not None else ())
        for p in held:
            key = holding_key(PositionScope.STRATEGY, p.user, p.strategy, p.instrument)
            yield key, p.user, p.strategy, p.instrument, p.order_id, format_time(p.opened_at)

    def trades(self) -> Iterator[tuple[int, str, str, str, str, str, str, str]]:
        """(sequence, user, strategy, instrument, buy order, bought at, sell order, sold at)."""
        for sequence, t in self._past.trades if self._past is not None else []:
            yield (
                sequence, t.user, t.strategy, t.instrument,
                t.buy_order_id, format_time(t.bought_at), t.sell_order_id, format_time(t.sold_at),
            )  # fmt: skip

    def tables(self) -> list[tuple[str, str, Iterator[tuple[object, ...]]]]:
        """(table, columns, rows) for each table, in the order their foreign keys need."""
        return [
            ("orders", ORDER_COLUMNS, self.orders()),
            ("positions", POSITION_COLUMNS, self.positions()),
            ("trades", TRADE_COLUMNS, self.trades()),
        ]


def _order_row(line: bytes) -> tuple[int, str, str, None, str]:
    record = json.loads(line)
    return record["sequence"], record["order_id"], record["received_at"], None, line.decode().rstrip("\n")


ORDER_COLUMNS = "sequence, order_id, received_at, idempotency_key, entry"
POSITION_COLUMNS = "holding_key, username, strategy, instrument, order_id, opened_at"
TRADE_COLUMNS = "sequence, username, strategy, instrument, buy_order_id, bought_at, sell_order_id, sold_at"


def write_sqlite_data_set(directory: Path, holders: int, past: History | None) -> None:
    """The SQLite database of a service that took the same orders as write_data_set()'s."""
    store = SqliteOrderStore(directory, PositionScope.STRATEGY)
    store.recover()  # the schema, as the service creates it
    store.close()
    rows = SqlRows(holders, past)
    with sqlite3.connect(directory / SQLITE_FILE) as connection:
        connection.executemany(f"INSERT INTO orders ({ORDER_COLUMNS}) VALUES (?, ?, ?, ?, ?)", rows.orders())
        connection.executemany(
            f"INSERT INTO positions ({POSITION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", rows.positions()
        )
        connection.executemany(f"INSERT INTO trades ({TRADE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows.trades())
    connection.close()


def write_postgres_data_set(url: str, holders: int, past: History | None) -> None:
    """The PostgreSQL database at ``url`` of a service that took the same orders as write_data_set()'s."""
    store = PostgresOrderStore(url, PositionScope.STRATEGY)
    store.recover()
    store.close()
    rows = SqlRows(holders, past)
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        for table, columns, source in rows.tables():
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in source:
                    copy.write_row(row)
