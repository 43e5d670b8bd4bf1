"""Rebuilding the open positions, and the trades they made, from a snapshot and the order log after it."""

from __future__ import annotations

from trading_orders.adapters.storage.tinydb_store.parts import OrderLog, StoredPositions, TradeLog
from trading_orders.application.errors import CorruptStore, StartupError
from trading_orders.domain.controls import ControlLogEntry, Controls
from trading_orders.domain.model import DomainError, PositionScope
from trading_orders.domain.portfolio import ConflictingPositions, Portfolio


def replay_log_tail(
    stored: StoredPositions,
    order_log: OrderLog,
    trade_log: TradeLog,
    scope: PositionScope,
    *,
    whole_log: bool = False,
) -> tuple[Portfolio, Controls, int]:
    """The portfolio and controls of snapshot ``stored`` with the log entries after it applied, and how many.

    Writes the trades of the replayed SELLs that the trade log lacks (a crash
    can lose trades written after the last sync), and syncs them. With
    ``whole_log`` the replay starts from the first entry instead, so the
    trades of SELLs the snapshot covers are written again too.
    """
    last_sequence = order_log.last_sequence()
    if stored.applied_sequence > last_sequence:
        raise CorruptStore(
            f"the position store has applied order-log sequence {stored.applied_sequence} but the "
            f"order log ends at {last_sequence}: the order log was truncated or replaced; restore it "
            "from a backup (it is the source of truth)"
        )
    start = StoredPositions((), 0) if whole_log else stored
    try:
        portfolio = Portfolio(scope, start.positions)
    except ConflictingPositions as error:
        raise StartupError(
            f"the stored positions do not fit position scope {scope.value!r}: {error}; "
            "start with the scope they were opened under"
        ) from error
    replayed = 0
    controls = start.controls
    try:
        for entry in order_log.entries_after(start.applied_sequence):
            if isinstance(entry, ControlLogEntry):
                controls = controls.with_entry(entry)
                change = portfolio.apply_control(entry.change)
            else:
                change = portfolio.apply(entry.decision)
            if change.trades and entry.sequence > trade_log.last_sequence():
                trade_log.write(change.trades, entry.sequence)
            replayed += 1
    except DomainError as error:
        raise CorruptStore(
            f"stored positions and the order log disagree under position scope {scope.value!r}: {error}; "
            "if the scope was changed, start with the scope the positions were opened under"
        ) from error
    trade_log.sync()
    return portfolio, controls, replayed
