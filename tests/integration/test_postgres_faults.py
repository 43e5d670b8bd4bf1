"""PostgreSQL faults at the one moment that matters: a connection lost around COMMIT, settled before answering."""

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from tests.service.fakes import CountingIds, FixedProfile, SteppingClock
from trading_orders.adapters.storage.sql.postgres import SEQUENCE_LOCK, PostgresOrderStore
from trading_orders.application.errors import DamagedLogEntry, OrderInDoubt, StorageUnavailable, StoreBusy
from trading_orders.application.order_service import OrderService, PlacedOrder
from trading_orders.domain.model import Order, PositionScope, Side

PROFILE = {"U1": {"S1": ["ACC", "TCS"]}, "U2": {"S1": ["ACC"]}}
real_commit = psycopg.Connection.commit

Fault = Callable[[psycopg.Connection[Any]], None]


@pytest.fixture
def store(postgres_url: Callable[[], str]) -> Iterator[PostgresOrderStore]:
    """A store on a new database, its pool closed at the end."""
    opened = PostgresOrderStore(postgres_url(), PositionScope.STRATEGY, settle_seconds=2)
    opened.recover()
    yield opened
    opened.close()


def _service(store: PostgresOrderStore) -> OrderService:
    service = OrderService(FixedProfile(PROFILE), store, SteppingClock(), CountingIds("o-"), PositionScope.STRATEGY)
    service.start()
    return service


def _fail_next_commit(monkeypatch: pytest.MonkeyPatch, fault: Fault) -> None:
    """The next COMMIT of any connection runs ``fault`` instead; later ones are real."""

    def commit(connection: psycopg.Connection[Any]) -> None:
        monkeypatch.setattr(psycopg.Connection, "commit", real_commit)
        fault(connection)

    monkeypatch.setattr(psycopg.Connection, "commit", commit)


def _committed_then_cut(connection: psycopg.Connection[Any]) -> None:
    # The server commits, and its answer never arrives: the client sees only a dead connection.
    real_commit(connection)
    connection.close()
    raise psycopg.OperationalError("server closed the connection unexpectedly")


def _cut_before_commit(connection: psycopg.Connection[Any]) -> None:
    # The server ends the backend before the COMMIT reaches it: the transaction dies uncommitted.
    with psycopg.connect(connection.info.dsn, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (connection.info.backend_pid,))
    real_commit(connection)


def _place(service: OrderService, order: Order, key: str) -> PlacedOrder:
    return asyncio.run(service.place_order(order, key))


