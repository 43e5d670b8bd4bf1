"""The decision feed over a fake store's log: each entry once and in order, bounded followers, progress."""

import asyncio
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime
from typing import TypeVar

import pytest

from tests.service.fakes import FakeOrderStore
from trading_orders.application.decision_feed import (
    DecisionFeed,
    FeedItem,
    FellBehind,
    Progress,
    ResumePointAhead,
    TooManyFollowers,
)
from trading_orders.application.errors import DamagedLogEntry
from trading_orders.application.order_history import HistoryFilter
from trading_orders.domain.model import Order, OrderDecision, OrderLogEntry, Side

Result = TypeVar("Result")


def log_orders(log: FakeOrderStore, count: int, strategy: str = "S1") -> None:
    """``count`` more orders of ``strategy`` committed to ``log``, as another process would, unseen by the feed."""
    for _ in range(count):
        sequence = len(log.entries) + 1
        decision = OrderDecision(f"o{sequence}", datetime.now(UTC), Order(strategy, "ACC", Side.BUY), ())
        log.entries.append(OrderLogEntry(sequence, decision))


async def inline(read: Callable[[], Result]) -> Result:
    """Runs a read on the loop: the log is in memory."""
    return read()


def feed_over(log: FakeOrderStore, buffer: int = 1000) -> DecisionFeed:
    """A feed polling ``log`` often."""
    return DecisionFeed(log, log, poll_seconds=0.001, buffer=buffer)


async def take(items: AsyncGenerator[FeedItem, None]) -> FeedItem:
    """The next item, failing after a second without one."""
    return await asyncio.wait_for(anext(items), 1)


async def sequences(items: AsyncGenerator[FeedItem, None], count: int) -> list[int]:
    """The sequences of the next ``count`` entries, however they are batched; fails on anything else."""
    found: list[int] = []
    while len(found) < count:
        batch = await take(items)
        assert isinstance(batch, list), batch
        found += [entry.sequence for entry in batch]
    return found


def test_followers_joining_at_different_points_each_get_every_later_entry_once() -> None:
    async def scenario() -> None:
        log = FakeOrderStore()
        feed = feed_over(log)
        log_orders(log, 3)
        early = feed.follow(0, HistoryFilter(), inline)
        assert await sequences(early, 3) == [1, 2, 3]
        log_orders(log, 2)
        assert await sequences(early, 2) == [4, 5]
        # The poller has published up to 5: a second follower from 1 catches up from the log.
        late = feed.follow(1, HistoryFilter(), inline)
        assert await sequences(late, 4) == [2, 3, 4, 5]
        log_orders(log, 3)
        assert await sequences(early, 3) == [6, 7, 8]
        assert await sequences(late, 3) == [6, 7, 8]
        await early.aclose()
        await late.aclose()
        await feed.close()

    asyncio.run(scenario())


def test_a_follower_that_does_not_keep_up_is_cut_off_where_it_can_resume_and_the_other_is_not() -> None:
    async def scenario() -> None:
        log = FakeOrderStore()
        feed = feed_over(log, buffer=2)
        slow = feed.follow(0, HistoryFilter(), inline)
        other = feed.follow(0, HistoryFilter(strategy="S2"), inline, progress_every=10**9)
        first = asyncio.ensure_future(anext(other))
        log_orders(log, 1)
        assert await sequences(slow, 1) == [1], "from the log, catching up"
        live = asyncio.ensure_future(anext(slow))
        await asyncio.sleep(0.02)
        log_orders(log, 1)
        batch = await asyncio.wait_for(live, 1)
        assert isinstance(batch, list) and [e.sequence for e in batch] == [2], "from the poller, live"
        log_orders(log, 6)  # 3-8 in one poll, while the slow follower reads nothing
        await asyncio.sleep(0.05)
        assert await sequences(slow, 2) == [3, 4]
        behind = await take(slow)
        assert isinstance(behind, FellBehind) and behind.after == 4
        with pytest.raises(StopAsyncIteration):
            await anext(slow)
        log_orders(log, 1, strategy="S2")
        kept = await asyncio.wait_for(first, 1)
        assert isinstance(kept, list) and [e.sequence for e in kept] == [9]
        await other.aclose()
        await feed.close()

    asyncio.run(scenario())


def test_a_filtered_follower_hears_how_far_it_has_read() -> None:
    async def scenario() -> None:
        log = FakeOrderStore()
        feed = feed_over(log)
        log_orders(log, 7)
        follower = feed.follow(0, HistoryFilter(strategy="S2"), inline, progress_every=5)
        assert await take(follower) == Progress(7), "catching up, it read 7 entries and kept none"
        log_orders(log, 4)
        log_orders(log, 1, strategy="S2")
        assert await sequences(follower, 1) == [12]
        await follower.aclose()
        await feed.close()

    asyncio.run(scenario())


