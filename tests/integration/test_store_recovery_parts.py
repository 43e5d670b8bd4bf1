"""The parts the TinyDB store heals with: its pauses between tries, and the trades queue shared by threads."""

from datetime import UTC, datetime

import pytest

from trading_orders.adapters.storage.tinydb_store.backoff import Backoff
from trading_orders.adapters.storage.tinydb_store.memory import InMemoryTradeLog
from trading_orders.adapters.storage.tinydb_store.trade_queue import TradeQueue
from trading_orders.domain.model import Trade

T0 = datetime(2026, 1, 5, 9, 15, tzinfo=UTC)


def test_pauses_start_short_double_after_each_failure_and_stop_growing_at_the_longest() -> None:
    backoff = Backoff(first=0.1, longest=2.0)
    assert [backoff.pause(n) for n in range(1, 8)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    assert backoff.pause(10**6) == 2.0, "however long the outage"


@pytest.mark.parametrize(("first", "longest"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_pauses_that_would_spin_or_shrink_are_refused(first: float, longest: float) -> None:
    with pytest.raises(ValueError, match="first"):
        Backoff(first, longest)


def trade(sell: str) -> tuple[Trade, ...]:
    return (Trade("U1", "S1", "ACC", "buy", T0, sell, T0),)


def test_trades_dropped_by_a_rebuild_during_their_write_never_take_a_later_sells_trades_with_them() -> None:
    queue = TradeQueue()
    queue.add(1, trade("sell-1"))
    queue.add(2, trade("sell-2"))
    trade_log = InMemoryTradeLog()
    real_write = trade_log.write

    def write_while_a_rebuild_drops(trades: tuple[Trade, ...], sequence: int) -> None:
        real_write(trades, sequence)
        # Another thread's rebuild finds #1 in the trade log and drops it from the queue.
        queue.drop_through(trade_log.last_sequence())

    trade_log.write = write_while_a_rebuild_drops  # type: ignore[method-assign]
    queue.write_through(trade_log, durable_sequence=1)
    assert [sequence for sequence, _ in trade_log.trades] == [1]
    assert queue.waiting_through(2), "SELL #2's trades are still queued, to be written once #2 is durable"
    queue.write_through(trade_log, durable_sequence=2)
    assert [sequence for sequence, _ in trade_log.trades] == [1, 2]
    assert not queue.waiting_through(2)
