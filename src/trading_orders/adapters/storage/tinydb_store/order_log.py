"""The default order log: one JSON line per order, appended, made durable in groups, never rewritten."""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from trading_orders.adapters.storage.cursors import hexadecimal_cursor
from trading_orders.adapters.storage.tinydb_store.durable_end import DurableEndRecord, read_durable_end
from trading_orders.adapters.storage.tinydb_store.json_lines import DamagedLine, JsonLinesFile, visible_line_start
from trading_orders.adapters.storage.tinydb_store.order_index import IndexRow, OrderIndex, inspect_index
from trading_orders.application.errors import CorruptStore, DamagedLogEntry, StartupError, StorageUnavailable
from trading_orders.domain.controls import LogEntry, entry_id
from trading_orders.domain.model import DomainError
from trading_orders.json_records import log_entry_from_dict, log_entry_to_dict

logger = logging.getLogger(__name__)

ORDER_LOG_FILE = "order_log.jsonl"
_KIND = "order-log entry"
_LOG_LOST_ENTRIES = "the order log was truncated or replaced; restore it from a backup (it is the source of truth)"


def last_sequence_on_disk(directory: Path) -> int:
    """The sequence of the last complete line of the order log in ``directory`` as it stands now; 0 when none."""
    return JsonLinesFile(directory / ORDER_LOG_FILE, _unchecked, _KIND, read_only=True).last_sequence


def _unchecked(offset: int, record: dict[str, Any], previous: int) -> int:
    return int(record["sequence"])


