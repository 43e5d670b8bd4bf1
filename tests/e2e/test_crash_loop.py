"""The crash loop on every durable store, in every make test: kill -9 at each crash point the loop aims at.

Three cycles cross them all: a kill with orders in flight (every cycle), a
kill while the service recovers from the last one (cycle 2), the
retry of every unanswered order after the restart, and on TinyDB kills among
checkpoints (a snapshot every 25 orders, not every 10,000, so the snapshot a
restart starts from is checked against the log). The long loops (20 cycles
and more, at the default settings) are `make soak`.
"""

from pathlib import Path

import pytest

from tests.e2e.conftest import SCRIPTS
from tests.support.crash_loop import CrashLoop

CYCLES = 3
START_UP_KILLS = (2,)


@pytest.mark.slow
@pytest.mark.parametrize("store", ["tinydb", "sqlite", "postgres"])
def test_kill_9_at_every_crash_point_loses_and_doubles_nothing(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    database_url = request.getfixturevalue("postgres_url")() if store == "postgres" else None
    loop = CrashLoop(
        SCRIPTS,
        tmp_path,
        seed=20261124,
        store=store,
        database_url=database_url,
        settings={"snapshot_every_orders": "25"},
    )
    result = loop.run(cycles=CYCLES, start_up_kills=START_UP_KILLS)
    assert result.mismatches == []
    assert result.cycles == CYCLES
    assert result.kills_during_start_up == len(START_UP_KILLS)
    assert result.orders_answered >= 10 * CYCLES, "too few orders reached the service for the loop to mean anything"
    assert result.retries_after_restart >= 1, "no kill ever caught an order in flight"
