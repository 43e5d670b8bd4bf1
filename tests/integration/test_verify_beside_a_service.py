"""`verify` and `export` beside a running service: a checkpoint between their reads is no damage."""

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.tinydb_over_memory import service_over
from tests.service.fakes import place
from trading_orders import cli
from trading_orders.adapters.storage.tinydb_store import resources, verification
from trading_orders.adapters.storage.tinydb_store.order_log import JsonLinesOrderLog
from trading_orders.adapters.storage.tinydb_store.position_snapshots import TinyDBPositionStore
from trading_orders.adapters.storage.tinydb_store.store import TinyDBOrderStore
from trading_orders.adapters.storage.tinydb_store.trade_log import JsonLinesTradeLog
from trading_orders.application.order_service import OrderService
from trading_orders.domain.model import Order, Side

PROFILE = {"U1": {"S": ["ACC", "INFY", "TCS", "WIPRO"]}}


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[OrderService, TinyDBOrderStore]]:
    """A service writing the files in tmp_path, two orders in and checkpointed, left running."""
    for name in ("TRADING_ORDERS_STORE", "TRADING_ORDERS_DATA_DIR", "TRADING_ORDERS_POSITION_SCOPE"):
        monkeypatch.delenv(name, raising=False)
    parts = TinyDBPositionStore(tmp_path), JsonLinesOrderLog(tmp_path), JsonLinesTradeLog(tmp_path)
    service, store = service_over(PROFILE, *parts)
    service.start()
    place(service, Order("S", "ACC", Side.BUY))
    place(service, Order("S", "INFY", Side.BUY))
    assert store.checkpoint()
    yield service, store
    store.close()
    for opened in parts:
        opened.close()


def checkpoint_between_the_reads(
    monkeypatch: pytest.MonkeyPatch, module: Any, service: OrderService, store: TinyDBOrderStore
) -> list[str]:
    """Make the service take orders and checkpoint right after the command's first read of the files.

    Whichever the command reads first, the log or the snapshot, the other is
    read after the service moved on: the race a live service makes by chance.
    Returns the names of the reads, in the order they happened.
    """
    reads: list[str] = []

    def after(read: str) -> None:
        reads.append(read)
        if len(reads) == 1:
            place(service, Order("S", "TCS", Side.BUY))
            place(service, Order("S", "ACC", Side.SELL))
            assert store.checkpoint()

    class WatchedLog(JsonLinesOrderLog):
        def __init__(self, directory: Path, *, read_only: bool = False) -> None:
            super().__init__(directory, read_only=read_only)
            after("log")

    class WatchedSnapshots(TinyDBPositionStore):
        def load(self) -> Any:
            loaded = super().load()
            after("snapshot")
            return loaded

    watched: dict[str, Callable[..., Any]] = {"JsonLinesOrderLog": WatchedLog, "TinyDBPositionStore": WatchedSnapshots}
    for name, replacement in watched.items():
        monkeypatch.setattr(module, name, replacement)
    return reads


def test_verify_beside_a_service_that_checkpoints_mid_read_finds_no_damage(
    tmp_path: Path,
    live: tuple[OrderService, TinyDBOrderStore],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reads = checkpoint_between_the_reads(monkeypatch, verification, *live)
    status = cli.main(["verify", "--data-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert len(reads) == 2, "the seam must see both reads"
    assert status == 0, out
    assert "truncated or replaced" not in out
    assert out.rstrip().endswith("OK: positions and order log agree")


def test_export_beside_a_service_that_checkpoints_mid_read_is_consistent(
    tmp_path: Path,
    live: tuple[OrderService, TinyDBOrderStore],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    service, store = live
    reads = checkpoint_between_the_reads(monkeypatch, resources, service, store)
    output = tmp_path / "export.jsonl"
    status = cli.main(["export", str(output), "--data-dir", str(tmp_path)])
    captured = capsys.readouterr()
    assert len(reads) == 2, "the seam must see both reads"
    assert status == 0, captured.err
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    orders = [row for row in rows if row["kind"] == "order"]
    positions = {(row["instrument"], row["order_id"]) for row in rows if row["kind"] == "position"}
    # Every order the log held when export read it, and the positions those
    # orders leave open: ACC bought and sold, INFY and TCS still held.
    assert [order["sequence"] for order in orders] == [1, 2, 3, 4]
    assert positions == {("INFY", "o2"), ("TCS", "o3")}
