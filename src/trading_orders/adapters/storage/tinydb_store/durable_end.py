"""Where the order log is durable, told to other processes: ``<directory>/order_log.durable``.

A line of the log reaches the file before its fsync, and a failed fsync cuts
it back: another process reading the file cannot tell such a line from a
durable one. So the service records the end of the durable lines here after
each fsync, before any order they hold is answered, and a read-only open
(export, verify) stops there: it shows what the service's own readers were
shown, never a line the service may still take back.

The record is one line of fixed width, overwritten in place and never
fsync'd: a few microseconds per fsync of the log, where a rename costs a
good part of one (ext4 flushes a file renamed over another). It names lines
that are already on disk, and every start records the log's end again. A
reader may meet a record half overwritten: its check says so, and it reads
again. A file that is missing or holds no whole record names nothing: only
a directory no writer has opened since it was made, or a crash, leaves one,
and no writer then holds a line it could take back.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

from trading_orders.application.errors import StorageUnavailable

DURABLE_END_FILE = "order_log.durable"
# Room for two 20-digit numbers and a check, padded with spaces: JSON allows them after the value.
_WIDTH = 96
# A record read half overwritten is read again: a writer overwrites it in nanoseconds, once per fsync.
_READS = 5


def _check(size: int, sequence: int) -> int:
    return zlib.crc32(f"{sequence} {size}".encode())


class DurableEndRecord:
    """The writer's side: ``order_log.durable`` open for its lifetime, overwritten after each fsync of the log."""

    def __init__(self, directory: Path) -> None:
        """Open (or create) the record in ``directory``; raises OSError when it cannot."""
        self.path = directory / DURABLE_END_FILE
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # Fixed width from here on: no byte of a longer record is left behind a shorter one.
            os.ftruncate(self._fd, _WIDTH)
        except BaseException:
            self.close()
            raise

    def record(self, size: int, sequence: int) -> None:
        """Record that the log's lines up to byte ``size``, sequence ``sequence``, are durable; raises OSError."""
        body = json.dumps({"sequence": sequence, "end": size, "check": _check(size, sequence)})
        line = (body.ljust(_WIDTH - 1) + "\n").encode()
        if len(line) != _WIDTH:
            raise ValueError(f"a durable end of {len(line)} bytes does not fit {self.path}")
        if os.pwrite(self._fd, line, 0) != _WIDTH:
            raise OSError(f"a short write to {self.path}")

    def close(self) -> None:
        """Close the record; safe to call twice."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_durable_end(directory: Path) -> tuple[int, int] | None:
    """(bytes, sequence) of the order log's durable lines as the service last recorded them; None if it names none."""
    path = directory / DURABLE_END_FILE
    for _ in range(_READS):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StorageUnavailable(f"cannot read {path}: {error.strerror or error}") from error
        found = _whole_record(data)
        if found is not None:
            return found
    return None


def _whole_record(data: bytes) -> tuple[int, int] | None:
    """The (bytes, sequence) of ``data``, if it is one whole record whose check agrees."""
    try:
        record = json.loads(data)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    size, sequence, check = record.get("end"), record.get("sequence"), record.get("check")
    if not (type(size) is int and type(sequence) is int and size >= 0 and sequence >= 0):
        return None
    return (size, sequence) if check == _check(size, sequence) else None
