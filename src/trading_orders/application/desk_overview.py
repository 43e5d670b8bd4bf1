"""The desk's summaries: who runs what, what they hold, and what they recently ordered."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from trading_orders.application.order_history import HistoryFilter, OrderHistory
from trading_orders.application.order_service import OrderService
from trading_orders.domain.model import OrderLogEntry, Position

RECENT_ORDERS = 20


@dataclass(frozen=True, slots=True)
class UserSummary:
    """A user, the strategies they run with each universe (symbols sorted), and how many positions they hold."""

    user: str
    strategies: dict[str, list[str]]
    open_positions: int


@dataclass(frozen=True, slots=True)
class UserDetail:
    """One user: their summary, open positions, and latest orders that had a decision for them.

    ``recent_orders`` are read within the history's scan budget: when it
    ran out first, ``recent_orders_scan_limited`` is True and
    ``recent_orders_next_cursor`` continues them on the order log
    (``HistoryFilter(user=...)``).
    """

    summary: UserSummary
    positions: list[Position]
    recent_orders: list[OrderLogEntry]
    recent_orders_scan_limited: bool = False
    recent_orders_next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class StrategySummary:
    """A strategy, the users who run it, and its universe (the union over those users, sorted)."""

    strategy: str
    users: list[str]
    universe: list[str]


class DeskOverview:
    """Answers the desk's questions about users and strategies from the profile, positions and order log."""

    def __init__(self, service: OrderService, history: OrderHistory) -> None:
        """Read the profile and positions through ``service``, past orders through ``history``."""
        self._service = service
        self._history = history

    def users(self) -> list[UserSummary]:
        """Every user in the profile with their strategies and open-position count."""
        held = Counter(p.user for p in self._service.open_positions())
        return [_summary(user, strategies, held[user]) for user, strategies in self._service.profile().users.items()]

    def user(self, user: str) -> UserDetail | None:
        """One user's summary, positions and latest orders; None when neither the profile nor a position names them."""
        strategies = self._service.profile().users.get(user)
        positions = self._service.open_positions(user=user)
        if strategies is None and not positions:
            return None
        recent = self._history.orders(HistoryFilter(user=user), limit=RECENT_ORDERS)
        return UserDetail(
            _summary(user, strategies or {}, len(positions)),
            positions,
            recent.items,
            recent_orders_scan_limited=recent.scan_limited,
            recent_orders_next_cursor=recent.next_cursor,
        )

    def strategies(self) -> list[StrategySummary]:
        """Every strategy some user runs, sorted, with its users and universe."""
        profile = self._service.profile()
        summaries = []
        for strategy in sorted(profile.strategies):
            runners = profile.runners_of(strategy)
            summaries.append(StrategySummary(strategy, list(runners), sorted(set().union(*runners.values()))))
        return summaries


def _summary(user: str, strategies: Mapping[str, frozenset[str]], held: int) -> UserSummary:
    return UserSummary(user, {strategy: sorted(universe) for strategy, universe in strategies.items()}, held)
