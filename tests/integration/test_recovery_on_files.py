"""Start-up recovery over the real files: the order log's tail is replayed into the positions."""

import json
from pathlib import Path

from tests.service.fakes import CountingIds, FixedProfile, SteppingClock
from trading_orders.adapters.storage.jsonl_order_log import JsonLinesOrderLog
from trading_orders.adapters.storage.tinydb_position_store import POSITIONS_FILE, TinyDBPositionStore
from trading_orders.application.order_service import OrderService
from trading_orders.domain.model import Order, PositionScope, Side

PROFILE = {"U1": {"S": ["ACC", "INFY", "TCS"]}, "U2": {"S": ["ACC"]}}


def open_service(directory: Path) -> tuple[OrderService, TinyDBPositionStore, JsonLinesOrderLog]:
    store, log = TinyDBPositionStore(directory), JsonLinesOrderLog(directory)
    service = OrderService(FixedProfile(PROFILE), store, log, SteppingClock(), CountingIds(), PositionScope.STRATEGY)
    return service, store, log


def test_a_crash_between_log_and_store_is_healed_at_start_up(tmp_path: Path) -> None:
    service, store, log = open_service(tmp_path)
    service.start()
    service.place_order(Order("S", "ACC", Side.BUY))
    snapshot = (tmp_path / POSITIONS_FILE).read_bytes()
    service.place_order(Order("S", "INFY", Side.BUY))
    service.place_order(Order("S", "ACC", Side.SELL))
    expected = service.open_positions()
    store.close()
    log.close()
    # As if the process died after the last two log appends, before their store writes.
    (tmp_path / POSITIONS_FILE).write_bytes(snapshot)

    restarted, store, log = open_service(tmp_path)
    report = restarted.start()
    assert report.replayed_orders == 2
    assert restarted.open_positions() == expected
    on_disk = json.loads((tmp_path / POSITIONS_FILE).read_bytes())
    assert on_disk["meta"]["1"]["applied_sequence"] == 3
    store.close()
    log.close()


def test_a_lost_position_file_is_rebuilt_from_the_whole_log(tmp_path: Path) -> None:
    service, store, log = open_service(tmp_path)
    service.start()
    for instrument in ("ACC", "INFY", "TCS"):
        service.place_order(Order("S", instrument, Side.BUY))
    service.place_order(Order("S", "INFY", Side.SELL))
    expected = service.open_positions()
    store.close()
    log.close()
    (tmp_path / POSITIONS_FILE).unlink()

    restarted, store, log = open_service(tmp_path)
    assert restarted.start().replayed_orders == 4
    assert restarted.open_positions() == expected
    store.close()
    log.close()