def test_a_commit_whose_answer_is_lost_is_found_recorded_and_answered_as_such(
    store: PostgresOrderStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _service(store)
    _fail_next_commit(monkeypatch, _committed_then_cut)
    placed = _place(service, Order("S1", "ACC", Side.BUY), "k-1")
    assert placed.entry.decision.accepted_users == ("U1", "U2")
    assert [e.sequence for e in store.entries_after(0)] == [placed.entry.sequence]
    # The retry the client would have made finds it; nothing is decided twice.
    again = _place(service, Order("S1", "ACC", Side.BUY), "k-1")
    assert again.replayed and again.entry == placed.entry
    assert len(list(store.entries_after(0))) == 1
    assert {p.user for p in store.positions()} == {"U1", "U2"}


def test_a_connection_cut_before_commit_answers_not_recorded_and_the_next_order_goes_through(
    store: PostgresOrderStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _service(store)
    _fail_next_commit(monkeypatch, _cut_before_commit)
    with pytest.raises(StorageUnavailable, match="has not recorded it") as refused:
        _place(service, Order("S1", "ACC", Side.BUY), "k-1")
    assert not isinstance(refused.value, OrderInDoubt)
    assert list(store.entries_after(0)) == [] and store.positions() == []
    # A broken connection is not handed out again: the retry is decided afresh and recorded.
    placed = _place(service, Order("S1", "ACC", Side.BUY), "k-1")
    assert not placed.replayed and placed.entry.decision.accepted_users == ("U1", "U2")
    assert [e.sequence for e in store.entries_after(0)] == [1]


def test_a_lost_commit_that_cannot_be_asked_about_is_in_doubt_not_refused(
    store: PostgresOrderStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _service(store)

    def committed_then_unreachable(connection: psycopg.Connection[Any]) -> None:
        def unreachable(*args: object) -> None:
            raise StorageUnavailable("cannot reach the database")

        monkeypatch.setattr(PostgresOrderStore, "_connection", unreachable)
        _committed_then_cut(connection)

    _fail_next_commit(monkeypatch, committed_then_unreachable)
    with pytest.raises(OrderInDoubt, match="could not be asked"):
        _place(service, Order("S1", "ACC", Side.BUY), "k-1")
    monkeypatch.undo()
    # It was recorded: the retry with its key says so instead of placing it again.
    again = _place(service, Order("S1", "ACC", Side.BUY), "k-1")
    assert again.replayed and len(list(store.entries_after(0))) == 1


def test_a_lost_commit_whose_sequence_lock_another_session_holds_is_in_doubt_within_the_settle_bound(
    store: PostgresOrderStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _service(store)
    holders: list[psycopg.Connection[Any]] = []

    def committed_then_the_sequence_lock_held_elsewhere(connection: psycopg.Connection[Any]) -> None:
        # A peer takes the sequence lock right after this COMMIT and never lets go (vanished
        # without a reset): settling must give up on it within settle_seconds, not wait.
        holder = psycopg.connect(connection.info.dsn)
        holders.append(holder)
        real_commit(connection)
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (SEQUENCE_LOCK,))
        connection.close()
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    _fail_next_commit(monkeypatch, committed_then_the_sequence_lock_held_elsewhere)
    with ThreadPoolExecutor(1) as placing:
        settling = placing.submit(_place, service, Order("S1", "ACC", Side.BUY), "k-1")
        try:
            # settle_seconds is 2: far less than this, unless the wait has no bound.
            error = settling.exception(timeout=2 + 15)
        finally:
            for holder in holders:
                holder.close()
    assert isinstance(error, OrderInDoubt) and "could not be asked" in str(error), error
    # It was recorded: the retry with its key says so.
    again = _place(service, Order("S1", "ACC", Side.BUY), "k-1")
    assert again.replayed and len(list(store.entries_after(0))) == 1


def test_reads_that_meet_a_lost_connection_or_a_damaged_row_raise_the_application_errors(
    postgres_url: Callable[[], str],
) -> None:
    url = postgres_url()
    store = PostgresOrderStore(url, PositionScope.STRATEGY, settle_seconds=2)
    store.recover()
    try:
        placed = _place(_service(store), Order("S1", "ACC", Side.BUY), "k1")
        with psycopg.connect(url, autocommit=True) as other:
            # Every connection of the store's pool dies, as when the server restarts.
            other.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            with pytest.raises(StorageUnavailable):
                list(store.newest_first())
            other.execute("UPDATE orders SET entry = %s WHERE sequence = 1", ('{"sequence": 1}',))
        reads: list[Callable[[], object]] = [
            lambda: list(store.newest_first()),
            lambda: list(store.entries_after(0)),
            lambda: store.find_by_order_id(placed.entry.decision.order_id),
        ]
        for read in reads:
            with pytest.raises(DamagedLogEntry, match="order-log entry 1 cannot be read") as raised:
                read()
            assert raised.value.sequence == 1
    finally:
        store.close()


def test_an_order_that_finds_every_connection_in_use_until_its_bound_is_refused_busy(
    postgres_url: Callable[[], str],
) -> None:
    # Two connections, both held by open batches: a third batch's wait runs out on the pool, not the server.
    crowded = PostgresOrderStore(postgres_url(), PositionScope.STRATEGY, pool_size=2, lock_wait_seconds=0.3)
    crowded.recover()
    try:
        held = [crowded.open_batch(time.monotonic() + 5)[0] for _ in range(2)]
        with pytest.raises(StoreBusy, match="held every connection") as refused:
            crowded.open_batch(time.monotonic() + 0.2)
        assert refused.value.waited_seconds == pytest.approx(0.3)
        held[0].roll_back()
        # The connection given back is the next batch's.
        again, _, _ = crowded.open_batch(time.monotonic() + 2)
        again.roll_back()
        held[1].roll_back()
    finally:
        crowded.close()
