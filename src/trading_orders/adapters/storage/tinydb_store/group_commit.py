"""Group commit: one flush makes durable every order written while the previous one ran."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from collections.abc import Callable

from trading_orders.application.errors import StorageUnavailable

logger = logging.getLogger(__name__)

# Where an order's entry stands: (its sequence, the epoch of the commits it was written in).
Ticket = tuple[int, int]

Outcome = tuple[asyncio.Future[None], StorageUnavailable | None]

# An order waiting for the disk: its ticket, its event loop, the future that answers it.
_Awaiting = tuple[int, int, asyncio.AbstractEventLoop, asyncio.Future[None]]


class GroupCommit:
    """Waits for written entries to become durable, one flush at a time for everyone waiting.

    ``flush`` makes everything written so far durable; ``is_durable(n)``
    tells whether entry n already is; ``roll_back(error)`` drops what a
    failed flush could not vouch for, and calls end_epoch() while it holds
    the writers' lock. Entries of an ended epoch are durable only up to the
    sequence that epoch ended at; the rest answer the flush's error.

    Event loops await durable(); a committer thread flushes for them and
    settles each loop's futures of a batch with one call into that loop.
    """

    def __init__(
        self,
        flush: Callable[[], None],
        is_durable: Callable[[int], bool],
        roll_back: Callable[[StorageUnavailable], None],
    ) -> None:
        """Flush with ``flush``, ask ``is_durable``, and drop doubtful entries with ``roll_back``."""
        self._flush = flush
        self._is_durable = is_durable
        self._roll_back = roll_back
        self._condition = threading.Condition()
        self._flushing = False
        self._epoch = 0
        self._ended: dict[int, tuple[int, StorageUnavailable]] = {}
        self._awaiting: list[_Awaiting] = []
        self._committer: threading.Thread | None = None
        self._stopping = False

    @property
    def epoch(self) -> int:
        """The current epoch: read it under the writers' lock, with the sequence just written."""
        return self._epoch

    def end_epoch(self, survived: int, error: StorageUnavailable) -> None:
        """Close the current epoch: its entries after ``survived`` were dropped because of ``error``."""
        with self._condition:
            self._ended[self._epoch] = (survived, error)
            self._epoch += 1

    def start(self) -> None:
        """Start the committer thread that flushes for event loops."""
        if self._committer is None:
            self._stopping = False
            self._start_committer()

    def _start_committer(self) -> None:
        self._committer = threading.Thread(target=self._commit_loop, name="group-commit", daemon=True)
        self._committer.start()

    def running(self) -> bool:
        """True while the committer thread is there to answer orders."""
        committer = self._committer
        return committer is not None and committer.is_alive()

    def stop(self) -> None:
        """Answer every order still waiting, then stop the committer thread."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._committer is not None:
            self._committer.join()
            self._committer = None

    async def durable(self, ticket: Ticket) -> None:
        """Return once the entry of ``ticket`` is durable; raises StorageUnavailable if it was dropped."""
        sequence, epoch = ticket
        if epoch == self._epoch and self._is_durable(sequence):
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._condition:
            self._awaiting.append((sequence, epoch, loop, future))
            self._condition.notify_all()
            committer = self._committer
            if committer is not None and not committer.is_alive() and not self._stopping:
                # _commit_loop outlives any error of a flush; should it end
                # anyway, the orders waiting are still in _awaiting, and a new
                # committer answers them.
                logger.critical("the group-commit thread had stopped; starting a new one")
                self._start_committer()
        await future

    def wait(self, ticket: Ticket) -> None:
        """Block until the entry of ``ticket`` is durable, flushing for everyone if no one is."""
        sequence, epoch = ticket
        with self._condition:
            while True:
                if epoch != self._epoch:
                    self._raise_if_dropped(sequence, epoch)
                    return
                if self._is_durable(sequence):
                    return
                if not self._flushing:
                    break
                self._condition.wait()
            self._flushing = True
        try:
            # Covers every entry written so far, this one included.
            self._flush()
        except StorageUnavailable as error:
            self._roll_back(error)
        finally:
            with self._condition:
                self._flushing = False
                self._condition.notify_all()
                if epoch != self._epoch:
                    self._raise_if_dropped(sequence, epoch)

    def _raise_if_dropped(self, sequence: int, epoch: int) -> None:
        survived, error = self._ended[epoch]
        if sequence > survived:
            raise StorageUnavailable(str(error))

    def _commit_loop(self) -> None:
        """Flush for the awaited entries, a batch per flush: the orders that arrive meanwhile form the next."""
        while True:
            with self._condition:
                while not self._awaiting and not self._stopping:
                    self._condition.wait()
                if not self._awaiting:
                    return
                batch, self._awaiting = self._awaiting, []
            try:
                settled = self._settled(batch)
            except BaseException as unexpected:
                # Whatever it is (a bug, a SystemExit raised in a flush), this
                # thread must outlive it: the batch's orders wait on it for
                # their answers, and so does every later order.
                settled = self._failed(batch, unexpected)
            for loop, outcomes in settled.items():
                try:
                    loop.call_soon_threadsafe(_settle, outcomes)
                except RuntimeError:
                    logger.warning("an event loop closed with %d orders awaiting their answers", len(outcomes))

    def _settled(self, batch: list[_Awaiting]) -> dict[asyncio.AbstractEventLoop, list[Outcome]]:
        """Each awaited entry's outcome, by event loop: None once durable, else the error that dropped it."""
        settled: dict[asyncio.AbstractEventLoop, list[Outcome]] = defaultdict(list)
        for sequence, epoch, loop, future in batch:
            try:
                # The first call flushes for the whole batch; the rest return at once.
                self.wait((sequence, epoch))
                settled[loop].append((future, None))
            except StorageUnavailable as error:
                settled[loop].append((future, error))
        return settled

    def _failed(
        self, batch: list[_Awaiting], unexpected: BaseException
    ) -> dict[asyncio.AbstractEventLoop, list[Outcome]]:
        """Answer a batch that met an unexpected error as a failed flush: drop what the disk did not vouch for."""
        logger.exception("the group commit failed unexpectedly; the orders not yet durable are dropped")
        error = StorageUnavailable(f"the order log's commit failed ({type(unexpected).__name__})")
        try:
            self._roll_back(error)
        except Exception:
            logger.exception("the roll-back after the failed group commit failed too")
            error = StorageUnavailable(
                f"the order log's commit failed ({type(unexpected).__name__}) and could not be undone: "
                "whether the order was recorded is known only after a restart"
            )
        settled: dict[asyncio.AbstractEventLoop, list[Outcome]] = defaultdict(list)
        for sequence, epoch, loop, future in batch:
            # The roll-back ended the epoch at the last entry the disk vouched for.
            ended = self._ended.get(epoch)
            durable = ended is not None and sequence <= ended[0]
            settled[loop].append((future, None if durable else error))
        return settled


def _settle(outcomes: list[Outcome]) -> None:
    for future, error in outcomes:
        if future.done():
            continue  # the request was cancelled (its client went away)
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
