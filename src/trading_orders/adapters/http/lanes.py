"""Threads of their own for the endpoints that block: the log reads, and /health.

A sync endpoint runs on Starlette's shared thread pool (40 threads). Reads
that each take seconds used to fill it, and /health, a sync endpoint too,
waited behind them (116 s with 45 slow reads). Now the reads run on a few
threads of their own and wait a bounded time for one, and /health has its
own: neither shares the pool with the other, and POST /create_order runs on
the event loop and the store's own threads, never on these.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse

from trading_orders.adapters.http.problem_details import BUSY, problem_response

logger = logging.getLogger(__name__)

# Reads are CPU-bound (JSON decoding) and share one interpreter lock with the
# event loop and the committer: every read thread more is one more contender
# an order waits behind for the lock (docs/performance.md, "Reads beside orders").
READ_SLOTS = 1
# A read that finds every slot taken waits this long, then answers 503.
READ_WAIT_SECONDS = 10.0
RETRY_AFTER_SECONDS = 1
# /health reads a few figures; its own threads, so it never queues behind reads.
HEALTH_SLOTS = 4

Result = TypeVar("Result")


class LaneBusy(Exception):
    """Every thread of a lane stayed taken for the whole wait."""

    def __init__(self, lane: str, waited: float) -> None:
        """``lane`` stayed full for ``waited`` seconds."""
        super().__init__(f"every {lane} thread stayed busy for {waited:g} s")
        self.lane = lane


class Lane:
    """Runs blocking calls on at most ``slots`` threads at once, none of them the shared pool's."""

    def __init__(self, name: str, slots: int, wait_seconds: float | None = None) -> None:
        """``wait_seconds``: how long a call waits for a free thread before LaneBusy; None waits as long as it takes."""
        self.name = name
        self._wait_seconds = wait_seconds
        self._slots = anyio.CapacityLimiter(slots)
        # run_sync takes a token of the limiter it is given, and a task cannot
        # hold two tokens of one limiter: the slot is taken (with its bounded
        # wait) on _slots, the thread on this twin, which never makes anyone wait.
        self._threads = anyio.CapacityLimiter(slots)

    async def run(self, call: Callable[[], Result]) -> Result:
        """The result of ``call`` run on one of this lane's threads; raises LaneBusy when none frees up in time."""
        borrower = object()
        if self._wait_seconds is None:
            await self._slots.acquire_on_behalf_of(borrower)
        else:
            with anyio.move_on_after(self._wait_seconds) as waiting:
                await self._slots.acquire_on_behalf_of(borrower)
            if waiting.cancelled_caught:
                logger.warning("a %s request waited %g s for a thread and was refused", self.name, self._wait_seconds)
                raise LaneBusy(self.name, self._wait_seconds)
        try:
            return await anyio.to_thread.run_sync(call, limiter=self._threads)
        finally:
            self._slots.release_on_behalf_of(borrower)


def read_lane() -> Lane:
    """The lane of the endpoints that read the order log and the trades."""
    return Lane("read", READ_SLOTS, READ_WAIT_SECONDS)


def health_lane() -> Lane:
    """The lane of /health, apart from the reads and the shared pool."""
    return Lane("health", HEALTH_SLOTS)


async def answer_busy(request: Request, error: Exception) -> JSONResponse:
    """503 with Retry-After: the reads are all busy, try again shortly."""
    return problem_response(
        BUSY, "busy: too many reads at once, retry shortly", headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
    )
