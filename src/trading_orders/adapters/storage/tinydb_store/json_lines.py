"""An append-only file of JSON lines, each with a sequence: written, then made durable in groups, never rewritten."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from trading_orders.adapters.storage.cursors import not_handed_out
from trading_orders.adapters.storage.file_lock import ExclusiveFileLock
from trading_orders.application.errors import CorruptStore, StorageUnavailable
from trading_orders.atomic_file import fsync_directory
from trading_orders.domain.model import DomainError

logger = logging.getLogger(__name__)

# Reads one line's JSON object at a byte offset, after the previous line's
# sequence; returns the line's sequence, or raises to say the line is invalid.
LineCheck = Callable[[int, dict[str, Any], int], int]
# (bytes, sequence) of the end of the durable lines, as the writer tells other processes.
DurableEnd = tuple[int, int]

_BLOCK = 64 * 1024
_NEVER_REWRITTEN = "; the service never rewrites this file: restore it from a backup, or repair that line by hand"


def _last_newline_end(handle: BinaryIO, end: int) -> int:
    """The offset just past the last newline before byte ``end`` (0 if none)."""
    position = end
    while position > 0:
        start = max(0, position - _BLOCK)
        handle.seek(start)
        block = handle.read(position - start)
        found = block.rfind(b"\n")
        if found >= 0:
            return start + found + 1
        position = start
    return 0


class DamagedLine(StorageUnavailable):
    """A line that no longer reads as the JSON object written there: the file was damaged since."""

    def __init__(self, path: Path, offset: int, kind: str, error: Exception) -> None:
        """The line at byte ``offset`` of ``path`` is not a valid ``kind``, as ``error`` says."""
        super().__init__(f"{path}: the line at byte {offset} is not a valid {kind} ({error})")
        self.offset = offset
        self.problem = str(error)


@contextmanager
def _reading(path: Path) -> Iterator[BinaryIO]:
    """``path`` open for reading; a disk or a permission that refuses is StorageUnavailable, as a write's is."""
    try:
        with open(path, "rb") as handle:
            yield handle
    except OSError as error:
        raise StorageUnavailable(f"cannot read {path}: {error.strerror or error}") from error


def visible_line_start(lines: JsonLinesFile, offset: int, cursor: str) -> int:
    """``offset``, when a line of ``lines`` readers were shown starts there; else InvalidCursor for ``cursor``."""
    # Cursors are handed out for visible lines only: the end of the file, or a
    # line not yet durable, is no line a reader was shown.
    if offset >= lines.visible_size or not lines.is_line_start(offset):
        raise not_handed_out(cursor)
    return offset


