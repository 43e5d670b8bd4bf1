"""One contract for every order store (memory, TinyDB files, SQLite), written once, run against each."""

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.service.fakes import CountingIds, FixedProfile, SteppingClock, place
from tests.worked_example import EXPECTED, HOLLAND, ORDERS, PROFILE
from trading_orders.adapters.storage.sql.postgres import PostgresOrderStore
from trading_orders.adapters.storage.sql.sqlite import SqliteOrderStore
from trading_orders.adapters.storage.sql.store import SqlTradeReader
from trading_orders.adapters.storage.tinydb_store.memory import (
    InMemoryOrderLog,
    InMemoryPositionStore,
    InMemoryTradeLog,
)
from trading_orders.adapters.storage.tinydb_store.order_log import JsonLinesOrderLog
from trading_orders.adapters.storage.tinydb_store.position_snapshots import TinyDBPositionStore
from trading_orders.adapters.storage.tinydb_store.store import TinyDBOrderStore
from trading_orders.adapters.storage.tinydb_store.trade_log import JsonLinesTradeLog
from trading_orders.application.errors import InvalidCursor
from trading_orders.application.order_history import HistoryFilter, OrderHistory
from trading_orders.application.order_service import OrderService, PlacedOrder
from trading_orders.application.ports import OrderLogReader, OrderStore, TradeLogReader
from trading_orders.domain.model import Order, OrderStatus, PositionScope, Side

STORES = ["memory", "tinydb", "sqlite", "postgres"]
DURABLE = ["tinydb", "sqlite", "postgres"]


class OpenedStore:
    """A store of one kind over ``directory``, with the readers the read side uses, and how to close it."""

    store: OrderStore
    history: OrderHistory
    order_log: OrderLogReader
    trade_log: TradeLogReader

    def __init__(self, kind: str, directory: Path, scope: PositionScope, memory: list[object], url: str) -> None:
        self.closers: list[Callable[[], None]] = []
        if kind == "postgres":
            postgres = PostgresOrderStore(url, scope)
            self.store = self.order_log = postgres
            self.trade_log = SqlTradeReader(postgres)
            self.history = OrderHistory(self.order_log, self.trade_log)
            self.closers.append(postgres.close)
            return
        if kind == "sqlite":
            sqlite = SqliteOrderStore(directory, scope)
            self.store = self.order_log = sqlite
            self.trade_log = SqlTradeReader(sqlite)
            self.history = OrderHistory(self.order_log, self.trade_log)
            self.closers.append(sqlite.close)
            return
        if kind == "tinydb":
            positions, log, trades = (
                TinyDBPositionStore(directory),
                JsonLinesOrderLog(directory),
                JsonLinesTradeLog(directory),
            )
            self.closers += [positions.close, log.close, trades.close]
        else:
            # Memory survives "reopening" only within the test, through the shared list.
            if not memory:
                memory += [InMemoryPositionStore(), InMemoryOrderLog(), InMemoryTradeLog()]
            positions, log, trades = memory  # type: ignore[assignment]
        tinydb = TinyDBOrderStore(positions, log, trades, scope)
        self.store = tinydb
        self.order_log, self.trade_log = log, trades
        self.history = OrderHistory(log, trades)
        self.closers.insert(0, tinydb.close)

    def close(self) -> None:
        for close in self.closers:
            close()


OpenStore = Callable[..., tuple[OrderService, OpenedStore]]


