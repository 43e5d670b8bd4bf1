"""The crash loop in CI on every durable store: 20 kill -9 cycles, with kills during start-up, and not one mismatch."""

from pathlib import Path

import pytest

from tests.e2e.conftest import SCRIPTS
from tests.support.crash_loop import CrashLoop


@pytest.mark.parametrize("store", ["tinydb", "sqlite", "postgres"])
def test_twenty_kill_9_cycles_lose_and_double_nothing(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    database_url = request.getfixturevalue("postgres_url")() if store == "postgres" else None
    result = CrashLoop(SCRIPTS, tmp_path, seed=20261124, store=store, database_url=database_url).run(cycles=20)
    assert result.mismatches == []
    assert result.cycles == 20
    assert result.kills_during_start_up >= 1
    assert result.orders_answered >= 200, "too few orders reached the service for the loop to mean anything"
    assert result.retries_after_restart >= 1, "no kill ever caught an order in flight"