class JsonLinesOrderLog:
    """The order log in ``<directory>/order_log.jsonl``, indexed in ``order_index.sqlite3``; one writer.

    Opening checks the lines the on-disk index does not cover yet (every
    line when there is no index, or a read-only open) and keeps those
    entries in memory until index_through() moves them to the index: memory
    holds the entries since the last checkpoint, however long the log grows,
    and a start-up reads only the log's tail.
    """

    def __init__(self, directory: Path, *, read_only: bool = False) -> None:
        """Open (or create) the log and its index; see JsonLinesFile for torn lines and read-only use.

        A read-only log ends at the last entry its writer made durable, as order_log.durable records it.
        """
        self._directory = directory
        self._durable_end: DurableEndRecord | None = None
        # A reader in another process stops where this log's writer says its lines are durable (durable_end.py).
        try:
            self._file = JsonLinesFile(
                directory / ORDER_LOG_FILE,
                self._check_line,
                _KIND,
                read_only=read_only,
                consecutive=True,
                # A torn last line is cut only once the index has not vouched for it:
                # one it holds was durable, so no crash tore it, and it is kept for whoever restores the log.
                keep_torn_tail=True,
                on_durable=self._record_durable_end,
                durable_end=functools.partial(read_durable_end, directory),
            )
        except BaseException:
            self._close_durable_end()
            raise
        try:
            self._index = OrderIndex(directory, read_only=read_only)
        except BaseException:
            self._file.close()
            self._close_durable_end()
            raise
        self._remembered_through = 0
        # Entries past the index, oldest first, and their offsets by key and
        # by order id. The event loop appends, the checkpoint thread drains
        # and readers search them: each under this lock, since a deque
        # mutated by one thread while another iterates it raises.
        self._memory = threading.Lock()
        self._unindexed: deque[IndexRow] = deque()
        self._offsets_by_key: dict[str, int] = {}
        self._offsets_by_order: dict[str, int] = {}
        try:
            indexed = self._matching_index_end()
            if not read_only:
                self._file.drop_torn_tail()
            start, previous = indexed if indexed is not None else (0, 0)
            self._remembered_through = previous
            self._file.check(start, previous)
            if indexed is None and not read_only:
                self._fill_index()
        except BaseException:
            self.close()
            raise

    def _record_durable_end(self, size: int, sequence: int) -> None:
        # Opened at the first end told, which the writer tells once it holds the log's lock.
        if self._durable_end is None:
            self._durable_end = DurableEndRecord(self._directory)
        self._durable_end.record(size, sequence)

    def _close_durable_end(self) -> None:
        if self._durable_end is not None:
            self._durable_end.close()

    def _fill_index(self) -> None:
        """Index every entry now: a new index (missing, damaged or another log's) would leave them all in memory."""
        try:
            self.index_through(self._file.durable_sequence)
        except StorageUnavailable as error:
            raise StartupError(f"cannot rebuild the index from the log: {error}") from error

    def _check_line(self, offset: int, record: dict[str, Any], previous: int) -> int:
        entry = log_entry_from_dict(record)
        if entry.sequence != previous + 1:
            raise ValueError(f"sequence {entry.sequence} follows {previous}")
        if entry.sequence > self._remembered_through:
            self._remember((entry.sequence, offset, entry_id(entry), entry.idempotency_key))
        return entry.sequence

    def _remember(self, row: IndexRow) -> None:
        self._remembered_through = row[0]
        with self._memory:
            self._unindexed.append(row)
            self._offsets_by_order[row[2]] = row[1]
            if row[3] is not None:
                self._offsets_by_key[row[3]] = row[1]

    def check(self, sequence: int = 0, offset: int | None = None) -> None:
        """Check that entry ``sequence`` ends at byte ``offset`` (a snapshot's mark); with no offset, every line.

        Raises CorruptStore naming the place.
        """
        if offset is None:
            self._file.check()
            return
        if not sequence:
            return
        before = next(self._file.backward(offset, visible_only=False), None) if offset <= self._file.size else None
        if before is None or before[1].get("sequence") != sequence:
            raise CorruptStore(
                f"{self._file.path}: the position snapshot was taken at sequence {sequence}, byte {offset}, "
                "and the log does not hold that entry there: the log was truncated or replaced; restore it "
                "from a backup (it is the source of truth), or move positions.json aside to rebuild it"
            )

    def _matching_index_end(self) -> tuple[int, int] | None:
        """(offset after, sequence) of the newest indexed entry, if the index matches this log."""
        try:
            last = self._index.last()
        except (TypeError, ValueError) as error:
            # A hand-edited row: the index is derived, so it is rebuilt, not trusted.
            logger.warning(
                "%s: its newest entry is not a sequence and an offset (%s); rebuilding it from the log",
                self._index.path,
                error,
            )
            self._index.clear()
            return None
        if last is None:
            return None
        sequence, offset = last
        if sequence > self._file.last_sequence:
            # The index holds only entries once durable in the log: the log lost them, not the index.
            torn = f" and {self._file.torn_tail} bytes of a line cut short" if self._file.torn_tail else ""
            raise CorruptStore(
                f"{self._index.path} indexes order-log entry {sequence} at byte {offset}, but {self._file.path} "
                f"ends at sequence {self._file.last_sequence}{torn}: {_LOG_LOST_ENTRIES}"
            )
        if offset < self._file.size and self._file.is_line_start(offset):
            try:
                record, end = self._file.line_at(offset)
            except DamagedLine:
                record, end = {}, 0  # the log changed under the index: the full check below names the place
            if record.get("sequence") == sequence:
                return end, sequence
        logger.warning("%s does not match %s; rebuilding it from the log", self._index.path, self._file.path)
        self._index.clear()
        return None

    @property
    def torn_tail(self) -> int:
        """Bytes of a torn last line still in the file (only a read-only log leaves one there)."""
        return self._file.torn_tail

    def last_sequence(self) -> int:
        """The sequence of the newest entry written, 0 when the log is empty."""
        return self._file.last_sequence

    def durable_sequence(self) -> int:
        """The sequence of the newest entry known to be on disk."""
        return self._file.durable_sequence

    def end_offset(self) -> int:
        """The byte offset just past the newest entry written: where the next one starts."""
        return self._file.size

    def write(self, entry: LogEntry) -> None:
        """Hand ``entry`` to the OS, not yet durable (see sync()); on failure nothing is kept."""
        if entry.sequence != self._file.last_sequence + 1:
            raise ValueError(f"order log is at sequence {self._file.last_sequence}, cannot append {entry.sequence}")
        offset = self._file.write(log_entry_to_dict(entry), entry.sequence)
        self._remember((entry.sequence, offset, entry_id(entry), entry.idempotency_key))

    def sync(self) -> int:
        """Make every entry written so far durable with one fsync; returns the newest durable sequence."""
        return self._file.sync()

    def append(self, entry: LogEntry) -> None:
        """Append ``entry`` and fsync it; on failure the file is cut back to where it was."""
        self.write(entry)
        try:
            self.sync()
        except StorageUnavailable as error:
            self.roll_back(error)
            raise

    def roll_back(self, error: BaseException) -> None:
        """Drop the entries written since the last durable one, after ``error`` put them in doubt."""
        durable_size, durable_sequence = self._file.durable_size, self._file.durable_sequence
        self._file.cut_back(durable_size, error, durable_sequence)
        self._remembered_through = min(self._remembered_through, durable_sequence)
        with self._memory:
            while self._unindexed and self._unindexed[-1][0] > durable_sequence:
                _, _, order_id, key = self._unindexed.pop()
                self._offsets_by_order.pop(order_id, None)
                if key is not None:
                    self._offsets_by_key.pop(key, None)

    def index_through(self, sequence: int) -> None:
        """Move the durable entries up to ``sequence`` from memory to the on-disk index."""
        through = min(sequence, self._file.durable_sequence)
        with self._memory:
            rows = [row for row in self._unindexed if row[0] <= through]
        if not rows:
            return
        try:
            self._index.add(rows)
        except sqlite3.Error as error:
            raise StorageUnavailable(f"cannot write {self._index.path}: {error}") from error
        # Only now, so a lookup finds each entry in memory or on disk throughout.
        with self._memory:
            while self._unindexed and self._unindexed[0][0] <= rows[-1][0]:
                self._unindexed.popleft()
            for _, _, order_id, key in rows:
                self._offsets_by_order.pop(order_id, None)
                if key is not None:
                    self._offsets_by_key.pop(key, None)

    def index_damage(self) -> str | None:
        """What is wrong with the on-disk index against the entries in memory (all, when read-only); None if sound."""
        with self._memory:
            rows = {row[0]: row for row in self._unindexed}
        return inspect_index(self._index.path.parent, rows)

    def unindexed(self) -> int:
        """How many entries wait in memory for the on-disk index."""
        with self._memory:
            return len(self._unindexed)

    def entries_after(self, sequence: int) -> Iterator[LogEntry]:
        """The durable entries with a sequence above ``sequence``, oldest first, read from the first of them on."""
        if sequence >= self._file.durable_sequence:
            return
        start = self._offset_of_sequence(sequence + 1) if sequence > 0 else 0
        if start is None:
            return
        # Sequences rise by one along the log: the next line holds ``expected``.
        expected = sequence + 1
        try:
            for offset, record in self._file.forward(start):
                yield self._entry(offset, record, expected)
                expected += 1
        except DamagedLine as error:
            raise self._damaged(error.offset, error.problem, expected) from error

    def _offset_of_sequence(self, sequence: int) -> int | None:
        with self._memory:
            if self._unindexed and self._unindexed[0][0] <= sequence:
                return next((row[1] for row in self._unindexed if row[0] == sequence), None)
        found = self._lookup(self._index.offset_of_sequence, sequence)
        if found is not None:
            return found
        # Not indexed (an index rebuilt with the tail still in memory): walk back from the end.
        for offset, record in self._file.backward():
            found = record.get("sequence")
            if not isinstance(found, int):
                raise self._damaged(offset, f"sequence {found!r} is not a sequence number", None)
            if found <= sequence:
                return offset if found == sequence else None
        return None

    def find_by_idempotency_key(self, key: str) -> LogEntry | None:
        """The entry written with idempotency key ``key``, if any: from memory, else one index lookup."""
        with self._memory:
            offset = self._offsets_by_key.get(key)
        if offset is None:
            offset = self._lookup(self._index.offset_of_key, key)
        return None if offset is None else self._entry_at(offset)

    def newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, LogEntry]]:
        """(cursor, entry) newest first; a cursor is the entry's byte offset, so any page costs what it reads."""
        before = None if cursor is None else visible_line_start(self._file, hexadecimal_cursor(cursor), cursor)
        # Sequences fall by one going back: the next line holds ``expected``,
        # known from the end of the log, or once a line of the page was read.
        expected = self._file.durable_sequence if before is None else None
        try:
            for offset, record in self._file.backward(before):
                entry = self._entry(offset, record, expected)
                expected = entry.sequence - 1
                yield f"{offset:x}", entry
        except DamagedLine as error:
            raise self._damaged(error.offset, error.problem, expected) from error

    def find_by_order_id(self, order_id: str) -> LogEntry | None:
        """The durable entry of order ``order_id``: from memory, else one index lookup."""
        with self._memory:
            offset = self._offsets_by_order.get(order_id)
        if offset is None:
            offset = self._lookup(self._index.offset_of_order, order_id)
        if offset is None or offset >= self._file.visible_size:
            return None
        return self._entry_at(offset)

    def _entry_at(self, offset: int) -> LogEntry:
        try:
            return self._entry(offset, self._file.read_at(offset), None)
        except DamagedLine as error:
            raise self._damaged(offset, error.problem, None) from error

    def _entry(self, offset: int, record: dict[str, Any], expected: int | None) -> LogEntry:
        """The entry a line's JSON object holds; raises DamagedLogEntry, naming its sequence, if it holds none."""
        try:
            return log_entry_from_dict(record)
        except (DomainError, KeyError, TypeError, ValueError) as error:
            problem = f"no field {error}" if isinstance(error, KeyError) else str(error)
            raise self._damaged(offset, problem, expected) from error

    def _damaged(self, offset: int, problem: str, expected: int | None) -> DamagedLogEntry:
        """The error for the line at ``offset``: its sequence from the index (or memory), else ``expected``."""
        sequence = self._sequence_at(offset)
        if sequence is None:
            sequence = expected
        if sequence is None:
            named, place = "an order-log entry", f"the line at byte {offset}"
        else:
            # Sequences run from 1, one a line: entry N is line N.
            named, place = f"order-log entry {sequence}", f"line {sequence} (byte {offset})"
        return DamagedLogEntry(
            f"{named} cannot be read: {self._file.path}, {place}, is damaged ({problem}); "
            "the service never rewrites this file: restore it from a backup, or repair that line by hand",
            sequence,
        )

    def _sequence_at(self, offset: int) -> int | None:
        with self._memory:
            found = next((row[0] for row in self._unindexed if row[1] == offset), None)
        if found is not None:
            return found
        try:
            return self._index.sequence_at(offset)
        except sqlite3.Error:
            return None  # the index is a guide here, not a need: the place in the log still names the entry

    def _lookup(self, query: Callable[[Any], int | None], value: str | int) -> int | None:
        try:
            return query(value)
        except sqlite3.Error as error:
            raise StorageUnavailable(f"cannot read {self._index.path}: {error}") from error

    def reachable(self) -> bool:
        """True while the log's file is still the one at its path and appends can be undone."""
        return self._file.reachable()

    def close(self) -> None:
        """Close the file and its index and release them for another process."""
        self._index.close()
        self._file.close()
        self._close_durable_end()