@pytest.fixture(params=STORES)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens a started service over a store of the parametrized kind; opening again reopens the same data."""
    memory: list[object] = []
    opened: list[OpenedStore] = []
    # One database per test, shared by every reopening within it.
    url = request.getfixturevalue("postgres_url")() if request.param == "postgres" else ""

    def open_(
        scope: PositionScope = PositionScope.STRATEGY, profile: dict[str, dict[str, list[str]]] = PROFILE
    ) -> tuple[OrderService, OpenedStore]:
        for previous in opened:
            previous.close()
        store = OpenedStore(request.param, tmp_path, scope, memory, url)
        opened.append(store)
        service = OrderService(FixedProfile(profile), store.store, SteppingClock(), CountingIds(), scope)
        service.start()
        return service, store

    yield open_
    for store in opened:
        store.close()


@pytest.mark.parametrize("scope", list(PositionScope))
def test_the_worked_example(open_store: OpenStore, scope: PositionScope) -> None:
    service, _ = open_store(scope)
    answers = []
    for strategy, instrument, side in ORDERS:
        entry = place(service, Order(strategy, instrument, Side(side))).entry
        answers.append(
            (
                entry.decision.status.value,
                {d.user: d.reason.value if d.reason else None for d in entry.decision.decisions},
            )
        )
    assert answers == EXPECTED[scope]


def test_positions_trades_and_the_log_agree(open_store: OpenStore) -> None:
    service, store = open_store()
    for instrument, side in [("GRASIM", Side.BUY), ("EICHER", Side.BUY), ("GRASIM", Side.SELL)]:
        place(service, Order("STRATEGY_A", instrument, side))
    assert [(p.instrument, p.order_id) for p in service.open_positions()] == [("EICHER", "o2")]
    assert service.open_positions(instrument="GRASIM") == []
    (trade,) = store.history.trades(HistoryFilter(), limit=10).items
    assert (trade.instrument, trade.buy_order_id, trade.sell_order_id) == ("GRASIM", "o1", "o3")
    page = store.history.orders(HistoryFilter(), limit=2)
    rest = store.history.orders(HistoryFilter(), limit=10, cursor=page.next_cursor)
    assert [e.sequence for e in page.items + rest.items] == [3, 2, 1]
    assert store.history.order("o2") is not None and store.history.order("nope") is None
    state = store.store.state()
    assert (state.last_sequence, state.open_positions, state.reachable) == (3, 1, True)


# Each store's own cursors refuse what only looks like one: Unicode digits
# ("²" crashed int() after isdigit() said yes), signs, spaces, underscores,
# "0x", and numbers too long for any log. The HTTP layer refuses these first;
# the stores refuse them too, whoever calls them.
NOT_CURSORS = ["²", "0.²", "\u0661", "\U0001d7d8", "\u0663.\u0661"]
NOT_CURSORS += ["-1", "+1", " 1", "1 ", "1_0", "0x1", "-0.1", "1.", ".1", "9" * 19, ""]
# Well formed but beyond the log: no page, rather than the newest one again.
NOT_CURSORS += ["999", "12345"]


@pytest.mark.parametrize("cursor", NOT_CURSORS)
def test_a_cursor_the_store_did_not_hand_out_is_refused(open_store: OpenStore, cursor: str) -> None:
    service, store = open_store()
    for instrument, side in [("GRASIM", Side.BUY), ("GRASIM", Side.SELL)]:
        place(service, Order("STRATEGY_A", instrument, side))
    with pytest.raises(InvalidCursor):
        store.history.orders(HistoryFilter(), limit=10, cursor=cursor)
    with pytest.raises(InvalidCursor):
        store.history.trades(HistoryFilter(), limit=10, cursor=cursor)


def test_a_cursor_is_taken_exactly_when_the_store_handed_it_out(open_store: OpenStore) -> None:
    service, store = open_store()
    for instrument, side in [("GRASIM", Side.BUY), ("EICHER", Side.BUY), ("GRASIM", Side.SELL), ("EICHER", Side.SELL)]:
        place(service, Order("STRATEGY_A", instrument, side))
    readers = {"orders": store.history.orders, "trades": store.history.trades}
    # What a page can hand out: the cursor of any entry (the last one read, when a page is full or scan-limited).
    handed_out = {
        "orders": [cursor for cursor, _ in store.order_log.newest_first()],
        "trades": [cursor for cursor, _ in store.trade_log.newest_first()],
    }
    # Every shape any store writes, near what was handed out: each number up to
    # past the end of a small log (decimal, hexadecimal, with a leading zero),
    # and each "<offset>.<index>" with indexes past the trades in its line.
    numbers = [str(n) for n in range(2048)] + [f"{n:x}" for n in range(2048)] + [f"0{n}" for n in range(10)]
    offsets = {cursor.partition(".")[0] for cursors in handed_out.values() for cursor in cursors} | {"0", "1"}
    pairs = [f"{offset}.{index}" for offset in offsets for index in (*range(4), 999999999)]
    pairs += [f"0{offset}.0" for offset in offsets] + [f"{offset}.00" for offset in offsets]
    candidates = set(numbers + pairs)
    for kind, read in readers.items():
        taken = set()
        for cursor in candidates:
            try:
                read(HistoryFilter(), limit=1, cursor=cursor)
            except InvalidCursor:
                continue
            taken.add(cursor)
        assert taken == set(handed_out[kind]) & candidates, kind
        assert set(handed_out[kind]) <= candidates, kind


def test_an_idempotency_key_is_decided_once(open_store: OpenStore) -> None:
    service, store = open_store()
    first = place(service, Order("STRATEGY_B", "MINDA", Side.BUY), idempotency_key="k")
    again = place(service, Order("STRATEGY_B", "MINDA", Side.BUY), idempotency_key="k")
    assert again.replayed and again.entry == first.entry
    assert store.store.state().last_sequence == 1


def newest_received_at(store: OrderStore) -> datetime | None:
    async def read() -> datetime | None:
        async with store.transaction("STRATEGY_B", "MINDA", [HOLLAND]) as transaction:
            return transaction.last_received_at

    return asyncio.run(read())


def test_nothing_is_kept_when_a_transaction_fails_before_it_commits(open_store: OpenStore) -> None:
    service, store = open_store()

    async def fail_after_deciding() -> None:
        async with store.store.transaction("STRATEGY_B", "MINDA", [HOLLAND]) as transaction:
            buy = Order("STRATEGY_B", "MINDA", Side.BUY)
            moment = datetime(2026, 11, 24, 9, 15, tzinfo=UTC)
            transaction.portfolio.apply(transaction.portfolio.decide(buy, service.profile(), "x1", moment))
            raise RuntimeError("the decision failed")

    with pytest.raises(RuntimeError):
        asyncio.run(fail_after_deciding())
    assert store.store.state().last_sequence == 0
    assert service.open_positions() == []
    assert newest_received_at(store.store) is None
    assert place(service, Order("STRATEGY_B", "MINDA", Side.BUY)).entry.decision.status is OrderStatus.ACCEPTED


@pytest.mark.parametrize("open_store", DURABLE, indirect=True)
def test_everything_survives_reopening(open_store: OpenStore) -> None:
    service, _ = open_store()
    place(service, Order("STRATEGY_B", "MINDA", Side.BUY), idempotency_key="k")
    before = service.open_positions()
    reopened, store = open_store()
    assert reopened.open_positions() == before
    assert place(reopened, Order("STRATEGY_B", "MINDA", Side.BUY), idempotency_key="k").replayed
    assert newest_received_at(store.store) == datetime(2026, 11, 24, 9, 15, 1, tzinfo=UTC)


@pytest.mark.parametrize("from_threads", [True, False], ids=["threads", "one-event-loop"])
def test_fifty_concurrent_buys_for_one_key_open_one_position(open_store: OpenStore, from_threads: bool) -> None:
    service, store = open_store()
    buy = Order("STRATEGY_B", "MINDA", Side.BUY)
    statuses: list[OrderStatus] = []
    if from_threads:
        barrier = threading.Barrier(50)

        def place_one() -> None:
            barrier.wait()
            statuses.append(place(service, buy).entry.decision.status)

        threads = [threading.Thread(target=place_one) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:

        async def place_all() -> list[PlacedOrder]:
            return await asyncio.gather(*(service.place_order(buy) for _ in range(50)))

        statuses = [placed.entry.decision.status for placed in asyncio.run(place_all())]
    assert statuses.count(OrderStatus.ACCEPTED) == 1
    assert len(service.open_positions()) == 1
    assert [e.sequence for e in store.history.orders(HistoryFilter(), limit=100).items] == list(range(50, 0, -1))


@pytest.mark.parametrize("pause", [0, 1, 2, 3])
def test_an_order_cancelled_midway_never_blocks_the_next(open_store: OpenStore, pause: int) -> None:
    service, store = open_store()

    async def cancel_one_then_place() -> PlacedOrder:
        cancelled = asyncio.create_task(service.place_order(Order("STRATEGY_B", "MINDA", Side.BUY)))
        for _ in range(pause):  # cancel it at a different step of its transaction each time
            await asyncio.sleep(0)
        cancelled.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cancelled
        return await asyncio.wait_for(service.place_order(Order("STRATEGY_A", "GRASIM", Side.BUY)), timeout=10)

    placed = asyncio.run(cancel_one_then_place())
    assert placed.entry.decision.status is OrderStatus.ACCEPTED
    # The cancelled BUY was recorded whole or not at all.
    assert store.store.state().last_sequence == placed.entry.sequence
    assert len(service.open_positions()) == placed.entry.sequence
