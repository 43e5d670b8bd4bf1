"""Export and import of a store's order log and positions as JSON lines, to move between stores."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.progress import Progress

from trading_orders.application.errors import StartupError, StorageUnavailable
from trading_orders.application.ports import OrderStore
from trading_orders.domain.controls import ControlLogEntry, LogEntry
from trading_orders.domain.model import DomainError, OrderLogEntry, Position
from trading_orders.json_records import log_entry_from_dict, log_entry_to_dict, position_to_dict

PositionRow = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class Moved:
    """What an export wrote or an import recorded: orders, control changes (entries of the same log), positions."""

    orders: int
    controls: int
    positions: int

    @property
    def entries(self) -> str:
        """The log entries in words: "4 orders", or "4 orders, 2 control changes"."""
        if not self.controls:
            return f"{self.orders} orders"
        return f"{self.orders} orders, {self.controls} control changes"


class TransferError(RuntimeError):
    """An export or import could not be done; the message says why."""


def export_orders(entries: Iterable[LogEntry], positions: Iterable[Position], orders: int, output: Path) -> Moved:
    """Write every log entry (orders, control changes) oldest first, then every open position; returns the counts.

    ``entries`` and ``positions`` must be one moment of the store (``orders``
    is how many entries that moment holds, for the progress bar), or the
    export will not import.
    """
    temporary = output.with_name(f".{output.name}.partial")
    orders_written = controls_written = positions_written = 0
    with temporary.open("w", encoding="utf-8") as handle, Progress(transient=True) as progress:
        task = progress.add_task("exporting orders", total=orders)
        for entry in entries:
            kind = "control" if isinstance(entry, ControlLogEntry) else "order"
            handle.write(json.dumps({"kind": kind, **log_entry_to_dict(entry)}) + "\n")
            if kind == "control":
                controls_written += 1
            else:
                orders_written += 1
            progress.advance(task)
        for position in positions:
            handle.write(json.dumps({"kind": "position", **position_to_dict(position)}) + "\n")
            positions_written += 1
    os.replace(temporary, output)
    return Moved(orders_written, controls_written, positions_written)


async def import_orders(source: Path, store: OrderStore) -> Moved:
    """Record every exported order in the empty ``store`` through its own transactions; returns the counts.

    Each order is applied, as decided then, to the positions its transaction
    hands out; it gets the sequence it had, and the open positions the
    import leaves must equal the export's, or the import stops saying where
    they part.
    """
    store.recover()
    if store.state().last_sequence:
        raise TransferError("the target store already holds orders: import only into an empty store")
    exported: set[PositionRow] = set()
    orders = controls = 0
    with source.open(encoding="utf-8") as handle, Progress(transient=True) as progress:
        task = progress.add_task("importing orders", total=source.stat().st_size)
        for number, line in enumerate(handle, start=1):
            try:
                record = json.loads(line)
                kind = record.pop("kind")
                if kind == "position":
                    exported.add(tuple(record[k] for k in ("user", "strategy", "instrument", "order_id")))
                elif kind in ("order", "control"):
                    entry = log_entry_from_dict(record)
                    if isinstance(entry, ControlLogEntry) != (kind == "control"):
                        raise ValueError(f"a {kind} record holds the other kind of entry")
                    recorded = await _record(store, entry)
                    if recorded.sequence != entry.sequence:
                        raise ValueError(f"recorded as sequence {recorded.sequence}, exported as {entry.sequence}")
                    if isinstance(entry, ControlLogEntry):
                        controls += 1
                    else:
                        orders += 1
                else:
                    raise ValueError(f"kind must be 'order', 'control' or 'position', got {kind!r}")
            except (AttributeError, DomainError, KeyError, TypeError, ValueError) as error:
                raise TransferError(
                    f"{source}: line {number} is not an export record that fits ({error}); "
                    f"{orders + controls} log entries went in before it"
                ) from error
            except (StorageUnavailable, StartupError) as error:
                raise TransferError(f"the target store refused line {number}: {error}") from error
            progress.advance(task, len(line.encode()))
    rebuilt = {(p.user, p.strategy, p.instrument, p.order_id) for p in store.positions()}
    if rebuilt != exported:
        raise TransferError(
            f"the imported orders leave {len(rebuilt)} open positions but the export lists {len(exported)}: "
            "the export does not hold together"
        )
    return Moved(orders, controls, len(rebuilt))


async def _record(store: OrderStore, entry: LogEntry) -> LogEntry:
    if isinstance(entry, ControlLogEntry):
        async with store.control_transaction(entry.idempotency_key) as control:
            return await control.commit(entry.change)
    return await _record_order(store, entry)


async def _record_order(store: OrderStore, entry: OrderLogEntry) -> OrderLogEntry:
    order, users = entry.decision.order, [d.user for d in entry.decision.decisions]
    async with store.transaction(order.strategy, order.instrument, users, entry.idempotency_key) as transaction:
        transaction.portfolio.apply(entry.decision)
        return await transaction.commit()
