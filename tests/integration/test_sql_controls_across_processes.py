"""Operator controls across several stores over one SQL database, each as its own worker process would be."""

import asyncio
import threading
from datetime import UTC, datetime

from tests.integration import test_concurrent_writers as writers
from tests.integration.test_concurrent_writers import OpenSqlStore
from tests.service.fakes import CountingIds, FixedProfile, SteppingClock, place
from trading_orders.adapters.storage.sql.store import SqlOrderStore
from trading_orders.application.operator_controls import OperatorControls
from trading_orders.application.order_service import OrderService
from trading_orders.application.ports import Clock
from trading_orders.domain.controls import DESK, ControlLogEntry, ControlScope, RateLimit, TradingState
from trading_orders.domain.model import Order, OrderLogEntry, OrderStatus, PositionScope, RejectReason, Side

# Another store over the same database, as another worker process would open it.
open_sql_store = writers.open_sql_store

INSTRUMENTS = [f"I{n}" for n in range(24)]
PROFILE = {"Ann": {"ALPHA": INSTRUMENTS}, "Bob": {"ALPHA": INSTRUMENTS}}


class FixedClock:
    """A clock that always reads one moment: a rate limit's bucket never refills."""

    def now(self) -> datetime:
        """The same moment, every time."""
        return datetime(2026, 12, 7, 9, 15, tzinfo=UTC)


def service_on(store: SqlOrderStore, name: str, clock: Clock | None = None) -> OrderService:
    """A started order service over ``store``, its order ids after ``name``."""
    service = OrderService(
        FixedProfile(PROFILE), store, clock or SteppingClock(), CountingIds(name), PositionScope.STRATEGY
    )
    service.start()
    return service


def operator(store: SqlOrderStore) -> OperatorControls:
    """The operator controls over ``store``."""
    return OperatorControls(store, SteppingClock(), CountingIds("c-"), FixedProfile(PROFILE).load)


def test_a_halt_through_one_store_governs_the_next_order_through_the_other(open_sql_store: OpenSqlStore) -> None:
    first, second = open_sql_store(), open_sql_store()
    controls, orders = operator(first), service_on(second, "b-")
    # The second store has read the controls (none) for an order before the halt.
    assert place(orders, Order("ALPHA", "I1", Side.BUY)).entry.decision.status is OrderStatus.ACCEPTED
    asyncio.run(controls.set_state(DESK, TradingState.HALTED, "stop everything", "cli"))
    halted = place(orders, Order("ALPHA", "I2", Side.BUY)).entry
    assert halted.decision.reason is RejectReason.TRADING_HALTED
    assert second.controls() == first.controls()
    asyncio.run(controls.set_state(DESK, TradingState.ACTIVE, "resumed", "cli"))
    assert place(orders, Order("ALPHA", "I2", Side.BUY)).entry.decision.status is OrderStatus.ACCEPTED


def test_a_control_change_waits_for_another_stores_open_order_and_is_sequenced_after_it(
    open_sql_store: OpenSqlStore,
) -> None:
    first, second = open_sql_store(), open_sql_store()
    controls = operator(first)
    held, release = threading.Event(), threading.Event()
    answered: list[OrderLogEntry] = []

    class PausingClock(SteppingClock):
        # The order's transaction is open (its batch holds its locks) when the service reads the clock.
        def now(self) -> datetime:
            held.set()
            release.wait(30)
            return super().now()

    service = service_on(second, "b-", PausingClock())

    def order() -> None:
        answered.append(place(service, Order("ALPHA", "I1", Side.BUY)).entry)

    changes: list[ControlLogEntry] = []

    def halt() -> None:
        changes.append(asyncio.run(controls.set_state(DESK, TradingState.HALTED, "stop", "cli")).entry)

    ordering, halting = threading.Thread(target=order), threading.Thread(target=halt)
    ordering.start()
    try:
        assert held.wait(10)
        halting.start()
        # The halt waits for the order in flight on the other store...
        halting.join(1)
        assert halting.is_alive()
        release.set()
        ordering.join(10)
        halting.join(10)
    finally:
        release.set()
        ordering.join()
        if halting.ident is not None:
            halting.join()
    # ...which was decided before it, and is sequenced before it.
    (entry,), (change,) = answered, changes
    assert entry.decision.status is OrderStatus.ACCEPTED
    assert (entry.sequence, change.sequence) == (1, 2)


def test_concurrent_buys_on_many_instruments_through_two_stores_never_pass_a_position_limit(
    open_sql_store: OpenSqlStore,
) -> None:
    limit = 3
    stores = [open_sql_store(), open_sql_store()]
    asyncio.run(operator(stores[0]).set_position_limit(ControlScope(user="Ann"), limit, "small account", "cli"))
    answered: list[OrderLogEntry] = []
    arrived = [threading.Event(), threading.Event()]

    class MeetingClock(SteppingClock):
        # The first order of each store reads the clock inside its batch, having
        # counted Ann's positions, and waits (a second at most) for the other
        # store's to do the same: without a lock on Ann, both batches would
        # count none open and admit a limit each.
        def __init__(self, here: threading.Event, there: threading.Event) -> None:
            super().__init__()
            self._here, self._there = here, there

        def now(self) -> datetime:
            if not self._here.is_set():
                self._here.set()
                self._there.wait(1)
            return super().now()

    def buy_all(store: SqlOrderStore, name: str, instruments: list[str]) -> None:
        n = int(name[1])
        service = service_on(store, name, MeetingClock(arrived[n], arrived[1 - n]))

        async def at_once() -> None:
            placed = await asyncio.gather(
                *(service.place_order(Order("ALPHA", instrument, Side.BUY)) for instrument in instruments)
            )
            answered.extend(p.entry for p in placed)

        asyncio.run(at_once())

    threads = [
        threading.Thread(target=buy_all, args=(store, f"w{n}-", INSTRUMENTS[n::2])) for n, store in enumerate(stores)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ann = [d for e in answered for d in e.decision.decisions if d.user == "Ann"]
    assert len(ann) == len(INSTRUMENTS)
    assert sum(d.status is OrderStatus.ACCEPTED for d in ann) == limit
    assert {d.reason for d in ann if d.status is OrderStatus.REJECTED} == {RejectReason.POSITION_LIMIT}
    assert len(stores[1].positions(user="Ann")) == limit
    # Bob has no limit: every one of his BUYs opened.
    assert len(stores[1].positions(user="Bob")) == len(INSTRUMENTS)


def test_a_rate_limit_is_one_bucket_for_every_store(open_sql_store: OpenSqlStore) -> None:
    burst = 5
    stores = [open_sql_store(), open_sql_store()]
    asyncio.run(operator(stores[0]).set_rate_limit("ALPHA", RateLimit(1.0, burst), "slow down", "cli"))
    answered: list[OrderLogEntry] = []

    def send(store: SqlOrderStore, name: str, instruments: list[str]) -> None:
        # Every order at one moment: the bucket never refills, so exactly a burst is admitted.
        service = service_on(store, name, FixedClock())

        async def at_once() -> None:
            placed = await asyncio.gather(
                *(service.place_order(Order("ALPHA", instrument, Side.BUY)) for instrument in instruments)
            )
            answered.extend(p.entry for p in placed)

        asyncio.run(at_once())

    threads = [
        threading.Thread(target=send, args=(store, f"w{n}-", INSTRUMENTS[n : 2 * burst : 2]))
        for n, store in enumerate(stores)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answered) == 2 * burst
    refused = [e for e in answered if e.decision.reason is RejectReason.RATE_LIMITED]
    assert len(refused) == burst
    assert all(e.decision.decisions == () for e in refused)
