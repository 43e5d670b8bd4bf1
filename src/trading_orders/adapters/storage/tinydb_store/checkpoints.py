"""Checkpoints off the request path: a thread that snapshots every so many orders or seconds."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from trading_orders.adapters.storage.tinydb_store.backoff import Backoff
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
    """Runs ``checkpoint`` on its own thread when the policy says it is time; a failure waits for the next.

    A disk that refuses (StorageUnavailable, OSError) is expected: orders go on, the
    log holds them, and the next checkpoint tries again. Anything else is a
    bug whose consequences are unknown; the thread then stops serving
    (running() is False, the store refuses orders and /health says 503),
    pauses as ``restarts`` says and runs again. Restarting is safe: a
    checkpoint changes nothing the store serves from, and each of its writes
    (trade log sync, index rows, snapshot file) is whole or absent.
    """

    def __init__(
        self, policy: CheckpointPolicy, checkpoint: Callable[[], bool], restarts: Backoff | None = None
    ) -> None:
        """Call ``checkpoint`` (True when it snapshotted something new) as ``policy`` says; restart per ``restarts``."""
        self._policy = policy
        self._checkpoint = checkpoint
        self._restarts = restarts or Backoff()
        self._orders = 0
        self._wake = threading.Event()
        self._stopping = False
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._serving = True
        self._failures_in_a_row = 0

    def count(self, orders: int = 1) -> None:
        """Note ``orders`` more orders since the last checkpoint; wakes the thread once the policy's number is hit."""
        self._orders += orders
        if self._orders >= self._policy.every_orders:
            self._wake.set()
            # Snapshots must go on, or every restart replays an ever longer log.
            self.revive()

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
            self._stopped.clear()
            self._start_thread()

    def _start_thread(self) -> None:
        self._serving = True
        self._thread = threading.Thread(target=self._serve, name="checkpoint", daemon=True)
        self._thread.start()

    @property
    def serving(self) -> bool:
        """False from an unexpected error in a checkpoint until the thread runs again."""
        return self._serving

    def running(self) -> bool:
        """True while the thread is there and serving (also before start(): nothing to run yet)."""
        thread = self._thread
        return self._serving and (thread is None or thread.is_alive())

    def revive(self) -> None:
        """Start a new thread if the thread has ended while it should run (it outlives errors, so rarely)."""
        thread = self._thread
        if thread is not None and not thread.is_alive() and not self._stopping:
            logger.critical("the checkpoint thread had stopped; starting a new one")
            self._start_thread()

    def stop(self) -> None:
        """Stop the thread after the checkpoint it may be running."""
        self._stopping = True
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _serve(self) -> None:
        """Run the checkpoint loop until stopped; after an unexpected error, pause and run it again."""
        while True:
            try:
                self._loop()
                return
            except BaseException:
                self._serving = False
                self._failures_in_a_row += 1
                pause = self._restarts.pause(self._failures_in_a_row)
                logger.critical(
                    "the checkpoint thread failed unexpectedly; restarting it in %.1fs", pause, exc_info=True
                )
            if self._stopped.wait(pause):
                return
            self._serving = True
            logger.warning("the checkpoint thread runs again")

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
                self._failures_in_a_row = 0
            except (StorageUnavailable, OSError) as error:
                # The disk's refusal, expected: the log holds every order.
                logger.error("checkpoint failed (%s); orders go on, and the next checkpoint tries again", error)
