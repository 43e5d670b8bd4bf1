"""Checkpoints off the request path: a thread that snapshots every so many orders or seconds."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from trading_orders.application.errors import StorageUnavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CheckpointPolicy:
    """How often the open positions are snapshotted and the log's index brought up to date."""

    every_orders: int = 10_000
    every_seconds: float = 10.0

    def __post_init__(self) -> None:
        """Refuse intervals that would never or always checkpoint."""
        if self.every_orders < 1:
            raise ValueError(f"every_orders must be at least 1, got {self.every_orders}")
        if self.every_seconds <= 0:
            raise ValueError(f"every_seconds must be above 0, got {self.every_seconds}")


class Checkpointer:
    """Runs ``checkpoint`` on its own thread when the policy says it is time; a failure waits for the next."""

    def __init__(self, policy: CheckpointPolicy, checkpoint: Callable[[], bool]) -> None:
        """Call ``checkpoint`` (True when it snapshotted something new) as ``policy`` says."""
        self._policy = policy
        self._checkpoint = checkpoint
        self._orders = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def count(self, orders: int = 1) -> None:
        """Note ``orders`` more orders since the last checkpoint; wakes the thread once the policy's number is hit."""
        self._orders += orders
        if self._orders >= self._policy.every_orders:
            self._wake.set()
            thread = self._thread
            if thread is not None and not thread.is_alive() and not self._stopping:
                # _loop catches every Exception; only something like a
                # SystemExit inside a checkpoint ends it. Snapshots must go on,
                # or every restart replays an ever longer log.
                logger.critical("the checkpoint thread had stopped; starting a new one")
                self._start_thread()

    def soon(self) -> None:
        """Checkpoint at the next chance, whatever the count (e.g. after a start-up replayed the log)."""
        self._wake.set()

    def restart_count(self) -> None:
        """A checkpoint has taken every order so far: count from zero."""
        self._orders = 0

    def start(self) -> None:
        """Start the thread."""
        if self._thread is None:
            self._stopping = False
            self._start_thread()

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after the checkpoint it may be running."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping:
            self._wake.wait(self._policy.every_seconds)
            self._wake.clear()
            if self._stopping:
                return
            started = time.perf_counter()
            try:
                if self._checkpoint():
                    logger.debug("checkpoint in %.3fs", time.perf_counter() - started)
            except StorageUnavailable as error:
                logger.error("checkpoint failed (%s); orders go on, and the next checkpoint tries again", error)
            except Exception:
                logger.exception("checkpoint failed; orders go on, and the next checkpoint tries again")
