"""The default position store: a TinyDB file written atomically, owned by one process."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage

from trading_orders.adapters.storage.file_lock import ExclusiveFileLock
from trading_orders.adapters.storage.tinydb_store.parts import StoredPositions
from trading_orders.application.errors import CorruptStore, StorageUnavailable
from trading_orders.atomic_file import remove_stale_temporaries, write_atomically
from trading_orders.domain.controls import NO_CONTROLS
from trading_orders.domain.model import DomainError, Position
from trading_orders.json_records import controls_from_dict, controls_to_dict, position_from_dict, position_to_dict

logger = logging.getLogger(__name__)

POSITIONS_FILE = "positions.json"
_POSITIONS = "positions"
_META = "meta"


class AtomicJSONStorage(Storage):
    """A TinyDB storage that replaces its file atomically.

    TinyDB's stock JSONStorage truncates and rewrites its file in place, so a
    crash mid-write leaves a torn file. This one writes a temporary file,
    fsyncs it, renames it over the old one and fsyncs the directory. It keeps
    the committed data in memory (the store is the file's only user), so reads
    cost no I/O.
    """

    def __init__(self, path: Path) -> None:
        """Open ``path``; raises CorruptStore, naming the place, if it is not valid JSON."""
        self._path = path
        self._committed: dict[str, Any] | None = self._read_file()

    def _read_file(self) -> dict[str, Any] | None:
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return None
        if not raw.strip():
            return None
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            offset = getattr(error, "pos", getattr(error, "start", 0))
            raise CorruptStore(f"{self._path}: not valid JSON at byte {offset} ({error})") from error
        if not isinstance(data, dict):
            raise CorruptStore(f"{self._path}: expected a JSON object of tables, found {type(data).__name__}")
        for name, table in data.items():
            # TinyDB itself fails with an AttributeError on any other shape.
            if not isinstance(table, dict) or not all(isinstance(document, dict) for document in table.values()):
                raise CorruptStore(f"{self._path}: table {name!r} is not an object of documents")
        return data

    def read(self) -> dict[str, dict[str, Any]] | None:
        """The data as of the last write, each table copied so TinyDB's edits stay private until written."""
        if self._committed is None:
            return None
        return {name: dict(table) for name, table in self._committed.items()}

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        """Replace the file with ``data`` atomically."""
        write_atomically(self._path, json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())
        self._committed = data

    def close(self) -> None:
        """Nothing to release: every write is complete when it returns."""


class TinyDBPositionStore:
    """Open positions in ``<directory>/positions.json``, with the last order-log sequence applied."""

    def __init__(self, directory: Path, *, read_only: bool = False) -> None:
        """Open (or create) the store in ``directory``; one writing process at a time.

        ``read_only`` takes no lock and never writes, so it can inspect the
        store of a running service; it raises CorruptStore if the file is
        damaged. A writer sets a damaged file aside as ``positions.json.damaged``
        and starts from no snapshot, so the whole order log is replayed.
        """
        self._path = directory / POSITIONS_FILE
        self._read_only = read_only
        self._lock: ExclusiveFileLock | None = None
        # The last snapshot saved, and each of its positions as JSON: positions
        # are immutable, so the next snapshot encodes only the new ones.
        self._saved: StoredPositions | None = None
        self._encoded: dict[Position, bytes] = {}
        if read_only:
            self._open()
            return
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = ExclusiveFileLock(self._path)
        try:
            for stale in remove_stale_temporaries(self._path):
                logger.warning("removed %s, left by a write that a crash cut short", stale)
            self._open_or_set_aside()
        except BaseException:
            self._lock.close()
            raise

    def _open(self) -> None:
        self._db = TinyDB(self._path, storage=AtomicJSONStorage)
        self._positions = self._db.table(_POSITIONS, cache_size=0)
        self._meta = self._db.table(_META, cache_size=0)

    def _open_or_set_aside(self) -> None:
        """Open the file and read its snapshot; a damaged file goes aside and an empty store takes its place."""
        try:
            self._open()
            self._saved = self.load()
        except CorruptStore as damage:
            aside = self._path.with_name(f"{POSITIONS_FILE}.damaged")
            # The snapshot is derived from the log: kept for whoever wants to
            # see what went wrong, never read again.
            os.replace(self._path, aside)
            logger.warning(
                "%s; set aside as %s: the positions are rebuilt from the whole order log", damage, aside.name
            )
            self._open()

    def load(self) -> StoredPositions:
        """The latest snapshot: every position in it and the order-log sequence it includes."""
        if self._saved is not None:
            return self._saved
        positions: list[Position] = []
        for document in self._positions.all():
            try:
                positions.append(position_from_dict(document))
            except (DomainError, KeyError, TypeError, ValueError) as error:
                raise CorruptStore(
                    f"{self._path}: position document {document.doc_id} is not a valid position ({error})"
                ) from error
        meta = self._meta.all()
        sequence = meta[0].get("applied_sequence", 0) if meta else 0
        offset = meta[0].get("log_offset") if meta else None
        # Absent from snapshots written before it was recorded: unknown, not zero.
        trades_through = meta[0].get("trades_through") if meta else None
        if not _is_count(sequence):
            raise CorruptStore(f"{self._path}: applied_sequence {sequence!r} is not a sequence number")
        if offset is not None and not _is_count(offset):
            raise CorruptStore(f"{self._path}: log_offset {offset!r} is not a byte offset")
        if trades_through is not None and not _is_count(trades_through):
            raise CorruptStore(f"{self._path}: trades_through {trades_through!r} is not a sequence number")
        # Absent from snapshots written before operator controls: none were in force.
        controls = NO_CONTROLS
        if meta and "controls" in meta[0]:
            try:
                controls = controls_from_dict(meta[0]["controls"])
            except (DomainError, KeyError, TypeError, ValueError) as error:
                raise CorruptStore(f"{self._path}: the controls in force are not valid ({error})") from error
        return StoredPositions(tuple(positions), sequence, offset, trades_through, controls)

    def save(self, snapshot: StoredPositions) -> None:
        """Replace the file with ``snapshot`` in one atomic write, in TinyDB's layout."""
        if self._read_only:
            raise PermissionError(f"{self._path} was opened read-only")
        meta: dict[str, Any] = {"applied_sequence": snapshot.applied_sequence}
        if snapshot.log_offset is not None:
            meta["log_offset"] = snapshot.log_offset
        if snapshot.trades_through is not None:
            meta["trades_through"] = snapshot.trades_through
        if not snapshot.controls.is_empty:
            meta["controls"] = controls_to_dict(snapshot.controls)
        encoded: dict[Position, bytes] = {}
        documents = []
        for number, position in enumerate(snapshot.positions, start=1):
            document = self._encoded.get(position)
            if document is None:
                document = json.dumps(position_to_dict(position), separators=(",", ":"), ensure_ascii=False).encode()
            encoded[position] = document
            documents.append(b'"%d":%b' % (number, document))
        data = b'{"%b":{%b},"%b":{"1":%b}}' % (
            _POSITIONS.encode(),
            b",".join(documents),
            _META.encode(),
            json.dumps(meta, separators=(",", ":")).encode(),
        )
        try:
            write_atomically(self._path, data)
        except OSError as error:
            raise StorageUnavailable(f"cannot write {self._path}: {error.strerror or error}") from error
        self._saved, self._encoded = snapshot, encoded

    def close(self) -> None:
        """Release the file for another process."""
        self._db.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _is_count(value: object) -> bool:
    """True when ``value`` is a whole number from 0 up, as JSON wrote it (true and false are not)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
