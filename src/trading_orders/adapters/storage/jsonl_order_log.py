"""The default order log: one JSON line per order, appended and fsync'd, never rewritten."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from trading_orders.adapters.storage.atomic_file import fsync_directory
from trading_orders.adapters.storage.codec import entry_from_dict, entry_to_dict
from trading_orders.adapters.storage.file_lock import ExclusiveFileLock
from trading_orders.application.errors import CorruptStore, StorageUnavailable
from trading_orders.domain.model import DomainError, OrderLogEntry

logger = logging.getLogger(__name__)

ORDER_LOG_FILE = "order_log.jsonl"


@dataclass
class _Scan:
    """What a pass over the log file found."""

    last_sequence: int = 0
    size: int = 0  # bytes of complete, valid lines
    torn_tail: int = 0  # bytes of a last line a crash cut short
    offsets_by_key: dict[str, int] = field(default_factory=dict)


def _scan(path: Path) -> _Scan:
    scan = _Scan()
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                # Only the last line can lack its end, and only because a crash
                # cut its append short: that order was never answered.
                scan.torn_tail = len(line)
                break
            try:
                entry = entry_from_dict(json.loads(line))
                if entry.sequence != scan.last_sequence + 1:
                    raise ValueError(f"sequence {entry.sequence} follows {scan.last_sequence}")
            except (DomainError, KeyError, TypeError, ValueError) as error:
                raise CorruptStore(
                    f"{path}: line {number} (byte {scan.size}) is not a valid order-log entry ({error}); "
                    "the order log is the source of truth and is never rewritten by the service: "
                    "restore it from a backup, or repair that line by hand"
                ) from error
            if entry.idempotency_key is not None:
                scan.offsets_by_key[entry.idempotency_key] = scan.size
            scan.last_sequence = entry.sequence
            scan.size += len(line)
    return scan


class JsonLinesOrderLog:
    """The order log in ``<directory>/order_log.jsonl``; one writing process at a time."""

    def __init__(self, directory: Path, *, read_only: bool = False) -> None:
        """Open the log and check every line; a writer creates it and cuts a torn last line left by a crash.

        ``read_only`` takes no lock and changes nothing, so it can inspect the
        log of a running service; a torn last line is then only reported.
        """
        self._path = directory / ORDER_LOG_FILE
        self._read_only = read_only
        self._lock: ExclusiveFileLock | None = None
        self._fd = -1
        # Set when a failed append could not be undone: the file's end is then
        # unknown, and appending more could put a lost order behind a new one.
        self._broken: str | None = None
        if read_only:
            self._scan = _scan(self._path) if self._path.exists() else _Scan()
            return
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = ExclusiveFileLock(self._path)
        try:
            created = not self._path.exists()
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            if created:
                fsync_directory(directory)
            self._scan = _scan(self._path)
            if self._scan.torn_tail:
                self._truncate(self._scan.size)
                logger.warning(
                    "%s: dropped a torn last line at byte %d (%d bytes), left by a crash mid-append",
                    self._path,
                    self._scan.size,
                    self._scan.torn_tail,
                )
                self._scan.torn_tail = 0
        except BaseException:
            self.close()
            raise

    @property
    def torn_tail(self) -> int:
        """Bytes of a torn last line still in the file (only a read-only log leaves one there)."""
        return self._scan.torn_tail

    def _truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        os.fsync(self._fd)

    def last_sequence(self) -> int:
        """The sequence of the newest entry, 0 when the log is empty."""
        return self._scan.last_sequence

    def append(self, entry: OrderLogEntry) -> None:
        """Append ``entry`` and fsync it; on failure the file is cut back to where it was."""
        if self._read_only:
            raise PermissionError(f"{self._path} was opened read-only")
        if entry.sequence != self._scan.last_sequence + 1:
            raise ValueError(f"order log is at sequence {self._scan.last_sequence}, cannot append {entry.sequence}")
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
        if entry.idempotency_key is not None:
            self._scan.offsets_by_key[entry.idempotency_key] = self._scan.size
        self._scan.last_sequence = entry.sequence
        self._scan.size += len(line)

    def _undo_append(self, error: OSError) -> None:
        try:
            self._truncate(self._scan.size)
        except OSError as undo_error:
            self._broken = (
                f"{self._path} could not be cut back after a failed append ({undo_error.strerror or undo_error}); "
                "restart the service so it can check the log"
            )
            logger.critical("%s; the append failed with: %s", self._broken, error)

    def entries_after(self, sequence: int) -> Iterator[OrderLogEntry]:
        """The entries with a sequence above ``sequence``, oldest first."""
        if not self._path.exists():
            return
        with open(self._path, "rb") as handle:
            read = 0
            for line in handle:
                read += len(line)
                if read > self._scan.size:
                    return  # a torn tail, or lines appended after this log was opened read-only
                entry = entry_from_dict(json.loads(line))
                if entry.sequence > sequence:
                    yield entry

    def find_by_idempotency_key(self, key: str) -> OrderLogEntry | None:
        """The entry recorded with idempotency key ``key``, if any; one seek and one line read."""
        offset = self._scan.offsets_by_key.get(key)
        if offset is None:
            return None
        with open(self._path, "rb") as handle:
            handle.seek(offset)
            return entry_from_dict(json.loads(handle.readline()))

    def reachable(self) -> bool:
        """True while the file appended to is still the file at its path (not moved, deleted or broken)."""
        if self._broken is not None or self._fd < 0:
            return False
        try:
            opened, on_disk = os.fstat(self._fd), os.stat(self._path)
        except OSError:
            return False
        return (opened.st_dev, opened.st_ino) == (on_disk.st_dev, on_disk.st_ino)

    def close(self) -> None:
        """Close the file and release it for another process."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock is not None:
            self._lock.close()
            self._lock = None
