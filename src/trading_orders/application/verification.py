"""Checks that the position store and the order log agree, and says what differs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from trading_orders.application.ports import OrderLog, StoredPositions
from trading_orders.domain.model import DomainError, Position, PositionScope
from trading_orders.domain.portfolio import Portfolio


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """What verify found: problems make the files disagree; notes are what start-up will heal."""

    orders_in_log: int
    open_positions: int
    applied_sequence: int
    problems: tuple[str, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())

    @property
    def agree(self) -> bool:
        """True when the store is exactly what the log implies up to the sequence it applied."""
        return not self.problems


def verify(
    stored: StoredPositions,
    order_log: OrderLog,
    scope: PositionScope,
    replayed: Callable[[int], None] | None = None,
) -> VerificationReport:
    """Replay ``order_log`` up to the store's applied sequence and compare the result with ``stored``.

    ``replayed`` is told each sequence as it is replayed, for a progress display.
    """
    last = order_log.last_sequence()
    notes: list[str] = []
    if stored.applied_sequence > last:
        problem = (
            f"the position store has applied sequence {stored.applied_sequence} but the order log ends at {last}: "
            "the log was truncated or replaced"
        )
        return VerificationReport(last, len(stored.positions), stored.applied_sequence, (problem,))
    portfolio = Portfolio(scope)
    try:
        for entry in order_log.entries_after(0):
            if entry.sequence > stored.applied_sequence:
                break
            portfolio.apply(entry.decision)
            if replayed is not None:
                replayed(entry.sequence)
    except DomainError as error:
        problem = f"the order log does not replay under position scope {scope.value!r}: {error}"
        return VerificationReport(last, len(stored.positions), stored.applied_sequence, (problem,))
    if stored.applied_sequence < last:
        notes.append(
            f"the position store is {last - stored.applied_sequence} order(s) behind the log; start-up replays them"
        )
    expected, actual = set(portfolio), set(stored.positions)
    problems = [f"missing from the position store: {_describe(p)}" for p in _in_order(expected - actual)]
    problems += [f"in the position store but not in the log: {_describe(p)}" for p in _in_order(actual - expected)]
    return VerificationReport(last, len(actual), stored.applied_sequence, tuple(problems), tuple(notes))


def _in_order(positions: set[Position]) -> list[Position]:
    return sorted(positions, key=lambda p: (p.opened_at, p.user, p.strategy, p.instrument))


def _describe(position: Position) -> str:
    return f"{position.user} {position.strategy}/{position.instrument} (order {position.order_id})"
