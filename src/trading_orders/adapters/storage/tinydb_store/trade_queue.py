"""Trades of SELLs in the order log, waiting for their log entry to be durable before they are written."""

from __future__ import annotations

import logging
import threading
from collections import deque

from trading_orders.adapters.storage.tinydb_store.parts import TradeLog
from trading_orders.application.errors import StorageUnavailable
from trading_orders.domain.model import Trade

logger = logging.getLogger(__name__)


class TradeQueue:
    """The trades of SELLs not yet in the trade log, oldest first; safe to share between threads.

    The event loop adds, a flush (the committer's, or a read's or a
    checkpoint's wait) writes and pops, a roll-back or a rebuild drops, and
    is_durable() peeks, from whichever thread: every read and change of the
    deque is under its lock, so no thread sees it half-changed or pops from
    it empty (an IndexError there would end the committer).
    """

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self._queue: deque[tuple[int, tuple[Trade, ...]]] = deque()

    def add(self, sequence: int, trades: tuple[Trade, ...]) -> None:
        """Queue the trades SELL ``sequence`` made."""
        with self._lock:
            self._queue.append((sequence, trades))

    def waiting_through(self, sequence: int) -> bool:
        """True while trades of a SELL at or before ``sequence`` are still queued."""
        with self._lock:
            return bool(self._queue) and self._queue[0][0] <= sequence

    def write_through(self, trade_log: TradeLog, durable_sequence: int) -> None:
        """Write the queued trades of SELLs up to ``durable_sequence``, in order; a failure leaves them queued."""
        while True:
            with self._lock:
                if not self._queue or self._queue[0][0] > durable_sequence:
                    return
                sequence, trades = self._queue[0]
            try:
                trade_log.write(trades, sequence)
            except StorageUnavailable as error:
                # The order stands (it is in the log); its trades stay queued,
                # in order, and are written on a later flush or at start-up.
                logger.error("trades of order #%d could not be written yet (%s); they stay queued", sequence, error)
                return
            with self._lock:
                # Between the peek and now, a rebuild on another thread (the
                # healer) may have dropped what the trade log already holds:
                # pop only the entry just written, never a later SELL's.
                if self._queue and self._queue[0][0] == sequence:
                    self._queue.popleft()

    def drop_after(self, sequence: int) -> None:
        """Forget the trades of SELLs after ``sequence``: their log entries were dropped."""
        with self._lock:
            while self._queue and self._queue[-1][0] > sequence:
                self._queue.pop()

    def drop_through(self, sequence: int) -> None:
        """Forget the trades of SELLs up to ``sequence``: the trade log has them already."""
        with self._lock:
            while self._queue and self._queue[0][0] <= sequence:
                self._queue.popleft()
