"""A damaged recorded entry met in a SQL batch fails only the retry whose key names it; the batch goes on."""

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.service.fakes import CountingIds, FixedProfile, SteppingClock
from trading_orders.adapters.storage.sql.postgres import PostgresOrderStore
from trading_orders.adapters.storage.sql.sqlite import SQLITE_FILE, SqliteOrderStore
from trading_orders.adapters.storage.sql.store import SqlOrderStore
from trading_orders.application.errors import DamagedLogEntry
from trading_orders.application.order_service import OrderService, PlacedOrder
from trading_orders.domain.model import Order, PositionScope, Side

PROFILE = {"U1": {"S1": ["ACC", "TCS", "INFY"]}}
# No JSON object of an entry: what a row holds after a bad hand repair.
DAMAGED = '{"sequence": 1}'

# Each store, opened on a fresh database, and a way to damage the row of sequence 1 from outside it.
Opened = tuple[SqlOrderStore, Callable[[], None]]


@pytest.fixture(params=["sqlite", "postgres"])
def opened(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opened]:
    """A store of each SQL database, and the damage of its first row."""
    if request.param == "sqlite":
        store: SqlOrderStore = SqliteOrderStore(tmp_path, PositionScope.STRATEGY)

        def damage() -> None:
            with sqlite3.connect(tmp_path / SQLITE_FILE) as other:
                other.execute("UPDATE orders SET entry = ? WHERE sequence = 1", (DAMAGED,))
            other.close()

    else:
        url = request.getfixturevalue("postgres_url")()
        store = PostgresOrderStore(url, PositionScope.STRATEGY, settle_seconds=2)

        def damage() -> None:
            with psycopg.connect(url, autocommit=True) as other:
                other.execute("UPDATE orders SET entry = %s WHERE sequence = 1", (DAMAGED,))

    store.recover()
    yield store, damage
    store.close()


def test_only_the_retry_of_the_damaged_entry_fails_and_the_rest_of_its_batch_is_recorded(opened: Opened) -> None:
    store, damage = opened
    service = OrderService(FixedProfile(PROFILE), store, SteppingClock(), CountingIds("o-"), PositionScope.STRATEGY)
    service.start()
    asyncio.run(service.place_order(Order("S1", "ACC", Side.BUY), "k1"))
    damage()

    async def together() -> tuple[PlacedOrder | BaseException, ...]:
        # One event loop: the three share a batch, which reads k1's row for the first of them.
        return await asyncio.gather(
            service.place_order(Order("S1", "TCS", Side.BUY), "k2"),
            service.place_order(Order("S1", "ACC", Side.BUY), "k1"),
            service.place_order(Order("S1", "INFY", Side.BUY), "k3"),
            return_exceptions=True,
        )

    first, retry, last = asyncio.run(together())
    assert isinstance(retry, DamagedLogEntry) and retry.sequence == 1, retry
    assert "order-log entry 1 cannot be read" in str(retry)
    assert isinstance(first, PlacedOrder) and not first.replayed, first
    assert isinstance(last, PlacedOrder) and not last.replayed, last
    recorded = {entry.idempotency_key: entry.sequence for entry in store.entries_after(1)}
    assert recorded == {"k2": first.entry.sequence, "k3": last.entry.sequence}
    # The damaged row is left as it was, for the operator: the next retry meets it again.
    with pytest.raises(DamagedLogEntry):
        asyncio.run(service.place_order(Order("S1", "ACC", Side.BUY), "k1"))
