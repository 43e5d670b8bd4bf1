"""The default position store: a TinyDB file written atomically, owned by one process."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage

from trading_orders.adapters.storage.atomic_file import remove_stale_temporaries, write_atomically
from trading_orders.adapters.storage.codec import position_from_dict, position_to_dict
from trading_orders.adapters.storage.file_lock import ExclusiveFileLock
from trading_orders.application.errors import CorruptStore, StorageUnavailable
from trading_orders.application.ports import StoredPositions
from trading_orders.domain.model import DomainError, Position, PositionChange

logger = logging.getLogger(__name__)

POSITIONS_FILE = "positions.json"
_POSITIONS = "positions"
_META = "meta"


class AtomicJSONStorage(Storage):
    """A TinyDB storage that replaces its file atomically and can group writes into one.

    TinyDB's stock JSONStorage truncates and rewrites its file in place, so a
    crash mid-write leaves a torn file. This one writes a temporary file,
    fsyncs it, renames it over the old one and fsyncs the directory. It keeps
    the committed data in memory (the store is the file's only user), so reads
    cost no I/O, and inside batch() the writes of several TinyDB operations are
    held back and land as one atomic write, or not at all.
    """

    def __init__(self, path: Path) -> None:
        """Open ``path``; raises CorruptStore, naming the place, if it is not valid JSON."""
        self._path = path
        self._committed: dict[str, Any] | None = self._read_file()
        self._pending: dict[str, Any] | None = None
        self._batching = False

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
            raise CorruptStore(
                f"{self._path}: not valid JSON at byte {offset} ({error}); the service does not overwrite it: "
                "move it aside and restart to rebuild positions from the order log"
            ) from error
        if not isinstance(data, dict):
            raise CorruptStore(f"{self._path}: expected a JSON object of tables, found {type(data).__name__}")
        return data

    def read(self) -> dict[str, dict[str, Any]] | None:
        """The data as of the last write, each table copied so TinyDB's edits stay private until written."""
        source = self._pending if self._pending is not None else self._committed
        if source is None:
            return None
        return {name: dict(table) for name, table in source.items()}

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        """Write ``data`` atomically, or hold it for the end of the current batch."""
        if self._batching:
            self._pending = data
            return
        self._commit(data)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group the writes inside into one atomic write at the end; an error discards them all."""
        self._batching = True
        try:
            yield
            if self._pending is not None:
                self._commit(self._pending)
        finally:
            self._batching = False
            self._pending = None

    def _commit(self, data: dict[str, Any]) -> None:
        encoded = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        write_atomically(self._path, encoded)
        self._committed = data

    def close(self) -> None:
        """Nothing to release: every write is complete when it returns."""


class TinyDBPositionStore:
    """Open positions in ``<directory>/positions.json``, with the last order-log sequence applied."""

    def __init__(self, directory: Path, *, read_only: bool = False) -> None:
        """Open (or create) the store in ``directory``; one writing process at a time.

        ``read_only`` takes no lock and never writes, so it can inspect the
        store of a running service.
        """
        self._path = directory / POSITIONS_FILE
        self._read_only = read_only
        self._lock: ExclusiveFileLock | None = None
        if not read_only:
            directory.mkdir(parents=True, exist_ok=True)
            self._lock = ExclusiveFileLock(self._path)
        try:
            if not read_only:
                for stale in remove_stale_temporaries(self._path):
                    logger.warning("removed %s, left by a write that a crash cut short", stale)
            self._db = TinyDB(self._path, storage=AtomicJSONStorage)
        except BaseException:
            if self._lock is not None:
                self._lock.close()
            raise
        storage = self._db.storage
        assert isinstance(storage, AtomicJSONStorage)
        self._storage = storage
        self._positions = self._db.table(_POSITIONS, cache_size=0)
        self._meta = self._db.table(_META, cache_size=0)
        self._doc_ids: dict[Position, int] = {}

    def load(self) -> StoredPositions:
        """Every stored open position and the sequence of the last order applied."""
        positions: list[Position] = []
        self._doc_ids = {}
        for document in self._positions.all():
            try:
                position = position_from_dict(document)
            except (DomainError, KeyError, TypeError, ValueError) as error:
                raise CorruptStore(
                    f"{self._path}: position document {document.doc_id} is not a valid position ({error}); "
                    "move the file aside and restart to rebuild positions from the order log"
                ) from error
            self._doc_ids[position] = document.doc_id
            positions.append(position)
        meta = self._meta.all()
        sequence = meta[0].get("applied_sequence", 0) if meta else 0
        if not isinstance(sequence, int) or sequence < 0:
            raise CorruptStore(f"{self._path}: applied_sequence {sequence!r} is not a sequence number")
        return StoredPositions(tuple(positions), sequence)

    def apply(self, change: PositionChange, sequence: int) -> None:
        """Record ``change`` and ``sequence`` in one atomic write."""
        missing = [p for p in change.closed if p not in self._doc_ids]
        if missing:
            raise ValueError(f"cannot close {missing[0]}: it is not in {self._path}")
        self._write(sequence, closed=change.closed, opened=change.opened)

    def _write(
        self,
        sequence: int,
        closed: tuple[Position, ...],
        opened: tuple[Position, ...],
    ) -> None:
        if self._read_only:
            raise PermissionError(f"{self._path} was opened read-only")
        try:
            with self._storage.batch():
                if closed:
                    self._positions.remove(doc_ids=[self._doc_ids[p] for p in closed])
                new_ids = self._positions.insert_multiple(position_to_dict(p) for p in opened)
                # Only inserts and removes: TinyDB edits updated documents in
                # place, which would leak into the committed copy on failure.
                self._meta.truncate()
                self._meta.insert({"applied_sequence": sequence})
        except OSError as error:
            raise StorageUnavailable(f"cannot write {self._path}: {error.strerror or error}") from error
        for position in closed:
            self._doc_ids.pop(position, None)
        self._doc_ids.update(zip(opened, new_ids, strict=True))

    def close(self) -> None:
        """Release the file for another process."""
        self._db.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None
