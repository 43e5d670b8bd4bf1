"""Bringing trades and positions level with the order log, the source of truth."""

from __future__ import annotations

from trading_orders.application.errors import CorruptStore, StartupError
from trading_orders.application.ports import OrderLog, PositionStore, TradeLog
from trading_orders.domain.model import DomainError, PositionChange, PositionScope
from trading_orders.domain.portfolio import ConflictingPositions, Portfolio


def replay_log_tail(
    position_store: PositionStore, order_log: OrderLog, trade_log: TradeLog, scope: PositionScope
) -> tuple[Portfolio, int]:
    """Rebuild the portfolio from the position store and replay the log entries it has not applied.

    Returns the portfolio and how many entries were replayed; the trade log
    and position store are level with the order log afterwards.
    """
    stored = position_store.load()
    last_sequence = order_log.last_sequence()
    if stored.applied_sequence > last_sequence:
        raise CorruptStore(
            f"the position store has applied order-log sequence {stored.applied_sequence} but the "
            f"order log ends at {last_sequence}: the order log was truncated or replaced; restore it "
            "from a backup (it is the source of truth)"
        )
    try:
        portfolio = Portfolio(scope, stored.positions)
    except ConflictingPositions as error:
        raise StartupError(
            f"the stored positions do not fit position scope {scope.value!r}: {error}; "
            "start with the scope they were opened under"
        ) from error
    replayed, last_replayed = 0, stored.applied_sequence
    try:
        for entry in order_log.entries_after(stored.applied_sequence):
            change = portfolio.apply(entry.decision)
            if change.trades and entry.sequence > trade_log.last_sequence():
                trade_log.append(change.trades, entry.sequence)
            replayed, last_replayed = replayed + 1, entry.sequence
    except DomainError as error:
        raise CorruptStore(f"stored positions and the order log disagree: {error}") from error
    if replayed:
        # One write for the whole tail, after its trades: the net change
        # between the stored positions and the replayed ones.
        before, after = set(stored.positions), set(portfolio)
        net = PositionChange(opened=tuple(p for p in portfolio if p not in before), closed=tuple(before - after))
        position_store.apply(net, last_replayed)
    return portfolio, replayed


def record_derived(trade_log: TradeLog, position_store: PositionStore, change: PositionChange, sequence: int) -> None:
    """Record what order ``sequence`` changed: its trades first, then the positions stamped with it."""
    # Trades before positions: positions stamped with a sequence promise that
    # everything up to it is recorded, so a replay never starts past a SELL
    # whose trades are missing.
    if change.trades and sequence > trade_log.last_sequence():
        trade_log.append(change.trades, sequence)
    position_store.apply(change, sequence)
