"""A read that flushes for everyone and meets an unexpected error answers as a disk failure would: 503, rolled back."""

import pytest

from trading_orders.adapters.storage.tinydb_store.group_commit import GroupCommit
from trading_orders.application.errors import StorageUnavailable


def test_an_unexpected_error_in_a_flush_run_by_a_read_is_rolled_back_and_raised_as_unavailable() -> None:
    rolled_back: list[StorageUnavailable] = []
    commits: GroupCommit

    def flush() -> None:
        raise IndexError("pop from an empty deque")

    def roll_back(error: StorageUnavailable) -> None:
        rolled_back.append(error)
        commits.end_epoch(0, error)

    commits = GroupCommit(flush=flush, is_durable=lambda sequence: False, roll_back=roll_back)
    with pytest.raises(StorageUnavailable, match=r"the order log.s commit failed \(IndexError\)"):
        commits.wait((1, commits.epoch))
    assert len(rolled_back) == 1 and commits.epoch == 1, "entry 1 was dropped, as after a failed fsync"
