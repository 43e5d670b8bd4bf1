"""The SQLite writer lock, waited for in the kernel by a thread the order stops watching at its bound.

A wait given up must never leave the lock held by nobody: when it comes, the
next order takes the wait over, or the lock is let go at once. Each test
holds the flock from a real second process.
"""

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from trading_orders.adapters.storage.sql.sqlite import WRITER_LOCK_FILE, SqliteOrderStore
from trading_orders.application.errors import StoreBusy
from trading_orders.domain.model import PositionScope

BOUND_SECONDS = 0.5
# Far above the bound: a process that cannot take the lock within this waits for a lock nobody lets go.
SLACK_SECONDS = 15.0

# Takes the flock on argv[1] (waiting for it, but dying after SLACK_SECONDS), says so, and holds it until killed.
_HOLD_FLOCK = f"""
import fcntl, os, signal, sys
signal.alarm({int(SLACK_SECONDS)})
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
signal.alarm(0)
print("held", flush=True)
sys.stdin.read()
"""


@contextmanager
def held_elsewhere(data_dir: Path) -> Iterator[None]:
    """Another process holding the writer lock's flock of ``data_dir`` until the block ends; fails if it cannot."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_FLOCK, str(data_dir / WRITER_LOCK_FILE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held", f"no flock within {SLACK_SECONDS:g} s: nobody let it go"
        yield
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteOrderStore]:
    """A SQLite store whose orders wait half a second for another process."""
    opened = SqliteOrderStore(tmp_path, PositionScope.STRATEGY, lock_wait_seconds=BOUND_SECONDS)
    opened.recover()
    yield opened
    opened.close()


def test_a_wait_given_up_at_the_bound_lets_the_lock_go_when_it_comes(store: SqliteOrderStore, tmp_path: Path) -> None:
    with held_elsewhere(tmp_path), pytest.raises(StoreBusy):
        store.open_batch(time.monotonic() + BOUND_SECONDS)
    # The given-up wait gets the flock now; with no order to take it over, it must let it go.
    with held_elsewhere(tmp_path):  # waits for the flock: a lock kept by nobody would time this out
        pass


def test_the_next_order_takes_a_given_up_wait_over_and_gets_the_lock_once_free(
    store: SqliteOrderStore, tmp_path: Path
) -> None:
    with held_elsewhere(tmp_path):
        with pytest.raises(StoreBusy):
            store.open_batch(time.monotonic() + BOUND_SECONDS)
        with pytest.raises(StoreBusy):
            store.open_batch(time.monotonic() + BOUND_SECONDS)
    batch, _, _ = store.open_batch(time.monotonic() + SLACK_SECONDS)
    batch.roll_back()
    # Rolled back: the batch let the flock go, and another process takes it.
    with held_elsewhere(tmp_path):
        pass
