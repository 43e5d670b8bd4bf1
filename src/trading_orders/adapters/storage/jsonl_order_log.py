"""The default order log: one JSON line per order, appended and fsync'd, never rewritten."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trading_orders.adapters.storage.codec import entry_from_dict, entry_to_dict
from trading_orders.adapters.storage.json_lines import JsonLinesFile, line_offset
from trading_orders.domain.model import OrderLogEntry

ORDER_LOG_FILE = "order_log.jsonl"


class JsonLinesOrderLog:
    """The order log in ``<directory>/order_log.jsonl``; one writing process at a time."""

    def __init__(self, directory: Path, *, read_only: bool = False) -> None:
        """Open (or create) the log and check every line; see JsonLinesFile for torn lines and read-only use."""
        self._offsets_by_key: dict[str, int] = {}
        self._file = JsonLinesFile(directory / ORDER_LOG_FILE, self._check_line, "order-log entry", read_only=read_only)

    def _check_line(self, offset: int, record: dict[str, Any], previous: int) -> int:
        entry = entry_from_dict(record)
        if entry.sequence != previous + 1:
            raise ValueError(f"sequence {entry.sequence} follows {previous}")
        if entry.idempotency_key is not None:
            self._offsets_by_key[entry.idempotency_key] = offset
        return entry.sequence

    @property
    def torn_tail(self) -> int:
        """Bytes of a torn last line still in the file (only a read-only log leaves one there)."""
        return self._file.torn_tail

    def last_sequence(self) -> int:
        """The sequence of the newest entry, 0 when the log is empty."""
        return self._file.last_sequence

    def append(self, entry: OrderLogEntry) -> None:
        """Append ``entry`` and fsync it; on failure the file is cut back to where it was."""
        if entry.sequence != self._file.last_sequence + 1:
            raise ValueError(f"order log is at sequence {self._file.last_sequence}, cannot append {entry.sequence}")
        offset = self._file.append(entry_to_dict(entry), entry.sequence)
        if entry.idempotency_key is not None:
            self._offsets_by_key[entry.idempotency_key] = offset

    def entries_after(self, sequence: int) -> Iterator[OrderLogEntry]:
        """The entries with a sequence above ``sequence``, oldest first."""
        for _, record in self._file.forward():
            if record["sequence"] > sequence:
                yield entry_from_dict(record)

    def find_by_idempotency_key(self, key: str) -> OrderLogEntry | None:
        """The entry recorded with idempotency key ``key``, if any; one seek and one line read."""
        offset = self._offsets_by_key.get(key)
        return None if offset is None else entry_from_dict(self._file.read_at(offset))

    def newest_first(self, cursor: str | None = None) -> Iterator[tuple[str, OrderLogEntry]]:
        """(cursor, entry) newest first; a cursor is the entry's byte offset, so any page costs what it reads."""
        before = None if cursor is None else line_offset(self._file, cursor)
        for offset, record in self._file.backward(before):
            yield f"{offset:x}", entry_from_dict(record)

    def find_by_order_id(self, order_id: str) -> OrderLogEntry | None:
        """The entry of order ``order_id``, searched newest first, so recent orders are found at once."""
        for _, record in self._file.backward():
            if record["order_id"] == order_id:
                return entry_from_dict(record)
        return None

    def reachable(self) -> bool:
        """True while the log's file is still the one at its path and appends can be undone."""
        return self._file.reachable()

    def close(self) -> None:
        """Close the file and release it for another process."""
        self._file.close()
