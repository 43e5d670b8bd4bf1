"""The default order log: one JSON line per order, appended and fsync'd, never rewritten."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from trading_orders.adapters.storage.atomic_file import fsync_directory
from trading_orders.adapters.storage.codec import entry_from_dict, entry_to_dict
from trading_orders.adapters.storage.file_lock import ExclusiveFileLock
from trading_orders.application.errors import CorruptStore, StorageUnavailable
from trading_orders.domain.model import DomainError, OrderLogEntry

logger = logging.getLogger(__name__)

ORDER_LOG_FILE = "order_log.jsonl"


class JsonLinesOrderLog:
    """The order log in ``<directory>/order_log.jsonl``; one process at a time."""

    def __init__(self, directory: Path) -> None:
        """Open (or create) the log, check every line, and cut a torn last line left by a crash."""
        directory.mkdir(parents=True, exist_ok=True)
        self._path = directory / ORDER_LOG_FILE
        self._lock = ExclusiveFileLock(self._path)
        try:
            created = not self._path.exists()
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            if created:
                fsync_directory(directory)
            self._last_sequence, self._size = self._check()
        except BaseException:
            self._lock.close()
            raise
        # Set when a failed append could not be undone: the file's end is then
        # unknown, and appending more could put a lost order behind a new one.
        self._broken: str | None = None

    def _check(self) -> tuple[int, int]:
        last_sequence = 0
        offset = 0
        with open(self._path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.endswith(b"\n"):
                    # Only the last line can lack its end, and only because a
                    # crash cut its append short: that order was never
                    # answered, so dropping it loses nothing acknowledged.
                    self._truncate(offset)
                    logger.warning(
                        "%s: dropped torn last line %d at byte %d (%d bytes), left by a crash mid-append",
                        self._path,
                        number,
                        offset,
                        len(line),
                    )
                    break
                try:
                    entry = entry_from_dict(json.loads(line))
                    if entry.sequence != last_sequence + 1:
                        raise ValueError(f"sequence {entry.sequence} follows {last_sequence}")
                except (DomainError, KeyError, TypeError, ValueError) as error:
                    raise CorruptStore(
                        f"{self._path}: line {number} (byte {offset}) is not a valid order-log entry ({error}); "
                        "the order log is the source of truth and is never rewritten by the service: "
                        "restore it from a backup, or repair that line by hand"
                    ) from error
                last_sequence = entry.sequence
                offset += len(line)
        return last_sequence, offset

    def _truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        os.fsync(self._fd)

    def last_sequence(self) -> int:
        """The sequence of the newest entry, 0 when the log is empty."""
        return self._last_sequence

    def append(self, entry: OrderLogEntry) -> None:
        """Append ``entry`` and fsync it; on failure the file is cut back to where it was."""
        if entry.sequence != self._last_sequence + 1:
            raise ValueError(f"order log is at sequence {self._last_sequence}, cannot append {entry.sequence}")
        if self._broken is not None:
            raise StorageUnavailable(self._broken)
        line = (json.dumps(entry_to_dict(entry), separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        try:
            written = 0
            while written < len(line):
                written += os.write(self._fd, line[written:])
            os.fsync(self._fd)
        except OSError as error:
            self._undo_append(error)
            raise StorageUnavailable(f"cannot append to {self._path}: {error.strerror or error}") from error
        self._last_sequence = entry.sequence
        self._size += len(line)

    def _undo_append(self, error: OSError) -> None:
        try:
            self._truncate(self._size)
        except OSError as undo_error:
            self._broken = (
                f"{self._path} could not be cut back after a failed append ({undo_error.strerror or undo_error}); "
                "restart the service so it can check the log"
            )
            logger.critical("%s; the append failed with: %s", self._broken, error)

    def entries_after(self, sequence: int) -> Iterator[OrderLogEntry]:
        """The entries with a sequence above ``sequence``, oldest first."""
        with open(self._path, "rb") as handle:
            for line in handle:
                entry = entry_from_dict(json.loads(line))
                if entry.sequence > sequence:
                    yield entry

    def close(self) -> None:
        """Close the file and release it for another process."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._lock.close()
