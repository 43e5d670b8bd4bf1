"""Export and import of a store's order log and positions as JSON lines, to move between stores."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from rich.progress import Progress

from trading_orders.adapters.storage.codec import entry_from_dict, entry_to_dict, position_to_dict
from trading_orders.adapters.storage.jsonl_order_log import JsonLinesOrderLog
from trading_orders.adapters.storage.jsonl_trade_log import JsonLinesTradeLog
from trading_orders.adapters.storage.tinydb_position_store import TinyDBPositionStore
from trading_orders.application.errors import StartupError
from trading_orders.application.log_replay import replay_log_tail
from trading_orders.domain.model import DomainError, PositionScope

PositionRow = tuple[str, str, str, str]


class TransferError(RuntimeError):
    """An export or import could not be done; the message says why, and nothing was half-written."""


def export_store(data_dir: Path, output: Path) -> tuple[int, int]:
    """Write every order, then every open position, of ``data_dir`` to ``output``; returns the counts."""
    order_log = JsonLinesOrderLog(data_dir, read_only=True)
    stored = TinyDBPositionStore(data_dir, read_only=True).load()
    if stored.applied_sequence != order_log.last_sequence():
        raise TransferError(
            f"the position store is at sequence {stored.applied_sequence} but the log at "
            f"{order_log.last_sequence()}: start the service once so it replays the log, then export"
        )
    temporary = output.with_name(f".{output.name}.partial")
    with temporary.open("w", encoding="utf-8") as handle, Progress(transient=True) as progress:
        task = progress.add_task("exporting orders", total=order_log.last_sequence())
        for entry in order_log.entries_after(0):
            handle.write(json.dumps({"kind": "order", **entry_to_dict(entry)}) + "\n")
            progress.advance(task)
        for position in stored.positions:
            handle.write(json.dumps({"kind": "position", **position_to_dict(position)}) + "\n")
    os.replace(temporary, output)
    return order_log.last_sequence(), len(stored.positions)


def import_store(source: Path, data_dir: Path, scope: PositionScope) -> tuple[int, int]:
    """Load an export into a new ``data_dir``: the log, then trades and positions replayed from it.

    Built in a temporary directory beside ``data_dir`` and renamed into place,
    so a failed import leaves nothing behind.
    """
    if data_dir.exists() and any(data_dir.iterdir()):
        raise TransferError(f"{data_dir} is not empty: import only into a new data directory")
    building = data_dir.with_name(f".{data_dir.name}.importing")
    shutil.rmtree(building, ignore_errors=True)
    try:
        orders, exported = _write_log(source, building)
        positions = _replay(building, scope, exported)
        if data_dir.exists():
            data_dir.rmdir()
        os.replace(building, data_dir)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return orders, positions


def _write_log(source: Path, building: Path) -> tuple[int, set[PositionRow]]:
    exported: set[PositionRow] = set()
    order_log = JsonLinesOrderLog(building)
    try:
        with source.open(encoding="utf-8") as handle, Progress(transient=True) as progress:
            task = progress.add_task("importing orders", total=source.stat().st_size)
            for number, line in enumerate(handle, start=1):
                try:
                    record = json.loads(line)
                    kind = record.pop("kind")
                    if kind == "order":
                        order_log.append(entry_from_dict(record))
                    elif kind == "position":
                        exported.add(tuple(record[k] for k in ("user", "strategy", "instrument", "order_id")))
                    else:
                        raise ValueError(f"kind must be 'order' or 'position', got {kind!r}")
                except (AttributeError, DomainError, KeyError, TypeError, ValueError) as error:
                    raise TransferError(f"{source}: line {number} is not an export record ({error})") from error
                progress.advance(task, len(line.encode()))
        return order_log.last_sequence(), exported
    finally:
        order_log.close()


def _replay(building: Path, scope: PositionScope, exported: set[PositionRow]) -> int:
    order_log, trade_log, store = (
        JsonLinesOrderLog(building),
        JsonLinesTradeLog(building),
        TinyDBPositionStore(building),
    )
    try:
        portfolio, _ = replay_log_tail(store, order_log, trade_log, scope)
    except StartupError as error:
        raise TransferError(f"the exported log does not replay: {error}") from error
    finally:
        for opened in (order_log, trade_log, store):
            opened.close()
    rebuilt = {(p.user, p.strategy, p.instrument, p.order_id) for p in portfolio}
    if rebuilt != exported:
        raise TransferError(
            f"the exported log gives {len(rebuilt)} open positions but the export lists {len(exported)}: "
            "the export does not hold together"
        )
    return len(rebuilt)
