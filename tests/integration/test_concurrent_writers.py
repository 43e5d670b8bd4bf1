"""Several writers of one SQL database at once, each as its own process would be, against a reader paging the log."""

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.service.fakes import CountingIds, FixedProfile, SteppingClock
from trading_orders.adapters.storage.postgres_store import PostgresOrderStore
from trading_orders.adapters.storage.sql_order_store import SqlOrderStore
from trading_orders.adapters.storage.sqlite_store import SqliteOrderStore
from trading_orders.application.order_service import OrderService
from trading_orders.domain.model import Order, OrderLogEntry, PositionScope, Side

WRITERS = 4
ROUNDS = 15
INSTRUMENTS = [f"I{n}" for n in range(WRITERS * 2)]
PROFILE = {"U1": {"S1": INSTRUMENTS}, "U2": {"S1": INSTRUMENTS[::2], "S2": INSTRUMENTS}}

OpenSqlStore = Callable[[], SqlOrderStore]


@pytest.fixture(params=["sqlite", "postgres"])
def open_sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenSqlStore]:
    """Opens another store over one database, as another process would; all closed at the end."""
    url = request.getfixturevalue("postgres_url")() if request.param == "postgres" else ""
    opened: list[SqlOrderStore] = []

    def open_() -> SqlOrderStore:
        store: SqlOrderStore
        if request.param == "postgres":
            store = PostgresOrderStore(url, PositionScope.STRATEGY)
        else:
            store = SqliteOrderStore(tmp_path, PositionScope.STRATEGY)
        store.recover()
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()  # type: ignore[attr-defined]  # both kinds have close()


def _write(store: SqlOrderStore, name: str, instruments: list[str], answered: list[OrderLogEntry]) -> None:
    """A BUY then a SELL of each instrument per round, the instruments' orders at once (so they share batches)."""
    # Each writer's clock starts at the same moment: their times interleave, as real clocks' would.
    service = OrderService(FixedProfile(PROFILE), store, SteppingClock(), CountingIds(name), PositionScope.STRATEGY)
    service.start()

    async def rounds() -> None:
        for _ in range(ROUNDS):
            for side in (Side.BUY, Side.SELL):
                for strategy in ("S1", "S2"):
                    placed = await asyncio.gather(
                        *(service.place_order(Order(strategy, instrument, side)) for instrument in instruments)
                    )
                    answered.extend(p.entry for p in placed)

    asyncio.run(rounds())


def test_writers_on_different_instruments_never_skip_or_repeat_an_order_for_a_reader(
    open_sql_store: OpenSqlStore,
) -> None:
    writers = [open_sql_store() for _ in range(WRITERS)]
    reader = open_sql_store()
    answered: list[OrderLogEntry] = []
    threads = [
        threading.Thread(target=_write, args=(store, f"w{n}-", INSTRUMENTS[n::WRITERS], answered))
        for n, store in enumerate(writers)
    ]
    for thread in threads:
        thread.start()
    seen: list[OrderLogEntry] = []
    # Page after the last sequence seen, as a consumer following the log does, while the writers write.
    while True:
        writing = any(thread.is_alive() for thread in threads)
        for entry in reader.entries_after(seen[-1].sequence if seen else 0):
            assert entry.sequence == len(seen) + 1, f"after #{len(seen)} the reader was handed #{entry.sequence}"
            seen.append(entry)
        if not writing:
            break
    for thread in threads:
        thread.join()
    total = WRITERS * ROUNDS * 2 * 2 * len(INSTRUMENTS) // WRITERS
    assert len(answered) == total
    assert [e.sequence for e in seen] == list(range(1, total + 1))
    # Every answer is the log's entry at its sequence: nothing answered was lost or numbered twice.
    assert sorted(answered, key=lambda e: e.sequence) == seen
    times = [e.decision.received_at for e in seen]
    assert times == sorted(times), "received times only grow along the log"
    # Every BUY was closed by its SELL: positions and trades agree with the log.
    assert reader.positions() == []
    trades = list(reader.trades_newest_first())
    accepted_sells = sum(len(e.decision.accepted_users) for e in seen if e.decision.order.side is Side.SELL)
    assert len(trades) == accepted_sells > 0
    assert all(trade.bought_at <= trade.sold_at for _, trade in trades)


def test_postgres_orders_on_different_instruments_do_not_wait_for_each_other(postgres_url: Callable[[], str]) -> None:
    url = postgres_url()
    first, second = (PostgresOrderStore(url, PositionScope.STRATEGY) for _ in range(2))
    for store in (first, second):
        store.recover()
    held = threading.Event()
    release = threading.Event()

    def hold_a_transaction_open() -> None:
        async def hold() -> None:
            async with first.transaction("S1", "I0", ["U1"]):
                held.set()
                await asyncio.to_thread(release.wait, 30)

        asyncio.run(hold())

    holder = threading.Thread(target=hold_a_transaction_open)
    holder.start()
    same_instrument_entered = threading.Event()

    def enter(instrument: str) -> None:
        async def enter_and_leave() -> None:
            async with second.transaction("S1", instrument, ["U1"]):
                pass

        asyncio.run(asyncio.wait_for(enter_and_leave(), timeout=30))

    def enter_same_instrument() -> None:
        enter("I0")
        same_instrument_entered.set()

    waiter = threading.Thread(target=enter_same_instrument)
    try:
        assert held.wait(10)
        # Another instrument goes ahead while I0's transaction is open...
        enter("I1")
        # ...while I0 itself waits for it, and goes ahead once it ends.
        waiter.start()
        assert not same_instrument_entered.wait(1)
        release.set()
        assert same_instrument_entered.wait(10)
    finally:
        release.set()
        holder.join()
        if waiter.is_alive() or waiter.ident is not None:
            waiter.join()
        first.close()
        second.close()
