"""Whole-file writes that a crash can never leave half-done."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Make a rename or creation inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_prefix(path: Path) -> str:
    """The name prefix of the temporary files a write of ``path`` leaves behind if cut short."""
    return f".{path.name}."


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new one, never a mix."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            # mkstemp makes the file private (0600); data files are as readable as any other.
            os.fchmod(handle.fileno(), 0o644)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporary files of writes of ``path`` that a crash cut short; returns them."""
    stale = sorted(path.parent.glob(f"{temporary_prefix(path)}*.tmp"))
    for temporary in stale:
        temporary.unlink(missing_ok=True)
    return stale
