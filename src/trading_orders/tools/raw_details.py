"""Reads Jsons/raw_details.json: the names of users, strategies and instruments to draw from."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


class RawDetailsError(ValueError):
    """The raw details file is missing or malformed; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class RawDetails:
    """The pools the generator and the producer draw from."""

    users: tuple[str, ...]
    strategies: tuple[str, ...]
    instruments: tuple[str, ...]

    @classmethod
    def load(cls, path: Path) -> RawDetails:
        """Read ``path``: {"USERS": [...], "STRATEGIES": [...], "INSTRUMENTS": [...]}."""
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise RawDetailsError(f"{path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RawDetailsError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise RawDetailsError(f"{path}: expected an object with USERS, STRATEGIES and INSTRUMENTS")
        pools = []
        for field in ("USERS", "STRATEGIES", "INSTRUMENTS"):
            names = data.get(field)
            if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
                raise RawDetailsError(f"{path}: {field} must be a non-empty list of names")
            # The brief's own file lists one user twice and its generator copes: so do we.
            for name, count in Counter(names).items():
                if count > 1:
                    logger.warning("%s: %s lists %r more than once; the first is kept", path, field, name)
            pools.append(tuple(dict.fromkeys(names)))
        return cls(*pools)


def show_warnings_on_stderr() -> None:
    """Let a tool's WARNING lines (a repeated name in the raw details) reach stderr with their level."""
    # A no-op where logging is already set up (the service, a test run).
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
