"""One process at a time per data file: an advisory lock held while the file is open."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from trading_orders.application.errors import StoreInUse


class ExclusiveFileLock:
    """An exclusive flock on ``<path>.lock``, released by close() or by the process's death."""

    def __init__(self, path: Path) -> None:
        """Take the lock now; raises StoreInUse if another process holds it."""
        self._lock_path = path.with_name(path.name + ".lock")
        self._fd: int | None = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            self._fd = None
            raise StoreInUse(
                f"{path} is in use by another process (pid {holder}); the TinyDB store serves one "
                "process: stop the other one, or use one worker"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def close(self) -> None:
        """Release the lock; safe to call twice."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