class JsonLinesFile:
    """The file at ``path``: one JSON object per line, sequences rising, one writing process at a time.

    Opening costs only the last line: the lines before it are checked by
    check(), from the start or from a place an earlier check vouched for.
    write() hands a line to the OS; sync() makes every line written so far
    durable, so many writes can share one fsync. Readers see the lines up to
    ``visible_size``: what sync() made durable, or with ``visible_unsynced``
    every line written. With ``consecutive`` each line's sequence is one past
    the line before's, so a line too damaged to say its own is named by it.
    A writer given ``on_durable`` tells it each new durable end before sync()
    returns; a read-only open given ``durable_end`` stops at the end it names.
    A ``derived`` file is worked out from another, so its damage is described
    without the advice to restore it.
    """

    def __init__(
        self,
        path: Path,
        check_line: LineCheck,
        kind: str,
        *,
        read_only: bool = False,
        visible_unsynced: bool = False,
        consecutive: bool = False,
        on_durable: Callable[[int, int], None] | None = None,
        durable_end: Callable[[], DurableEnd | None] | None = None,
        derived: bool = False,
        keep_torn_tail: bool = False,
    ) -> None:
        """Open the file and find its last line; a writer creates the file and cuts a torn last line a crash left.

        ``read_only`` takes no lock and changes nothing, so it can inspect the
        file of a running service; a torn last line is then only reported.
        ``on_durable(size, sequence)`` raising OSError fails the sync (or the
        open) it is told from; ``durable_end`` is asked once the file's end is found.
        ``keep_torn_tail`` leaves a torn last line to the caller, who may know
        it was no crash's and must call drop_torn_tail() before writing.
        """
        self.path = path
        self._check_line = check_line
        self._kind = kind
        self._read_only = read_only
        self._visible_unsynced = visible_unsynced
        self._consecutive = consecutive
        self._on_durable = on_durable
        self._repair = "" if derived else _NEVER_REWRITTEN
        self._lock: ExclusiveFileLock | None = None
        self._fd = -1
        # (bytes, sequence) of the complete lines written, and of those known
        # to be on disk: each a tuple replaced whole, so a thread reading it
        # never sees a size from one line and a sequence from another.
        self._end: tuple[int, int] = (0, 0)
        self._durable: tuple[int, int] = (0, 0)
        self.torn_tail = 0  # bytes of a last line a crash cut short, still in the file
        # Set when a failed write could not be undone: the file's end is then
        # unknown, and appending more could put a lost record behind a new one.
        self._broken: str | None = None
        if read_only:
            if path.exists():
                self._find_end()
                # Asked after the end is found: the durable end only grows, and
                # the lines up to it never change, so it holds for the file as read.
                told = durable_end() if durable_end is not None else None
                if told is not None:
                    self._stop_at(told)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = ExclusiveFileLock(path)
        try:
            created = not path.exists()
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            if created:
                fsync_directory(path.parent)
            self._find_end()
            if not keep_torn_tail:
                self.drop_torn_tail()
            # Every complete line is kept from here on (a torn tail is none): readers elsewhere may see them all.
            self._tell_durable(self._durable)
        except BaseException:
            self.close()
            raise

    def drop_torn_tail(self) -> None:
        """Cut off the torn last line a crash mid-append left, with a WARNING; nothing when there is none."""
        if not self.torn_tail:
            return
        self._truncate(self.size)
        logger.warning(
            "%s: dropped a torn last line at byte %d (%d bytes), left by a crash mid-append",
            self.path,
            self.size,
            self.torn_tail,
        )
        self.torn_tail = 0

    @property
    def size(self) -> int:
        """Bytes of the complete lines written."""
        return self._end[0]

    @property
    def last_sequence(self) -> int:
        """The sequence of the last complete line written, 0 when none."""
        return self._end[1]

    @property
    def durable_size(self) -> int:
        """Bytes of the lines known to be on disk."""
        return self._durable[0]

    @property
    def durable_sequence(self) -> int:
        """The sequence of the last line known to be on disk."""
        return self._durable[1]

    @property
    def visible_size(self) -> int:
        """Bytes of the lines readers may see."""
        return self.size if self._visible_unsynced else self.durable_size

    def _find_end(self) -> None:
        with open(self.path, "rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            complete = _last_newline_end(handle, end)
            self.torn_tail = end - complete
            if complete == 0:
                return
            start = _last_newline_end(handle, complete - 1)
            handle.seek(start)
            line = handle.read(complete - start)
        try:
            record = json.loads(line)
            sequence = record["sequence"] if isinstance(record, dict) else None
            if not isinstance(sequence, int) or sequence < 1:
                raise ValueError(f"sequence {sequence!r} is not a positive whole number")
        except (KeyError, TypeError, ValueError) as error:
            raise CorruptStore(
                f"{self.path}: the last line (byte {start}) is not a valid {self._kind} ({error}){self._repair}"
            ) from error
        self._end = self._durable = (complete, sequence)

    def _stop_at(self, durable: DurableEnd) -> None:
        """Read only the lines up to ``durable``, the end the writer told, if a line of the file ends there."""
        size, sequence = durable
        if size > 0 and self._sequence_ending_at(size) != sequence:
            # Only a hand changed the lines the writer vouched for (a restore,
            # damage); no writer holds them since, or it would have told its
            # own end: the file is read whole, and check() says what is wrong.
            logger.warning(
                "%s: no line ends at byte %d with sequence %d, as the service recorded; reading every complete line",
                self.path,
                size,
                sequence,
            )
            return
        if size > self.size:
            # Lines made durable since the end was found: the torn line found then is one of them.
            self.torn_tail = 0
        self._end = self._durable = (size, sequence)

    def _sequence_ending_at(self, end: int) -> int | None:
        """The sequence of the line that ends at byte ``end``; None when no line ends there or it holds none."""
        with open(self.path, "rb") as handle:
            if end > handle.seek(0, os.SEEK_END):
                return None
            handle.seek(end - 1)
            if handle.read(1) != b"\n":
                return None
            start = _last_newline_end(handle, end - 1)
            handle.seek(start)
            line = handle.read(end - start)
        try:
            record = json.loads(line)
        except ValueError:
            return None
        sequence = record.get("sequence") if isinstance(record, dict) else None
        return sequence if type(sequence) is int else None

    def _tell_durable(self, durable: DurableEnd) -> None:
        if self._on_durable is not None:
            self._on_durable(*durable)

    def check(self, start: int = 0, previous_sequence: int = 0) -> None:
        """Check every line from byte ``start`` (a line start after sequence ``previous_sequence``) to the end.

        Raises CorruptStore naming the line (from the start) or its byte.
        """
        if not self.path.exists():
            return
        if not self.is_line_start(start):
            raise CorruptStore(f"{self.path}: no line starts at byte {start}; the file was changed")
        offset, sequence = start, previous_sequence
        with open(self.path, "rb") as handle:
            handle.seek(start)
            for number, line in enumerate(handle, start=1):
                if offset >= self.size:
                    break
                where = f"line {number} (byte {offset})" if start == 0 else f"the line at byte {offset}"
                if self._consecutive:
                    where = f"{where}, sequence {sequence + 1},"
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError(f"expected a JSON object, found {type(record).__name__}")
                    sequence = self._check_line(offset, record, sequence)
                except (DomainError, KeyError, TypeError, ValueError) as error:
                    raise CorruptStore(
                        f"{self.path}: {where} is not a valid {self._kind} ({error}){self._repair}"
                    ) from error
                offset += len(line)
        if sequence != self.last_sequence:
            raise CorruptStore(
                f"{self.path}: the lines end at sequence {sequence}, the last line says {self.last_sequence}"
            )

    def _truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        os.fsync(self._fd)

    def write(self, record: dict[str, Any], sequence: int) -> int:
        """Hand ``record`` to the OS as one line, not yet durable; returns its offset. On failure nothing is kept."""
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
        except OSError as error:
            self.cut_back(self.size, error)
            raise StorageUnavailable(f"cannot append to {self.path}: {error.strerror or error}") from error
        offset = self.size
        self._end = (offset + len(line), sequence)
        return offset

    def sync(self) -> int:
        """Make every line written so far durable; returns the last durable sequence.

        Raises StorageUnavailable if the disk refuses; the lines past the
        durable end are then in doubt, and cut_back() should drop them.
        """
        if self._broken is not None:
            raise StorageUnavailable(self._broken)
        end = self._end
        if end[0] != self._durable[0]:
            try:
                os.fsync(self._fd)
                # Told before the lines count as durable: a reader elsewhere
                # never stops past lines this writer might still cut back.
                self._tell_durable(end)
            except OSError as error:
                raise StorageUnavailable(f"cannot append to {self.path}: {error.strerror or error}") from error
            self._durable = max(self._durable, end)
        return self._durable[1]

    def append(self, record: dict[str, Any], sequence: int) -> int:
        """Append ``record`` as one line and fsync it; returns its byte offset. On failure nothing is kept."""
        offset = self.write(record, sequence)
        try:
            self.sync()
        except StorageUnavailable as error:
            self.cut_back(offset, error)
            raise
        return offset

    def cut_back(self, size: int, error: BaseException, last_sequence: int | None = None) -> None:
        """Drop every line from byte ``size`` on, after ``error`` made them doubtful; broken if even that fails.

        ``last_sequence`` is the sequence of the line that ends at ``size``, when the caller knows it.
        """
        try:
            self._truncate(size)
        except OSError as undo_error:
            self._broken = (
                f"{self.path} could not be cut back after a failed append ({undo_error.strerror or undo_error}); "
                "restart the service so it can check the file"
            )
            logger.critical("%s; the append failed with: %s", self._broken, error)
            return
        if size < self.size:
            sequence = self._sequence_before(size) if last_sequence is None else last_sequence
            self._end = (size, sequence)
            self._durable = min(self._durable, self._end)

    def _sequence_before(self, offset: int) -> int:
        previous = next(self.backward(offset, visible_only=False), None)
        return 0 if previous is None else int(previous[1]["sequence"])

    def is_line_start(self, offset: int) -> bool:
        """True when a line of the file starts at ``offset`` (or the written lines end there)."""
        if not 0 <= offset <= self.size:
            return False
        if offset == 0:
            return True
        with _reading(self.path) as handle:
            handle.seek(offset - 1)
            return handle.read(1) == b"\n"

    def read_at(self, offset: int) -> dict[str, Any]:
        """The record whose line starts at byte ``offset``."""
        return self.line_at(offset)[0]

    def line_at(self, offset: int) -> tuple[dict[str, Any], int]:
        """The record whose line starts at byte ``offset``, and the offset where its line ends."""
        with _reading(self.path) as handle:
            handle.seek(offset)
            line = handle.readline()
        return self._record(offset, line), offset + len(line)

    def _record(self, offset: int, line: bytes) -> dict[str, Any]:
        """The JSON object of the line at byte ``offset``; raises DamagedLine when it is none."""
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"expected a JSON object, found {type(record).__name__}")
        except ValueError as error:
            raise DamagedLine(self.path, offset, self._kind, error) from error
        return record

    def forward(self, start: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
        """(offset, record) oldest first from the line at byte ``start``, up to the visible end."""
        if not self.path.exists():
            return
        offset, end = start, self.visible_size
        with _reading(self.path) as handle:
            handle.seek(start)
            for line in handle:
                if offset + len(line) > end:
                    return  # not yet visible, a torn tail, or lines appended after a read-only open
                yield offset, self._record(offset, line)
                offset += len(line)

    def backward(self, before: int | None = None, *, visible_only: bool = True) -> Iterator[tuple[int, dict[str, Any]]]:
        """(offset, record) newest first, starting with the line that ends at byte ``before`` (default: the end).

        Reads the file in blocks from the end, so a page costs the lines it
        returns, however deep into the file it starts. The end is the visible
        one unless ``visible_only`` is False.
        """
        limit = self.visible_size if visible_only else self.size
        end = limit if before is None else before
        if not 0 <= end <= limit:
            raise ValueError(f"offset {end} is outside {self.path}")
        with _reading(self.path) as handle:
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
                    yield starts[index], self._record(starts[index], pieces[index])
                buffer = pieces[0] + b"\n" if first_whole else b""

    def reachable(self) -> bool:
        """True while the file appended to is still the readable file at its path (not moved, deleted or broken)."""
        if self._broken is not None or self._fd < 0:
            return False
        try:
            opened, on_disk = os.fstat(self._fd), os.stat(self.path)
            # Appends go through a descriptor opened at the start, so only an
            # open for reading finds a file whose permissions changed since.
            os.close(os.open(self.path, os.O_RDONLY))
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
