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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from trading_orders.adapters.storage.codec import entry_to_dict
from trading_orders.adapters.storage.jsonl_order_log import ORDER_LOG_FILE
from trading_orders.adapters.storage.order_index import IndexRow, OrderIndex
from trading_orders.adapters.storage.tinydb_position_store import TinyDBPositionStore
from trading_orders.application.ports import StoredPositions
from trading_orders.domain.model import Order, OrderLogEntry, Position, PositionScope, Side
from trading_orders.domain.portfolio import Portfolio
from trading_orders.domain.profile import Profile

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


def _line(entry: OrderLogEntry) -> bytes:
    return (json.dumps(entry_to_dict(entry), separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def history(directory: Path, orders: int, first_sequence: int) -> History:
    """``orders`` decided BUY/SELL orders in S0..S4, numbered from ``first_sequence``, in ``directory``."""
    rng = random.Random(1124)
    decider = Profile(profile(0))
    portfolio = Portfolio(PositionScope.STRATEGY)
    path = directory / "history.jsonl"
    offsets, order_ids, offset = [], [], 0
    with path.open("wb") as handle:
        for number in range(orders):
            order = Order(rng.choice(LOAD_STRATEGIES), rng.choice(INSTRUMENTS), rng.choice([Side.BUY, Side.SELL]))
            order_id = f"h{number:031x}"
            decision = portfolio.decide(order, decider, order_id, START + timedelta(milliseconds=number))
            portfolio.apply(decision)
            line = _line(OrderLogEntry(first_sequence + number, decision, None))
            handle.write(line)
            offsets.append(offset)
            order_ids.append(order_id)
            offset += len(line)
    return History(path, offsets, order_ids, tuple(portfolio))


def write_data_set(directory: Path, holders: int, past: History | None) -> None:
    """The files of a service whose PRE holders bought every PRE instrument, then took ``past``'s orders."""
    directory.mkdir(parents=True)
    decider = Profile(profile(holders))
    portfolio = Portfolio(PositionScope.STRATEGY)
    rows: list[IndexRow] = []
    log_path = directory / ORDER_LOG_FILE
    with log_path.open("wb") as handle:
        offset = 0
        for number, instrument in enumerate(PRE_INSTRUMENTS):
            order_id = f"p{number:031x}"
            decision = portfolio.decide(Order("PRE", instrument, Side.BUY), decider, order_id, START)
            portfolio.apply(decision)
            line = _line(OrderLogEntry(number + 1, decision, None))
            handle.write(line)
            rows.append((number + 1, offset, order_id, None))
            offset += len(line)
    positions = tuple(portfolio)
    sequence = len(PRE_INSTRUMENTS)
    if past is not None:
        with log_path.open("ab") as handle, past.lines.open("rb") as source:
            shutil.copyfileobj(source, handle, 1 << 20)
        rows += [
            (sequence + 1 + n, offset + o, i, None)
            for n, (o, i) in enumerate(zip(past.offsets, past.order_ids, strict=True))
        ]
        sequence += len(past.offsets)
        positions += past.positions
    index = OrderIndex(directory)
    index.add(rows)
    index.close()
    store = TinyDBPositionStore(directory)
    store.save(StoredPositions(positions, sequence, log_path.stat().st_size))
    store.close()
