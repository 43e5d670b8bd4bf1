"""Start-up recovery over the real files: the order log's tail is replayed into positions and trades."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.tinydb_over_memory import service_over
from tests.service.fakes import place
from trading_orders.adapters.storage.tinydb_store.order_log import JsonLinesOrderLog
from trading_orders.adapters.storage.tinydb_store.position_snapshots import POSITIONS_FILE, TinyDBPositionStore
from trading_orders.adapters.storage.tinydb_store.store import TinyDBOrderStore
from trading_orders.adapters.storage.tinydb_store.trade_log import TRADE_LOG_FILE, JsonLinesTradeLog
from trading_orders.application.order_service import OrderService
from trading_orders.domain.model import Order, Side

PROFILE = {"U1": {"S": ["ACC", "INFY", "TCS"]}, "U2": {"S": ["ACC"]}}


def open_service(directory: Path) -> tuple[OrderService, TinyDBOrderStore, Callable[[], None]]:
    snapshots, log, trades = TinyDBPositionStore(directory), JsonLinesOrderLog(directory), JsonLinesTradeLog(directory)
    service, tinydb = service_over(PROFILE, snapshots, log, trades)

    def close() -> None:
        tinydb.close()
        for opened in (snapshots, log, trades):
            opened.close()

    return service, tinydb, close


def trade_lines(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (directory / TRADE_LOG_FILE).read_text().splitlines()]


def test_orders_after_the_last_snapshot_are_replayed_at_start_up(tmp_path: Path) -> None:
    service, tinydb, close = open_service(tmp_path)
    service.start()
    place(service, Order("S", "ACC", Side.BUY))
    assert tinydb.checkpoint()
    snapshot = (tmp_path / POSITIONS_FILE).read_bytes()
    place(service, Order("S", "INFY", Side.BUY))
    place(service, Order("S", "ACC", Side.SELL))
    expected = service.open_positions()
    close()
    # As if the process died after the last two orders, before the next snapshot.
    (tmp_path / POSITIONS_FILE).write_bytes(snapshot)

    restarted, _, close = open_service(tmp_path)
    report = restarted.start()
    assert report.replayed_orders == 2
    assert restarted.open_positions() == expected
    close()
    on_disk = json.loads((tmp_path / POSITIONS_FILE).read_bytes())
    assert on_disk["meta"]["1"]["applied_sequence"] == 3, "stopping takes a last snapshot"
    assert [line["sequence"] for line in trade_lines(tmp_path)] == [3], "the SELL's trades, recorded once"


def test_trades_lost_with_a_crash_are_recorded_from_the_log(tmp_path: Path) -> None:
    service, tinydb, close = open_service(tmp_path)
    service.start()
    place(service, Order("S", "ACC", Side.BUY))
    assert tinydb.checkpoint()
    snapshot = (tmp_path / POSITIONS_FILE).read_bytes()
    place(service, Order("S", "ACC", Side.SELL))
    written = trade_lines(tmp_path)
    close()
    # As if the process died after the SELL was durable, before its trades were synced.
    (tmp_path / TRADE_LOG_FILE).write_bytes(b"")
    (tmp_path / POSITIONS_FILE).write_bytes(snapshot)

    restarted, _, close = open_service(tmp_path)
    restarted.start()
    assert trade_lines(tmp_path) == written
    (line,) = written
    assert [(t["user"], t["buy_order_id"], t["sell_order_id"]) for t in line["trades"]] == [
        ("U1", "o1", "o2"),
        ("U2", "o1", "o2"),
    ]
    close()


def test_a_lost_position_file_is_rebuilt_from_the_whole_log(tmp_path: Path) -> None:
    service, _, close = open_service(tmp_path)
    service.start()
    for instrument in ("ACC", "INFY", "TCS"):
        place(service, Order("S", instrument, Side.BUY))
    place(service, Order("S", "INFY", Side.SELL))
    expected = service.open_positions()
    close()
    (tmp_path / POSITIONS_FILE).unlink()

    restarted, _, close = open_service(tmp_path)
    assert restarted.start().replayed_orders == 4
    assert restarted.open_positions() == expected
    assert len(trade_lines(tmp_path)) == 1, "rebuilding positions does not record the trade twice"
    close()
