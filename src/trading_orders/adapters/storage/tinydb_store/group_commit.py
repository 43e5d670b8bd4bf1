"""Group commit: one flush makes durable every order written while the previous one ran."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from collections.abc import Callable

from trading_orders.adapters.storage.tinydb_store.backoff import Backoff
from trading_orders.application.errors import OrderInDoubt, StorageUnavailable

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

    An unexpected error in the committer (a bug such as an IndexError, a
    SystemExit raised in a flush) is not survived in place: whatever it
    interrupted may have left the in-memory state ahead of the disk. The
    committer is restarted rather than the process stopped, because the
    store can rebuild that state safely from what the disk vouches for:
    roll_back() cuts the log back to its last durable entry and rebuilds
    the positions from the snapshot and the log. So the committer stops
    serving (running() is False, the store refuses orders and /health says
    503), rolls back, answers every order it holds or that waits (durable
    ones as recorded, the others 503), pauses as ``restarts`` says (a bug
    that recurs at every flush must not spin) and serves again. Should even
    the roll-back fail, the orders are answered 503 as in doubt and the
    roll-back is retried until it succeeds; only then are orders taken.
    """

    def __init__(
        self,
        flush: Callable[[], None],
        is_durable: Callable[[int], bool],
        roll_back: Callable[[StorageUnavailable], None],
        restarts: Backoff | None = None,
    ) -> None:
        """Flush with ``flush``, ask ``is_durable``, drop doubtful entries with ``roll_back``; see ``restarts``."""
        self._flush = flush
        self._is_durable = is_durable
        self._roll_back = roll_back
        self._restarts = restarts or Backoff()
        self._condition = threading.Condition()
        self._flushing = False
        self._epoch = 0
        self._ended: dict[int, tuple[int, StorageUnavailable]] = {}
        self._awaiting: list[_Awaiting] = []
        # The batch the committer has taken and not answered yet: should the
        # committer fail, these orders are still answered.
        self._in_hand: list[_Awaiting] = []
        self._committer: threading.Thread | None = None
        self._stopping = False
        self._stopped = threading.Event()
        # False from an unexpected error in the committer until it serves again.
        self._serving = False
        self._failures_in_a_row = 0
        # The error the committer is recovering from, until its roll-back succeeded.
        self._unrecovered: StorageUnavailable | None = None

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
            self._stopped.clear()
            self._start_committer()

    def _start_committer(self) -> None:
        self._serving = self._unrecovered is None
        self._committer = threading.Thread(target=self._serve, name="group-commit", daemon=True)
        self._committer.start()

    @property
    def serving(self) -> bool:
        """False while the committer recovers from an unexpected error: an order written now may wait on it."""
        return self._serving

    def revive(self) -> None:
        """Start a new committer if the thread has ended while it should run (it outlives errors, so rarely)."""
        with self._condition:
            committer = self._committer
            if committer is not None and not committer.is_alive() and not self._stopping:
                logger.critical("the group-commit thread had stopped; starting a new one")
                self._start_committer()

    def running(self) -> bool:
        """True while the committer thread is there to answer orders."""
        committer = self._committer
        return self._serving and committer is not None and committer.is_alive()

    def stop(self) -> None:
        """Answer every order still waiting, then stop the committer thread."""
        with self._condition:
            self._stopping = True
            self._stopped.set()
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
            if not self._serving and epoch != self._epoch:
                # Written before a committer failure that has rolled back
                # already: the answer is known, no committer is needed.
                self._raise_if_dropped(sequence, epoch)
                return
            self._awaiting.append((sequence, epoch, loop, future))
            self._condition.notify_all()
            # _serve outlives any error of the commit loop; should the thread
            # end anyway, the orders waiting are still in _awaiting and
            # _in_hand, and a new committer answers them.
            self.revive()
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
        except Exception as unexpected:
            # Met by a read or a checkpoint flushing for everyone: what the
            # disk holds is unknown, so it is treated as the disk's failure
            # (roll back to what it vouches for) and the caller answers 503.
            logger.critical("a flush outside the group-commit thread failed unexpectedly; rolling back", exc_info=True)
            failure = _unexpected_failure(unexpected)
            self._roll_back(failure)
            raise failure from unexpected
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

    def _serve(self) -> None:
        """Run the commit loop until stopped; after an unexpected error, recover and run it again."""
        while True:
            # A committer started in place of one that ended while recovering
            # finishes that recovery first.
            error = self._unrecovered
            if error is None:
                try:
                    self._commit_loop()
                    return
                except BaseException as unexpected:
                    # Whatever it is, this thread must outlive it: the orders it
                    # holds and every later order wait on it for their answers.
                    self._serving = False
                    self._failures_in_a_row += 1
                    logger.critical("the group-commit thread failed unexpectedly; recovering", exc_info=True)
                    error = _unexpected_failure(unexpected)
                    self._unrecovered = error
            if not self._recover(error):
                return
            self._unrecovered = None
            self._serving = True
            logger.warning("the group-commit thread serves again")

    def _recover(self, error: StorageUnavailable) -> bool:
        """Roll back to what the disk vouches for, answer every order held, pause; False once stopping."""
        rolled_back = self._try_roll_back(error)
        self._answer_held(
            error
            if rolled_back
            else OrderInDoubt(
                f"{error} and could not be undone yet: whether the order was recorded is known once the store "
                "takes orders again; retry it with its Idempotency-Key"
            )
        )
        failures = 1
        while not rolled_back:
            if self._stopped.wait(self._restarts.pause(failures)):
                return False
            rolled_back = self._try_roll_back(error)
            failures += 1
        # Answered once more: orders that arrived while the roll-back failed.
        self._answer_held(error)
        return not self._stopped.wait(self._restarts.pause(self._failures_in_a_row))

    def _try_roll_back(self, error: StorageUnavailable) -> bool:
        # As the one flushing: a flush another thread runs (wait() from a
        # read or a checkpoint) must not sync the log while it is cut back.
        with self._condition:
            while self._flushing:
                self._condition.wait()
            self._flushing = True
        try:
            self._roll_back(error)
        except BaseException:
            logger.critical("rolling back after the group-commit failure failed too; retrying", exc_info=True)
            return False
        finally:
            with self._condition:
                self._flushing = False
                self._condition.notify_all()
        return True

    def _answer_held(self, error: StorageUnavailable) -> None:
        """Answer the batch in hand and every order waiting: durable ones as recorded, the rest ``error``."""
        with self._condition:
            held, self._in_hand, self._awaiting = self._in_hand + self._awaiting, [], []
            settled: dict[asyncio.AbstractEventLoop, list[Outcome]] = defaultdict(list)
            for sequence, epoch, loop, future in held:
                ended = self._ended.get(epoch)
                durable = sequence <= ended[0] if ended is not None else self._is_durable(sequence)
                settled[loop].append((future, None if durable else error))
        _dispatch(settled)

    def _commit_loop(self) -> None:
        """Flush for the awaited entries, a batch per flush: the orders that arrive meanwhile form the next."""
        while True:
            with self._condition:
                while not self._awaiting and not self._stopping:
                    self._condition.wait()
                if not self._awaiting:
                    return
                self._in_hand, self._awaiting = self._awaiting, []
                batch = self._in_hand
            settled = self._settled(batch)
            with self._condition:
                self._in_hand = []
            _dispatch(settled)
            self._failures_in_a_row = 0

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


def _dispatch(settled: dict[asyncio.AbstractEventLoop, list[Outcome]]) -> None:
    """Settle each event loop's futures with one call into that loop."""
    for loop, outcomes in settled.items():
        try:
            loop.call_soon_threadsafe(_settle, outcomes)
        except RuntimeError:
            logger.warning("an event loop closed with %d orders awaiting their answers", len(outcomes))


def _settle(outcomes: list[Outcome]) -> None:
    for future, error in outcomes:
        if future.done():
            continue  # the request was cancelled (its client went away)
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def _unexpected_failure(unexpected: BaseException) -> StorageUnavailable:
    """What an unexpected error in a flush, by the committer or anyone, is reported as: the disk's failure."""
    return StorageUnavailable(f"the order log's commit failed ({type(unexpected).__name__})")
