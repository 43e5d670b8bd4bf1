"""Where the order log is durable, told to other processes: ``<directory>/order_log.durable``.

A line of the log reaches the file before its fsync, and a failed fsync cuts
it back: another process reading the file cannot tell such a line from a
durable one. So the service records the end of the durable lines here after
each fsync, before any order they hold is answered, and a read-only open
(export, verify) stops there: it shows what the service's own readers were
shown, never a line the service may still take back.

The record is replaced whole (a rename), never fsync'd: it names lines that
are already on disk, and the next start records the log's end again. A file
that is missing or not a record names nothing: only a directory no writer
has opened since it was made, or a crash, leaves one, and no writer then
holds a line it could take back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from trading_orders.application.errors import StorageUnavailable

DURABLE_END_FILE = "order_log.durable"


def record_durable_end(directory: Path, size: int, sequence: int) -> None:
    """Record that the order log's lines up to byte ``size``, sequence ``sequence``, are durable; raises OSError."""
    path = directory / DURABLE_END_FILE
    # One writer (the log's lock holder): a fixed temporary name never meets another's.
    temporary = path.with_name(f".{DURABLE_END_FILE}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(json.dumps({"sequence": sequence, "end": size}).encode() + b"\n")
    os.replace(temporary, path)


def read_durable_end(directory: Path) -> tuple[int, int] | None:
    """(bytes, sequence) of the order log's durable lines as the service last recorded them; None if it names none."""
    path = directory / DURABLE_END_FILE
    try:
        record = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StorageUnavailable(f"cannot read {path}: {error.strerror or error}") from error
    except ValueError:
        return None
    size = record.get("end") if isinstance(record, dict) else None
    sequence = record.get("sequence") if isinstance(record, dict) else None
    if not (type(size) is int and type(sequence) is int and size >= 0 and sequence >= 0):
        return None
    return size, sequence
