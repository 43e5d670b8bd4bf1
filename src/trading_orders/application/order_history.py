"""The read side: the order log and the trades, newest first, filtered and paged by cursor."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from trading_orders.application.ports import OrderLogReader, TradeLogReader
from trading_orders.domain.controls import ControlLogEntry, LogEntry
from trading_orders.domain.model import OrderLogEntry, OrderStatus, Trade

MAX_PAGE = 1000
DEFAULT_PAGE = 100
# How many log entries one page may read, kept or not: a filter that matches
# rarely would otherwise read the whole log for one request (2.6 s on a
# 300,000-entry log). About 10 ms of reading on the default store; 5,000
# left orders waiting 260 ms (p99) behind 45 readers (docs/performance.md).
SCAN_BUDGET = 1000

Item = TypeVar("Item")


@dataclass(frozen=True, slots=True)
class Page(Generic[Item]):
    """Up to ``limit`` items, newest first, and the cursor that continues after the last one read.

    ``scan_limited`` is True when the page read its scan budget before it
    filled: ``next_cursor`` then continues after the last entry read, kept
    or not, so paging on skips and repeats nothing.
    """

    items: list[Item]
    next_cursor: str | None
    scan_limited: bool = False


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """What a page keeps; every field left None keeps everything."""

    strategy: str | None = None
    instrument: str | None = None
    user: str | None = None
    status: OrderStatus | None = None
    since: datetime | None = None
    until: datetime | None = None

    def keeps_order(self, entry: OrderLogEntry) -> bool:
        """True when ``entry`` matches every filter (user: the order had a decision for that user)."""
        decision = entry.decision
        return (
            (self.strategy is None or decision.order.strategy == self.strategy)
            and (self.instrument is None or decision.order.instrument == self.instrument)
            and (self.status is None or decision.status is self.status)
            and (self.user is None or any(d.user == self.user for d in decision.decisions))
            and (self.until is None or decision.received_at <= self.until)
        )

    def keeps_entry(self, entry: LogEntry) -> bool:
        """True for an order ``entry`` that matches every filter, and for every control change (it governs them all)."""
        return isinstance(entry, ControlLogEntry) or self.keeps_order(entry)

    def keeps_trade(self, trade: Trade) -> bool:
        """True when ``trade`` matches every filter (times are the SELL's)."""
        return (
            (self.strategy is None or trade.strategy == self.strategy)
            and (self.instrument is None or trade.instrument == self.instrument)
            and (self.user is None or trade.user == self.user)
            and (self.until is None or trade.sold_at <= self.until)
        )


def _page(
    newest_first: Iterator[tuple[str, Item]],
    keeps: Callable[[Item], bool],
    moment_of: Callable[[Item], datetime],
    since: datetime | None,
    limit: int,
    budget: int,
) -> Page[Item]:
    """Take up to ``limit`` kept items reading at most ``budget`` entries; the cursor continues, None at the end."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
    items: list[Item] = []
    last_cursor: str | None = None
    read = 0
    try:
        for cursor, item in newest_first:
            # Times only grow along the log, so the first item older than
            # ``since`` ends the walk: nothing after it can match.
            if since is not None and moment_of(item) < since:
                return Page(items, None)
            if keeps(item):
                if len(items) == limit:
                    return Page(items, last_cursor)
                items.append(item)
                last_cursor = cursor
            read += 1
            if read == budget:
                # The cursor says where to go on; a next page that finds
                # nothing is the price of not reading on to learn whether
                # anything is left.
                return Page(items, cursor, scan_limited=True)
    finally:
        # A walk left early closes the file or batch it reads from now, not at garbage collection.
        if isinstance(newest_first, Generator):
            newest_first.close()
    return Page(items, None)


def _orders_only(entries: Iterator[tuple[str, LogEntry]]) -> Iterator[tuple[str, OrderLogEntry]]:
    """The orders among ``entries``, with their cursors: control changes are listed by /controls, not as orders."""
    try:
        for cursor, entry in entries:
            if isinstance(entry, OrderLogEntry):
                yield cursor, entry
    finally:
        # Closed with this walk, so a page left early closes its file or batch now.
        if isinstance(entries, Generator):
            entries.close()


class OrderHistory:
    """Answers the desk's questions about past orders and closed trades."""

    def __init__(self, order_log: OrderLogReader, trade_log: TradeLogReader, scan_budget: int = SCAN_BUDGET) -> None:
        """Read from these logs, at most ``scan_budget`` entries for one page."""
        if scan_budget < 1:
            raise ValueError(f"scan_budget must be at least 1, got {scan_budget}")
        self._order_log = order_log
        self._trade_log = trade_log
        self._scan_budget = scan_budget

    def orders(
        self, history_filter: HistoryFilter, limit: int = DEFAULT_PAGE, cursor: str | None = None
    ) -> Page[OrderLogEntry]:
        """Orders newest first, reading at most the scan budget; ``cursor`` (from a previous page) continues it."""
        return _page(
            _orders_only(self._order_log.newest_first(cursor)),
            history_filter.keeps_order,
            lambda entry: entry.decision.received_at,
            history_filter.since,
            limit,
            self._scan_budget,
        )

    def order(self, order_id: str) -> OrderLogEntry | None:
        """The order with id ``order_id``, if the log has it (a control change's id names no order)."""
        entry = self._order_log.find_by_order_id(order_id)
        return entry if isinstance(entry, OrderLogEntry) else None

    def trades(
        self, history_filter: HistoryFilter, limit: int = DEFAULT_PAGE, cursor: str | None = None
    ) -> Page[Trade]:
        """Closed trades newest first (by SELL), at most the scan budget read; ``cursor`` continues a previous page."""
        return _page(
            self._trade_log.newest_first(cursor),
            history_filter.keeps_trade,
            lambda trade: trade.sold_at,
            history_filter.since,
            limit,
            self._scan_budget,
        )
