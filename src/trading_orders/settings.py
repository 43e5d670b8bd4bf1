"""The service's configuration, read from TRADING_ORDERS_* environment variables and checked once."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from trading_orders.adapters.storage.sql.writer import LOCK_WAIT_SECONDS
from trading_orders.application.decision_feed import DEFAULT_BUFFER, DEFAULT_MAX_FOLLOWERS, DEFAULT_POLL_SECONDS
from trading_orders.application.errors import StartupError
from trading_orders.application.order_history import SCAN_BUDGET
from trading_orders.ascii_case import ASCII_SPACE, ascii_lower, ascii_upper
from trading_orders.domain.model import PositionScope

ENV_PREFIX = "TRADING_ORDERS_"
StoreName = Literal["tinydb", "memory", "sqlite", "postgres"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["text", "json"]


class ConfigurationError(StartupError):
    """A setting has a value the service does not accept; the message lists the allowed ones."""


def _under_project(*parts: str) -> Any:
    """A path default under the ``project_root`` the settings were given."""
    return Field(default_factory=lambda given: Path(given["project_root"], *parts))


class Settings(BaseSettings):
    """Everything the container needs to build the service; each field is variable TRADING_ORDERS_<NAME>."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # Given by the program, not the environment: the folder the path defaults are
    # under, whichever directory the service is started from.
    project_root: Path
    data_dir: Path = _under_project("Jsons")
    profile_path: Path = _under_project("Jsons", "user_profile.json")
    log_dir: Path = _under_project("Logs")
    store: StoreName = "tinydb"
    position_scope: PositionScope = PositionScope.STRATEGY
    log_level: LogLevel = "INFO"
    # "json": one JSON object per log line, for log shippers.
    log_format: LogFormat = "text"
    # Kept out of repr so they never land in a log line or a traceback.
    api_key: str | None = Field(default=None, repr=False)
    database_url: str | None = Field(default=None, repr=False)
    # The TinyDB store snapshots positions every so many orders or seconds.
    snapshot_every_orders: int = Field(default=10_000, ge=1)
    snapshot_every_seconds: float = Field(default=10.0, gt=0)
    # How many log entries one read of the history may read (see order_history.SCAN_BUDGET).
    read_scan_budget: int = Field(default=SCAN_BUDGET, ge=1)
    # How often GET /events looks for new orders in the log, and how many
    # may wait for one follower before it is cut off (application.decision_feed).
    events_poll_seconds: float = Field(default=DEFAULT_POLL_SECONDS, gt=0, le=60)
    events_buffer: int = Field(default=DEFAULT_BUFFER, ge=1, le=1_000_000)
    # How long an order of a SQL store waits for what another process holds
    # (a lock, a connection) before it is refused 503 and not recorded.
    lock_wait_seconds: float = Field(default=LOCK_WAIT_SECONDS, gt=0, le=600)
    # How many GET /events streams one process serves at once (the desk's included):
    # each holds a file descriptor, and orders and /health need some too.
    events_max_followers: int = Field(default=DEFAULT_MAX_FOLLOWERS, ge=1, le=100_000)
    # With an API key: how many wrong keys one client address may send within the
    # window before its wrong keys are answered 429 (adapters/http/wrong_keys.py).
    wrong_key_limit: int = Field(default=10, ge=1, le=1_000_000)
    wrong_key_window_seconds: float = Field(default=60.0, gt=0, le=86_400)

    @field_validator("store", "position_scope", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return ascii_lower(value.strip(ASCII_SPACE)) if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return ascii_upper(value.strip(ASCII_SPACE)) if isinstance(value, str) else value

    @field_validator("api_key", "database_url")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _postgres_needs_a_database(self) -> Settings:
        # Raised as itself, not as a ValidationError: it names two variables, not one value.
        if self.store == "postgres" and self.database_url is None:
            raise ConfigurationError(
                f"{ENV_PREFIX}STORE=postgres needs {ENV_PREFIX}DATABASE_URL, "
                "e.g. postgresql://user:password@127.0.0.1:5432/trading_orders"
            )
        return self

    @classmethod
    def from_environment(cls, project_root: Path) -> Settings:
        """Read the environment; unset paths default to Jsons/ and Logs/ under ``project_root``."""
        try:
            return cls(project_root=project_root)
        except ValidationError as error:
            names = [f"{ENV_PREFIX}{str(e['loc'][0]).upper()}" for e in error.errors()]
            # Quote the value as it was typed, not as the validators normalized it.
            problems = "; ".join(
                f"{name}={os.environ.get(name, e['input'])!r}: {e['msg']}"
                for name, e in zip(names, error.errors(), strict=True)
            )
            raise ConfigurationError(f"invalid configuration: {problems}") from None


def unknown_variables(environment: Mapping[str, str]) -> list[str]:
    """One line for each TRADING_ORDERS_* variable of ``environment`` that is no setting, naming the closest one."""
    # Settings are read in any letter case; a name no setting has is silently
    # ignored by pydantic-settings, so a typo would quietly leave the default.
    settings = [ascii_upper(name) for name in Settings.model_fields if name != "project_root"]
    lines = []
    for name in sorted(environment):
        upper = ascii_upper(name)
        if not upper.startswith(ENV_PREFIX) or upper.removeprefix(ENV_PREFIX) in settings:
            continue
        # Matched without the prefix, which every name shares and would make any two look alike.
        closest = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), settings, n=1)
        hint = f"did you mean {ENV_PREFIX}{closest[0]}?" if closest else "the settings are in docs/configuration.md"
        lines.append(f"{name} is not a setting and is ignored; {hint}")
    return lines
