"""Controls on the TinyDB files: kept by the snapshot, replayed from the log, checked by verify."""

import asyncio
from pathlib import Path

import pytest

from tests.integration.tinydb_over_memory import service_over
from tests.service.fakes import CountingIds, SteppingClock, place
from trading_orders.adapters.storage.tinydb_store.order_log import JsonLinesOrderLog
from trading_orders.adapters.storage.tinydb_store.position_snapshots import POSITIONS_FILE, TinyDBPositionStore
from trading_orders.adapters.storage.tinydb_store.trade_log import JsonLinesTradeLog
from trading_orders.adapters.storage.tinydb_store.verification import verify_directory
from trading_orders.application.operator_controls import OperatorControls
from trading_orders.domain.controls import DESK, Controls, ControlScope, RateLimit, TradingState
from trading_orders.domain.model import Order, Position, PositionScope, Side

PROFILE = {"Ann": {"ALPHA": ["INFY", "ACC", "TCS"]}, "Bob": {"ALPHA": ["INFY", "ACC", "TCS"]}}


class OpenFiles:
    """A started service and its controls over the TinyDB files in a directory; close() checkpoints."""

    def __init__(self, directory: Path) -> None:
        self.parts = TinyDBPositionStore(directory), JsonLinesOrderLog(directory), JsonLinesTradeLog(directory)
        self.service, self.store = service_over(PROFILE, *self.parts)
        self.service.start()
        self.controls = OperatorControls(self.store, SteppingClock(), CountingIds("c"), self.service.profile)

    def state(self) -> tuple[Controls, list[Position]]:
        return self.controls.in_force(), sorted(self.service.open_positions(), key=lambda p: p.order_id)

    def close(self) -> None:
        self.store.close()
        for part in self.parts:
            part.close()


def record(directory: Path, checkpoint_on_close: bool) -> tuple[Controls, list[Position]]:
    """Orders and every kind of control change; without the last checkpoint, the next start replays them all."""
    files = OpenFiles(directory)
    snapshot = directory / POSITIONS_FILE
    empty = snapshot.read_bytes() if snapshot.exists() else None
    for instrument in ("INFY", "ACC", "TCS"):
        place(files.service, Order("ALPHA", instrument, Side.BUY))
    asyncio.run(files.controls.set_state(ControlScope(strategy="ALPHA"), TradingState.REDUCING, "feed", "cli"))
    asyncio.run(files.controls.flatten(ControlScope(user="Bob"), TradingState.HALTED, "account closed", "cli"))
    asyncio.run(files.controls.set_position_limit(ControlScope(user="Ann"), 2, "risk", "cli"))
    asyncio.run(files.controls.set_rate_limit("ALPHA", RateLimit(10.0, 5), "loop", "cli"))
    asyncio.run(files.controls.set_state(DESK, TradingState.HALTED, "", "cli"))
    asyncio.run(files.controls.set_state(DESK, TradingState.ACTIVE, "all clear", "cli"))
    place(files.service, Order("ALPHA", "INFY", Side.SELL))
    state = files.state()
    files.close()
    if not checkpoint_on_close:
        # Back to the snapshot before any order: the whole log is replayed.
        if empty is None:
            snapshot.unlink()
        else:
            snapshot.write_bytes(empty)
    return state


@pytest.mark.parametrize("checkpoint_on_close", [True, False], ids=["snapshot", "replay"])
def test_controls_and_positions_come_back_the_same_from_snapshot_or_log(
    tmp_path: Path, checkpoint_on_close: bool
) -> None:
    before = record(tmp_path, checkpoint_on_close)
    controls, positions = before
    assert [(s.scope, s.state) for s in controls.states()] == [
        (ControlScope(strategy="ALPHA"), TradingState.REDUCING),
        (ControlScope(user="Bob"), TradingState.HALTED),
    ]
    assert [p.instrument for p in positions] == ["ACC", "TCS"]
    reopened = OpenFiles(tmp_path)
    assert reopened.state() == before
    reopened.close()


def test_verify_agrees_with_a_store_that_holds_controls_and_a_lost_snapshot_is_rebuilt_with_them(
    tmp_path: Path,
) -> None:
    before = record(tmp_path, checkpoint_on_close=True)
    found = verify_directory(tmp_path, PositionScope.STRATEGY)
    assert found.report.agree, found.report.problems
    assert found.damaged == ()
    (tmp_path / POSITIONS_FILE).write_text("{ not json")
    rebuilt = OpenFiles(tmp_path)
    assert rebuilt.state() == before
    rebuilt.close()
