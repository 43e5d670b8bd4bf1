"""The decision stream: every logged order after a sequence, from the log, then live as it is logged.

A follower names the last sequence it has handled and receives every entry
after it, oldest first, each once: first what the log already holds, read
in chunks, then live: what this process records is handed over as it is
made durable, and a single poller per process reads from the log what other
processes record (and anything handed over out of order). Sequences are
the log's, so a follower resumes across restarts of either side with no
gap and no duplicate. A follower that does not keep up is cut off with the
sequence to resume from; its buffer never grows past ``buffer`` entries and
nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import Protocol, TypeVar

from trading_orders.application.errors import DamagedLogEntry, StorageUnavailable
from trading_orders.application.order_history import HistoryFilter
from trading_orders.application.ports import OrderLogReader, OrderStore
from trading_orders.domain.controls import LogEntry

logger = logging.getLogger(__name__)

# Entries read from the log in one hop while catching up: about 5 ms of
# decoding, so a long replay does not hold a read thread for long at a time.
CATCH_UP_CHUNK = 500
# Entries waiting for one follower before it is cut off.
DEFAULT_BUFFER = 1000
DEFAULT_POLL_SECONDS = 0.1
# Followers one process serves at once. Each holds a socket, a file
# descriptor, for as long as it follows: with the usual limit of 1024 open
# files this leaves three quarters of them to orders, reads and /health.
DEFAULT_MAX_FOLLOWERS = 256
# How long a woken follower waits for more entries before sending what it has.
GATHER_SECONDS = 0.005

Result = TypeVar("Result")


class BlockingReads(Protocol):
    """Runs a blocking read off the event loop (the service's read lane)."""

    def __call__(self, read: Callable[[], Result], /) -> Awaitable[Result]:
        """The result of ``read``, run where blocking is allowed."""
        ...


class ResumePointAhead(ValueError):
    """The follower's last sequence is beyond the log's last: it followed another log."""

    def __init__(self, after: int, last_sequence: int) -> None:
        super().__init__(
            f"sequence {after} is beyond the order log's last, {last_sequence}: this log is not the one followed"
        )
        self.after = after
        self.last_sequence = last_sequence


class TooManyFollowers(RuntimeError):
    """The feed already serves as many followers as it takes; one more may follow once another leaves."""

    def __init__(self, most: int) -> None:
        super().__init__(f"{most} followers already follow the order log, the most this service takes; retry later")
        self.most = most


class FollowerPlace:
    """One follower's place among the most the feed serves at once; given back once, when its stream ends."""

    def __init__(self, free: Callable[[], None]) -> None:
        self._free: Callable[[], None] | None = free

    def give_back(self) -> None:
        """Free the place for another follower; a second call does nothing."""
        if self._free is not None:
            self._free()
            self._free = None


@dataclass(frozen=True, slots=True)
class FellBehind:
    """The follower was cut off; it resumes after ``after``."""

    after: int
    reason: str


@dataclass(frozen=True, slots=True)
class Progress:
    """The follower has seen every entry up to ``sequence``, none of them kept by its filter."""

    sequence: int


# Entries come in batches, oldest first: what one read of the log or one
# drain of the live buffer found, so a stream can send them in one write.
FeedItem = list[LogEntry] | FellBehind | Progress


class _Follower:
    """One follower's bounded buffer of the live entries it keeps, and how far the poller has read for it."""

    def __init__(self, keeps: HistoryFilter, buffer: int, seen: int) -> None:
        self.keeps = keeps
        self.entries: asyncio.Queue[LogEntry] = asyncio.Queue(maxsize=buffer)
        # The newest sequence published to this follower, kept or not.
        self.seen = seen
        # Set when an entry found the buffer full: every entry before it was
        # queued or not kept, so the follower resumes after this sequence.
        self.cut_off: int | None = None
        # Set when the poller met an entry it cannot read: the follower
        # gets every entry before it, then this error.
        self.fault: DamagedLogEntry | None = None
        self.arrived = asyncio.Event()


class DecisionFeed:
    """Follows the order log for any number of followers with one reader of the log per process."""

    def __init__(
        self,
        order_log: OrderLogReader,
        store: OrderStore,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        buffer: int = DEFAULT_BUFFER,
        max_followers: int = DEFAULT_MAX_FOLLOWERS,
    ) -> None:
        """Follow ``order_log``, whose newest sequence ``store`` tells, polling every ``poll_seconds``."""
        if poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be above 0, got {poll_seconds}")
        if buffer < 1:
            raise ValueError(f"buffer must be at least 1, got {buffer}")
        if max_followers < 1:
            raise ValueError(f"max_followers must be at least 1, got {max_followers}")
        self._max_followers = max_followers
        # Places given to streams, catching up or live: counted on the event loop only.
        self._places_taken = 0
        self._order_log = order_log
        self._store = store
        self._poll_seconds = poll_seconds
        self._buffer = buffer
        self._followers: set[_Follower] = set()
        self._published = 0
        self._poller: asyncio.Task[None] | None = None
        # Set to make the poller read the log now instead of at its next poll.
        self._read_now = asyncio.Event()

    def take_place(self) -> FollowerPlace:
        """A place for one more follower, or TooManyFollowers when every place is taken."""
        if self._places_taken >= self._max_followers:
            raise TooManyFollowers(self._max_followers)
        self._places_taken += 1
        return FollowerPlace(self._free_place)

    def _free_place(self) -> None:
        self._places_taken -= 1

    async def check_resume_point(self, after: int, reads: BlockingReads) -> None:
        """Raise ResumePointAhead when ``after`` is beyond the log's newest sequence."""
        newest = (await reads(self._store.state)).last_sequence
        if after > newest:
            raise ResumePointAhead(after, newest)

    async def follow(
        self, after: int, keeps: HistoryFilter, reads: BlockingReads, progress_every: int = CATCH_UP_CHUNK
    ) -> AsyncGenerator[FeedItem, None]:
        """Every entry after sequence ``after`` that ``keeps`` keeps, oldest first, each once, in batches; then live.

        Ends with FellBehind when the follower could not keep up. Between kept
        entries it yields Progress at most every ``progress_every`` entries
        read, so a filtered follower can resume without rereading them. When
        the log cannot be read it yields every entry read before the fault,
        then raises StorageUnavailable (DamagedLogEntry for an entry that is
        damaged, naming it).
        """
        last = after
        # The sequence of the last item yielded: Progress is due when the
        # follower has read ``progress_every`` entries past it, none kept.
        told = after
        # Catch up from the log without a live buffer, so a long replay cannot
        # overflow it; then join the poller and read once more what was logged
        # meanwhile: it publishes only what comes after the point it had reached.
        follower: _Follower | None = None
        try:
            while True:
                chunk, fault = await reads(partial(self._chunk_after, last))
                kept = [entry for entry in chunk if keeps.keeps_entry(entry)]
                if chunk:
                    last = chunk[-1].sequence
                if kept:
                    told = kept[-1].sequence
                    yield kept
                if fault is not None:
                    if last > told:
                        yield Progress(last)  # resume after what was read, not before it
                    raise fault
                if follower is not None:
                    if len(chunk) == CATCH_UP_CHUNK:
                        yield FellBehind(last, "too many orders arrived while catching up; resume from here")
                        return
                    break
                if last - told >= progress_every:
                    told = last
                    yield Progress(last)
                if len(chunk) < CATCH_UP_CHUNK:
                    follower = self._join(last, keeps)
            while True:
                if not follower.entries.empty():
                    fresh = []
                    while not follower.entries.empty():
                        entry = follower.entries.get_nowait()
                        if entry.sequence > last:
                            fresh.append(entry)
                            last = told = entry.sequence
                    if fresh:
                        yield fresh
                    continue
                if follower.fault is not None:
                    raise follower.fault
                if follower.cut_off is not None:
                    yield FellBehind(
                        max(last, follower.cut_off), f"more than {self._buffer} orders waited for this follower"
                    )
                    return
                # Every kept entry up to ``seen`` was queued, and the queue is empty.
                last = max(last, follower.seen)
                if last - told >= progress_every:
                    told = last
                    yield Progress(last)
                    continue
                follower.arrived.clear()
                await follower.arrived.wait()
                # Entries are handed over one by one as they commit: a moment's
                # wait lets a busy second's entries go out in one write, not one each.
                await asyncio.sleep(GATHER_SECONDS)
        finally:
            if follower is not None:
                self._followers.discard(follower)

    def _chunk_after(self, sequence: int) -> tuple[list[LogEntry], StorageUnavailable | None]:
        """Up to a chunk of entries after ``sequence``, and the fault that ended it early, if any."""
        chunk: list[LogEntry] = []
        try:
            chunk.extend(islice(self._order_log.entries_after(sequence), CATCH_UP_CHUNK))
        except StorageUnavailable as fault:
            return chunk, fault
        return chunk, None

    def _join(self, caught_up_to: int, keeps: HistoryFilter) -> _Follower:
        follower = _Follower(keeps, self._buffer, caught_up_to)
        if self._poller is None or self._poller.done():
            # Nobody was following: the poller starts where this follower is,
            # and everything up to there it has read itself.
            self._published = caught_up_to
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="decision-feed")
        self._followers.add(follower)
        return follower

    async def _poll(self) -> None:
        """Read what the log gained and hand it to every follower, until nobody follows."""
        failing = False
        while self._followers:
            fresh: list[LogEntry] = []
            self._read_now.clear()
            try:
                fresh, fault = await asyncio.to_thread(self._chunk_after, self._published)
                for entry in fresh:
                    # Entries handed over while the log was read are published already.
                    if entry.sequence > self._published:
                        self._publish(entry)
                if isinstance(fault, DamagedLogEntry):
                    self._stop_every_follower(fault)
                elif fault is not None:
                    raise fault
                if failing:
                    failing = False
                    logger.warning("decision feed: reading the order log again")
            except Exception:
                # A store that fails now (a lost database, a disk error) may
                # heal: followers keep waiting, and the next poll tries again.
                # Said once per outage, not ten times a second.
                if not failing:
                    failing = True
                    logger.exception("decision feed: reading the order log failed; retrying every poll")
            if len(fresh) < CATCH_UP_CHUNK:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._read_now.wait(), self._poll_seconds)

    def _stop_every_follower(self, fault: DamagedLogEntry) -> None:
        """End every live follower with ``fault``: no later entry can reach them in order until it is repaired."""
        logger.error("decision feed: %s; every follower is told where to resume", fault)
        for follower in self._followers:
            follower.fault = fault
            follower.arrived.set()
        self._followers.clear()

    def recorded(self, entry: LogEntry) -> None:
        """Publish ``entry``, just made durable by this process, to every follower without reading the log."""
        if not self._followers or entry.sequence <= self._published:
            return
        if entry.sequence == self._published + 1:
            self._publish(entry)
        else:
            # A gap: another process's orders, or a commit answered before an
            # earlier one. The log has them all, in order; the poller reads it now.
            self._read_now.set()

    def _publish(self, entry: LogEntry) -> None:
        self._published = entry.sequence
        for follower in list(self._followers):
            if entry.sequence <= follower.seen:
                continue
            if follower.keeps.keeps_entry(entry):
                try:
                    follower.entries.put_nowait(entry)
                except asyncio.QueueFull:
                    follower.cut_off = entry.sequence - 1
                    self._followers.discard(follower)
            follower.seen = entry.sequence
            follower.arrived.set()

    async def close(self) -> None:
        """Stop the poller."""
        self._followers.clear()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
