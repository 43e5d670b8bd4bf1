"""Reads the user profiles from the JSON file the generator writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trading_orders.application.errors import ProfileUnavailable
from trading_orders.domain.profile import InvalidProfile, Profile


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its key/value pairs in file order, duplicates kept."""


def _unique(pairs: _Pairs, what: str, where: str) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys without a word; in a profile
    # that silently drops a user or a strategy, so it is an error here.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidProfile(f"{where}{what} {key!r} is listed twice")
        result[key] = value
    return result


def _as_profile_mapping(data: object) -> dict[str, Any]:
    if not isinstance(data, _Pairs):
        raise InvalidProfile(f"expected an object {{user: {{strategy: [instruments]}}}}, found {type(data).__name__}")
    users = _unique(data, "user", "")
    for user, strategies in users.items():
        if isinstance(strategies, _Pairs):
            users[user] = _unique(strategies, "strategy", f"user {user!r}: ")
    if not users:
        raise InvalidProfile("no users")
    return users


class JsonProfileSource:
    """The profile in a JSON file of the form {user: {strategy: [instruments]}}."""

    def __init__(self, path: Path) -> None:
        """Read from ``path`` on every load()."""
        self._path = path

    def load(self) -> Profile:
        """The profile in the file; raises ProfileUnavailable naming the file and the problem."""
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            raise ProfileUnavailable(
                f"profile file {self._path} does not exist: run Scripts/Generate_User_Profile.py to create it",
                "the profile file does not exist",
            ) from None
        except OSError as error:
            raise ProfileUnavailable(
                f"profile file {self._path} cannot be read: {error.strerror}", "the profile file cannot be read"
            ) from error
        try:
            data = json.loads(raw, object_pairs_hook=_Pairs)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ProfileUnavailable(
                f"profile file {self._path} is not valid JSON: {error}", f"the profile file is not valid JSON: {error}"
            ) from None
        try:
            return Profile(_as_profile_mapping(data))
        except InvalidProfile as error:
            raise ProfileUnavailable(f"profile file {self._path}: {error}", f"the profile file: {error}") from None
