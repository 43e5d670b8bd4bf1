"""An append-only file of JSON lines, each with a sequence: checked at open, fsync'd per append, never rewritten."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from trading_orders.adapters.storage.atomic_file import fsync_directory
from trading_orders.adapters.storage.file_lock import ExclusiveFileLock
from trading_orders.application.errors import CorruptStore, InvalidCursor, StorageUnavailable
from trading_orders.domain.model import DomainError

logger = logging.getLogger(__name__)

# Reads one line's JSON object at a byte offset, after the previous line's
# sequence; returns the line's sequence, or raises to say the line is invalid.
LineCheck = Callable[[int, dict[str, Any], int], int]

_BLOCK = 64 * 1024


def line_offset(lines: JsonLinesFile, cursor: str) -> int:
    """The byte offset a cursor of ``lines`` names; raises InvalidCursor unless a line starts there."""
    try:
        offset = int(cursor, 16)
    except ValueError:
        raise InvalidCursor(f"cursor {cursor!r} was not handed out by this service") from None
    if not lines.is_line_start(offset):
        raise InvalidCursor(f"cursor {cursor!r} was not handed out by this service")
    return offset


class JsonLinesFile:
    """The file at ``path``: one JSON object per line, sequences rising, one writing process at a time."""

    def __init__(self, path: Path, check_line: LineCheck, kind: str, *, read_only: bool = False) -> None:
        """Open and check every line; a writer creates the file and cuts a torn last line left by a crash.

        ``read_only`` takes no lock and changes nothing, so it can inspect the
        file of a running service; a torn last line is then only reported.
        """
        self.path = path
        self._check_line = check_line
        self._kind = kind
        self._read_only = read_only
        self._lock: ExclusiveFileLock | None = None
        self._fd = -1
        self.last_sequence = 0
        self.size = 0  # bytes of complete, valid lines
        self.torn_tail = 0  # bytes of a last line a crash cut short, still in the file
        # Set when a failed append could not be undone: the file's end is then
        # unknown, and appending more could put a lost record behind a new one.
        self._broken: str | None = None
        if read_only:
            if path.exists():
                self._scan()
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = ExclusiveFileLock(path)
        try:
            created = not path.exists()
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            if created:
                fsync_directory(path.parent)
            self._scan()
            if self.torn_tail:
                self._truncate(self.size)
                logger.warning(
                    "%s: dropped a torn last line at byte %d (%d bytes), left by a crash mid-append",
                    path,
                    self.size,
                    self.torn_tail,
                )
                self.torn_tail = 0
        except BaseException:
            self.close()
            raise

    def _scan(self) -> None:
        with open(self.path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.endswith(b"\n"):
                    # Only the last line can lack its end, and only because a
                    # crash cut its append short: it was never acknowledged.
                    self.torn_tail = len(line)
                    return
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError(f"expected a JSON object, found {type(record).__name__}")
                    self.last_sequence = self._check_line(self.size, record, self.last_sequence)
                except (DomainError, KeyError, TypeError, ValueError) as error:
                    raise CorruptStore(
                        f"{self.path}: line {number} (byte {self.size}) is not a valid {self._kind} ({error}); "
                        "the service never rewrites this file: restore it from a backup, or repair that line by hand"
                    ) from error
                self.size += len(line)

    def _truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        os.fsync(self._fd)

    def append(self, record: dict[str, Any], sequence: int) -> int:
        """Append ``record`` as one line and fsync it; returns its byte offset. On failure nothing is kept."""
        if self._read_only:
            raise PermissionError(f"{self.path} was opened read-only")
        if sequence <= self.last_sequence:
            raise ValueError(f"{self.path} is at sequence {self.last_sequence}, cannot append {sequence}")
        if self._broken is not None:
            raise StorageUnavailable(self._broken)
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        try:
            written = 0
            while written < len(line):
                written += os.write(self._fd, line[written:])
            os.fsync(self._fd)
        except OSError as error:
            self._undo_append(error)
            raise StorageUnavailable(f"cannot append to {self.path}: {error.strerror or error}") from error
        offset = self.size
        self.last_sequence = sequence
        self.size += len(line)
        return offset

    def _undo_append(self, error: OSError) -> None:
        try:
            self._truncate(self.size)
        except OSError as undo_error:
            self._broken = (
                f"{self.path} could not be cut back after a failed append ({undo_error.strerror or undo_error}); "
                "restart the service so it can check the file"
            )
            logger.critical("%s; the append failed with: %s", self._broken, error)

    def is_line_start(self, offset: int) -> bool:
        """True when a line of the checked file starts at ``offset`` (or it is the file's end)."""
        if not 0 <= offset <= self.size:
            return False
        if offset == 0:
            return True
        with open(self.path, "rb") as handle:
            handle.seek(offset - 1)
            return handle.read(1) == b"\n"

    def read_at(self, offset: int) -> dict[str, Any]:
        """The record whose line starts at byte ``offset``."""
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            record: dict[str, Any] = json.loads(handle.readline())
            return record

    def forward(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Every (offset, record), oldest first, up to what was complete when last checked or appended."""
        if not self.path.exists():
            return
        offset = 0
        with open(self.path, "rb") as handle:
            for line in handle:
                if offset + len(line) > self.size:
                    return  # a torn tail, or lines appended after a read-only open
                yield offset, json.loads(line)
                offset += len(line)

    def backward(self, before: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        """(offset, record) newest first, starting with the line that ends at byte ``before`` (default: the end).

        Reads the file in blocks from the end, so a page costs the lines it
        returns, however deep into the file it starts.
        """
        end = self.size if before is None else before
        if not 0 <= end <= self.size:
            raise ValueError(f"offset {end} is outside {self.path}")
        with open(self.path, "rb") as handle:
            # buffer always ends at a line boundary: the start of the line
            # after it, or ``end``. Its first piece may still lack its start.
            buffer = b""
            position = end
            while position > 0:
                start = max(0, position - _BLOCK)
                handle.seek(start)
                buffer = handle.read(position - start) + buffer
                position = start
                pieces = buffer.split(b"\n")[:-1]
                starts = []
                offset = position
                for piece in pieces:
                    starts.append(offset)
                    offset += len(piece) + 1
                first_whole = 0 if position == 0 else 1
                for index in range(len(pieces) - 1, first_whole - 1, -1):
                    yield starts[index], json.loads(pieces[index])
                buffer = pieces[0] + b"\n" if first_whole else b""

    def reachable(self) -> bool:
        """True while the file appended to is still the file at its path (not moved, deleted or broken)."""
        if self._broken is not None or self._fd < 0:
            return False
        try:
            opened, on_disk = os.fstat(self._fd), os.stat(self.path)
        except OSError:
            return False
        return (opened.st_dev, opened.st_ino) == (on_disk.st_dev, on_disk.st_ino)

    def close(self) -> None:
        """Close the file and release it for another process; safe to call twice."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock is not None:
            self._lock.close()
            self._lock = None
