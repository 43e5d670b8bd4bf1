"""Several writers of one SQL database at once, each as its own process would be, against a reader paging the log."""

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.service.fakes import CountingIds, FixedProfile, SteppingClock
from trading_orders.adapters.storage.sql.postgres import PostgresOrderStore
from trading_orders.adapters.storage.sql.sqlite import SqliteOrderStore
from trading_orders.adapters.storage.sql.store import SqlOrderStore
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
        store.close()


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
            assert isinstance(entry, OrderLogEntry), "these writers record orders only"
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


def _hold_open(store: SqlOrderStore, instrument: str) -> tuple[threading.Event, threading.Event, threading.Thread]:
    """A transaction of S1 on ``instrument`` held open on its own thread: set once held, ends on release."""
    held, release = threading.Event(), threading.Event()

    def hold_a_transaction_open() -> None:
        async def hold() -> None:
            async with store.transaction("S1", instrument, ["U1"]):
                held.set()
                await asyncio.to_thread(release.wait, 30)

        asyncio.run(hold())

    holder = threading.Thread(target=hold_a_transaction_open)
    holder.start()
    return held, release, holder


def test_postgres_orders_on_different_instruments_do_not_wait_for_each_other(postgres_url: Callable[[], str]) -> None:
    url = postgres_url()
    first, second = (PostgresOrderStore(url, PositionScope.STRATEGY) for _ in range(2))
    for store in (first, second):
        store.recover()
    held, release, holder = _hold_open(first, "I0")
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


def test_postgres_waiting_orders_read_together_and_one_locked_elsewhere_holds_none_of_them_back(
    postgres_url: Callable[[], str],
) -> None:
    url = postgres_url()
    other_process, store = (PostgresOrderStore(url, PositionScope.STRATEGY) for _ in range(2))
    for opened in (other_process, store):
        opened.recover()
    profile = FixedProfile({"U1": {"S1": INSTRUMENTS}, "U2": {"S1": INSTRUMENTS}})
    service = OrderService(profile, store, SteppingClock(), CountingIds("o-"), PositionScope.STRATEGY)
    service.start()
    held, release, holder = _hold_open(other_process, "I0")

    async def orders() -> None:
        # One loop, all at once: the first order's batch reads for the others
        # waiting behind it, and cannot lock I0 for the last one.
        queued = [
            Order("S1", "I1", Side.BUY),
            Order("S1", "I2", Side.BUY),
            Order("S1", "I1", Side.SELL),
            Order("S1", "I1", Side.BUY),
            Order("S1", "I2", Side.BUY),
            Order("S1", "I0", Side.BUY),
        ]
        placed = [asyncio.ensure_future(service.place_order(order)) for order in queued]
        ahead, locked_out = placed[:-1], placed[-1]
        await asyncio.wait(ahead, timeout=10)
        statuses = [[d.status.value for d in p.result().entry.decision.decisions] for p in ahead]
        # The position reads each order was served from agree with what the orders before it did.
        assert statuses == [["ACCEPTED"] * 2, ["ACCEPTED"] * 2, ["ACCEPTED"] * 2, ["ACCEPTED"] * 2, ["REJECTED"] * 2]
        assert not locked_out.done(), "I0 is locked by another process's open transaction"
        release.set()
        last = await asyncio.wait_for(locked_out, 10)
        assert [d.status.value for d in last.entry.decision.decisions] == ["ACCEPTED"] * 2

    try:
        assert held.wait(10)
        asyncio.run(orders())
        assert {(p.user, p.instrument) for p in store.positions()} == {
            (user, instrument) for user in ("U1", "U2") for instrument in ("I0", "I1", "I2")
        }
        assert [e.sequence for e in store.entries_after(0)] == list(range(1, 7))
    finally:
        release.set()
        holder.join()
        other_process.close()
        store.close()
