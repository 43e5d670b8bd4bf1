"""The embedded order store: an order log, a trade log and a position store, served by one process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from trading_orders.application.errors import ServiceNotStarted, StorageUnavailable
from trading_orders.application.log_replay import record_derived, replay_log_tail
from trading_orders.application.ports import OrderLog, PositionStore, StoreState, TradeLog
from trading_orders.domain.model import OrderDecision, OrderLogEntry, Position, PositionChange, PositionScope
from trading_orders.domain.portfolio import Portfolio

logger = logging.getLogger(__name__)


class EmbeddedOrderStore:
    """Orders serialized by a lock of this process, over files (or memory) that this process alone owns.

    The order log is the source of truth and the commit point. Each record()
    appends the log entry first, then the trades a SELL made, then the
    positions stamped with the entry's sequence. recover() replays the log
    entries the position store has not applied; if a trade or position write
    fails after the log took the order, the same replay runs on the next order.
    """

    def __init__(
        self, position_store: PositionStore, order_log: OrderLog, trade_log: TradeLog, scope: PositionScope
    ) -> None:
        """Serve orders over these three stores, holding positions under ``scope``."""
        self._position_store = position_store
        self._order_log = order_log
        self._trade_log = trade_log
        self._scope = scope
        # One lock serializes every order: the check "already holding?" and the
        # write that opens the position must not interleave with another
        # order's, or two BUYs could both pass.
        self._lock = threading.Lock()
        self._portfolio: Portfolio | None = None
        self._derived_behind = False
        self._last_received_at: datetime | None = None

    def recover(self) -> int:
        """Replay the log entries the position store lacks; returns how many."""
        with self._lock:
            portfolio, replayed = replay_log_tail(self._position_store, self._order_log, self._trade_log, self._scope)
            newest = next(self._order_log.newest_first(), None)
            self._last_received_at = newest[1].decision.received_at if newest else None
            self._portfolio = portfolio
            return replayed

    @contextmanager
    def transaction(self) -> Iterator[EmbeddedOrderStore]:
        """Hold the store's lock for one order; its methods below are for use inside."""
        with self._lock:
            self._ready()
            yield self

    def recorded(self, idempotency_key: str) -> OrderLogEntry | None:
        """The entry recorded with ``idempotency_key``, if any."""
        return self._order_log.find_by_idempotency_key(idempotency_key)

    def held(self, users: Iterable[str], strategy: str, instrument: str) -> list[Position]:
        """The open positions an order in ``strategy`` for ``instrument`` could meet for these users."""
        portfolio = self._ready()
        return [p for user in users if (p := portfolio.held(user, strategy, instrument)) is not None]

    def last_received_at(self) -> datetime | None:
        """When the newest logged order was received."""
        return self._last_received_at

    def record(self, decision: OrderDecision, change: PositionChange, idempotency_key: str | None) -> OrderLogEntry:
        """Append the entry (the commit point), then bring trades and positions level; durable on return."""
        portfolio = self._ready()
        entry = OrderLogEntry(self._order_log.last_sequence() + 1, decision, idempotency_key)
        self._order_log.append(entry)
        self._last_received_at = decision.received_at
        # The whole portfolio makes the same change the caller's partial one
        # did; applying it here keeps this store's view complete.
        applied = portfolio.apply(decision)
        if not applied.is_empty or self._derived_behind:
            self._bring_derived_level(applied, entry)
        return entry

    def _bring_derived_level(self, change: PositionChange, entry: OrderLogEntry) -> None:
        try:
            if self._derived_behind:
                # A previous write failed, so trades or positions miss a
                # change: replay the log into them from where positions stand.
                replay_log_tail(self._position_store, self._order_log, self._trade_log, self._scope)
            else:
                record_derived(self._trade_log, self._position_store, change, entry.sequence)
            self._derived_behind = False
        except StorageUnavailable as error:
            # The order is already durable in the log, so its answer stands;
            # trades and positions catch up on the next order or at start-up.
            self._derived_behind = True
            logger.error(
                "order %s is in the order log but its trades or positions could not be written (%s); "
                "they will be brought up to date from the log",
                entry.decision.order_id,
                error,
            )

    def positions(
        self, user: str | None = None, strategy: str | None = None, instrument: str | None = None
    ) -> list[Position]:
        """The open positions matching every filter given, in the order they were opened."""
        with self._lock:
            return [
                p
                for p in self._ready()
                if (user is None or p.user == user)
                and (strategy is None or p.strategy == strategy)
                and (instrument is None or p.instrument == instrument)
            ]

    def state(self) -> StoreState:
        """The log's length, the open positions, and whether the log can take appends."""
        with self._lock:
            held = len(self._portfolio) if self._portfolio is not None else 0
            return StoreState(self._order_log.last_sequence(), held, self._order_log.reachable())

    def _ready(self) -> Portfolio:
        if self._portfolio is None:
            raise ServiceNotStarted("the order store has not been recovered")
        return self._portfolio
