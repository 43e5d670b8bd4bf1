"""Reads Jsons/raw_details.json: the names of users, strategies and instruments to draw from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


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
            if len(set(names)) != len(names):
                raise RawDetailsError(f"{path}: {field} lists a name more than once")
            pools.append(tuple(names))
        return cls(*pools)
