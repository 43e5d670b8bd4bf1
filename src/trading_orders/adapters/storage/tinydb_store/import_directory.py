"""Where `import` builds a TinyDB store: a directory of its own, renamed into place only once complete."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trading_orders.atomic_file import fsync_directory


@contextmanager
def import_directory(target: Path) -> Iterator[Path]:
    """A new directory beside ``target`` to import into: renamed to ``target`` if the block completes, else removed.

    ``target`` must be new or empty (FileExistsError otherwise, touching
    nothing), so a failed or interrupted import never leaves a half-built
    store where the service would start on it.
    """
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} is not empty: import only into a new data directory")
    building = target.with_name(f".{target.name}.importing")
    # What an import killed outright left behind.
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    try:
        yield building
        if target.exists():
            target.rmdir()
        os.replace(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    fsync_directory(target.parent)
