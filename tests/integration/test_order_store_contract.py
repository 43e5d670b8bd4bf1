"""One contract for every order store (memory, TinyDB files, SQLite), written once, run against each."""

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.service.fakes import CountingIds, FixedProfile, SteppingClock
from tests.worked_example import EXPECTED, ORDERS, PROFILE
from trading_orders.adapters.storage.embedded_store import EmbeddedOrderStore
from trading_orders.adapters.storage.jsonl_order_log import JsonLinesOrderLog
from trading_orders.adapters.storage.jsonl_trade_log import JsonLinesTradeLog
from trading_orders.adapters.storage.memory import InMemoryOrderLog, InMemoryPositionStore, InMemoryTradeLog
from trading_orders.adapters.storage.postgres_store import PostgresOrderStore
from trading_orders.adapters.storage.sql_order_store import SqlTradeReader
from trading_orders.adapters.storage.sqlite_store import SqliteOrderStore
from trading_orders.adapters.storage.tinydb_position_store import TinyDBPositionStore
from trading_orders.application.order_history import HistoryFilter, OrderHistory
from trading_orders.application.order_service import OrderService
from trading_orders.application.ports import OrderStore
from trading_orders.domain.model import Order, OrderStatus, PositionScope, Side

STORES = ["memory", "tinydb", "sqlite", "postgres"]
DURABLE = ["tinydb", "sqlite", "postgres"]


class OpenedStore:
    """A store of one kind over ``directory``, with the readers the read side uses, and how to close it."""

    store: OrderStore
    history: OrderHistory

    def __init__(self, kind: str, directory: Path, scope: PositionScope, memory: list[object], url: str) -> None:
        self.closers: list[Callable[[], None]] = []
        if kind == "postgres":
            postgres = PostgresOrderStore(url, scope)
            self.store = postgres
            self.history = OrderHistory(postgres, SqlTradeReader(postgres))
            self.closers.append(postgres.close)
            return
        if kind == "sqlite":
            sqlite = SqliteOrderStore(directory, scope)
            self.store = sqlite
            self.history = OrderHistory(sqlite, SqlTradeReader(sqlite))
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
        embedded = EmbeddedOrderStore(positions, log, trades, scope)
        self.store = embedded
        self.history = OrderHistory(log, trades)
        self.closers.insert(0, embedded.close)

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
        entry = service.place_order(Order(strategy, instrument, Side(side))).entry
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
        service.place_order(Order("STRATEGY_A", instrument, side))
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


def test_an_idempotency_key_is_decided_once(open_store: OpenStore) -> None:
    service, store = open_store()
    first = service.place_order(Order("STRATEGY_B", "MINDA", Side.BUY), idempotency_key="k")
    again = service.place_order(Order("STRATEGY_B", "MINDA", Side.BUY), idempotency_key="k")
    assert again.replayed and again.entry == first.entry
    assert store.store.state().last_sequence == 1


def test_nothing_is_kept_when_a_transaction_fails_before_it_records(open_store: OpenStore) -> None:
    _, store = open_store()
    with pytest.raises(RuntimeError), store.store.transaction():
        raise RuntimeError("the decision failed")
    assert store.store.state().last_sequence == 0
    with store.store.transaction() as transaction:
        assert transaction.last_received_at() is None


@pytest.mark.parametrize("open_store", DURABLE, indirect=True)
def test_everything_survives_reopening(open_store: OpenStore) -> None:
    service, _ = open_store()
    service.place_order(Order("STRATEGY_B", "MINDA", Side.BUY), idempotency_key="k")
    before = service.open_positions()
    reopened, store = open_store()
    assert reopened.open_positions() == before
    assert reopened.place_order(Order("STRATEGY_B", "MINDA", Side.BUY), idempotency_key="k").replayed
    with store.store.transaction() as transaction:
        assert transaction.last_received_at() == datetime(2026, 11, 24, 9, 15, 1, tzinfo=UTC)


def test_fifty_concurrent_buys_for_one_key_open_one_position(open_store: OpenStore) -> None:
    service, store = open_store()
    barrier = threading.Barrier(50)
    statuses: list[OrderStatus] = []

    def buy() -> None:
        barrier.wait()
        statuses.append(service.place_order(Order("STRATEGY_B", "MINDA", Side.BUY)).entry.decision.status)

    threads = [threading.Thread(target=buy) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(OrderStatus.ACCEPTED) == 1
    assert len(service.open_positions()) == 1
    assert [e.sequence for e in store.history.orders(HistoryFilter(), limit=100).items] == list(range(50, 0, -1))