def test_a_resume_point_beyond_the_log_is_refused() -> None:
    async def scenario() -> None:
        log = FakeOrderStore()
        log_orders(log, 2)
        feed = feed_over(log)
        await feed.check_resume_point(2, inline)
        with pytest.raises(ResumePointAhead, match="sequence 3 is beyond the order log's last, 2"):
            await feed.check_resume_point(3, inline)

    asyncio.run(scenario())


def test_followers_wait_out_a_log_that_cannot_be_read_and_get_every_entry_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        log = FakeOrderStore()
        feed = feed_over(log)
        follower = feed.follow(0, HistoryFilter(), inline)
        live = asyncio.ensure_future(anext(follower))
        await asyncio.sleep(0.02)
        log.read_failures = 20
        log_orders(log, 2)
        batch = await asyncio.wait_for(live, 2)
        assert isinstance(batch, list) and [e.sequence for e in batch] == [1, 2]
        await follower.aclose()
        await feed.close()

    asyncio.run(scenario())
    failed = [r for r in caplog.records if "reading the order log failed" in r.getMessage()]
    assert len(failed) == 1, "said once per outage"
    assert any("reading the order log again" in r.getMessage() for r in caplog.records)


def test_a_follower_catching_up_gets_every_entry_before_a_damaged_one_then_the_error_naming_it() -> None:
    async def scenario() -> None:
        log = FakeOrderStore()
        log_orders(log, 3)
        log_orders(log, 3, strategy="S2")
        log.damaged.add(6)
        feed = feed_over(log)
        everything = feed.follow(0, HistoryFilter(), inline)
        assert await sequences(everything, 5) == [1, 2, 3, 4, 5]
        with pytest.raises(DamagedLogEntry) as raised:
            await take(everything)
        assert raised.value.sequence == 6
        # A filtered follower is told how far it read first, so it resumes after 5, not after 3.
        filtered = feed.follow(0, HistoryFilter(strategy="S1"), inline)
        assert await sequences(filtered, 3) == [1, 2, 3]
        assert await take(filtered) == Progress(5)
        with pytest.raises(DamagedLogEntry):
            await take(filtered)
        await feed.close()

    asyncio.run(scenario())


def test_a_live_follower_whose_next_entry_is_damaged_gets_the_error_naming_it_instead_of_waiting() -> None:
    async def scenario() -> None:
        log = FakeOrderStore()
        log_orders(log, 2)
        feed = feed_over(log)
        follower = feed.follow(0, HistoryFilter(), inline)
        assert await sequences(follower, 2) == [1, 2]
        log_orders(log, 3)
        log.damaged.add(4)
        assert await sequences(follower, 1) == [3]
        with pytest.raises(DamagedLogEntry) as raised:
            await take(follower)
        assert raised.value.sequence == 4
        await feed.close()

    asyncio.run(scenario())


def test_an_entry_recorded_in_this_process_reaches_followers_without_a_poll_and_a_gap_is_read_from_the_log() -> None:
    async def scenario() -> None:
        log = FakeOrderStore()
        # An hour between polls: whatever arrives in this test came by hand-over.
        feed = DecisionFeed(log, log, poll_seconds=3600, buffer=1000)
        follower = feed.follow(0, HistoryFilter(), inline)
        first = asyncio.create_task(sequences(follower, 1))
        # Let the follower join and the poller find the log empty and sleep.
        await asyncio.sleep(0.05)
        log_orders(log, 1)
        feed.recorded(log.entries[0])
        assert await first == [1]
        # 2 and 3 come from another process; this one records 4: the poller reads them all now.
        log_orders(log, 3)
        feed.recorded(log.entries[3])
        assert await sequences(follower, 3) == [2, 3, 4]
        # Told twice, or told late, of what was published: nothing is sent again.
        feed.recorded(log.entries[3])
        feed.recorded(log.entries[1])
        log_orders(log, 1)
        feed.recorded(log.entries[4])
        assert await sequences(follower, 1) == [5]
        await follower.aclose()
        await feed.close()

    asyncio.run(scenario())


def test_a_follower_past_the_most_is_refused_until_one_gives_its_place_back() -> None:
    log = FakeOrderStore()
    feed = DecisionFeed(log, log, max_followers=2)
    first, second = feed.take_place(), feed.take_place()
    with pytest.raises(TooManyFollowers, match="2 followers already follow the order log"):
        feed.take_place()
    first.give_back()
    first.give_back()  # given back once, however often it is called
    third = feed.take_place()
    with pytest.raises(TooManyFollowers):
        feed.take_place()
    for place in (second, third):
        place.give_back()
    feed.take_place()
