"""The service's configuration, read from TRADING_ORDERS_* environment variables and checked once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from trading_orders.application.decision_feed import DEFAULT_BUFFER, DEFAULT_POLL_SECONDS
from trading_orders.application.errors import StartupError
from trading_orders.application.order_history import SCAN_BUDGET
from trading_orders.domain.model import PositionScope

ENV_PREFIX = "TRADING_ORDERS_"
StoreName = Literal["tinydb", "memory", "sqlite", "postgres"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["text", "json"]


class ConfigurationError(StartupError):
    """A setting has a value the service does not accept; the message lists the allowed ones."""


class _Environment(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    data_dir: Path | None = None
    profile_path: Path | None = None
    log_dir: Path | None = None
    store: StoreName = "tinydb"
    position_scope: PositionScope = PositionScope.STRATEGY
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "text"
    api_key: SecretStr | None = None
    database_url: SecretStr | None = None
    snapshot_every_orders: int = Field(default=10_000, ge=1)
    snapshot_every_seconds: float = Field(default=10.0, gt=0)
    read_scan_budget: int = Field(default=SCAN_BUDGET, ge=1)
    events_poll_seconds: float = Field(default=DEFAULT_POLL_SECONDS, gt=0, le=60)
    events_buffer: int = Field(default=DEFAULT_BUFFER, ge=1, le=1_000_000)

    @field_validator("store", "position_scope", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the container needs to build the service."""

    data_dir: Path
    profile_path: Path
    log_dir: Path
    store: StoreName
    position_scope: PositionScope
    log_level: LogLevel
    # Kept out of repr so they never land in a log line or a traceback.
    api_key: str | None = field(default=None, repr=False)
    database_url: str | None = field(default=None, repr=False)
    # The TinyDB store snapshots positions every so many orders or seconds.
    snapshot_every_orders: int = 10_000
    snapshot_every_seconds: float = 10.0
    # How many log entries one read of the history may read (see order_history.SCAN_BUDGET).
    read_scan_budget: int = SCAN_BUDGET
    # How often GET /events looks for new orders in the log, and how many
    # may wait for one follower before it is cut off (application.decision_feed).
    events_poll_seconds: float = DEFAULT_POLL_SECONDS
    events_buffer: int = DEFAULT_BUFFER
    # "json": one JSON object per log line, for log shippers.
    log_format: LogFormat = "text"

    @classmethod
    def from_environment(cls, project_root: Path) -> Settings:
        """Read the environment; unset paths default to Jsons/ and Logs/ under ``project_root``."""
        try:
            env = _Environment()
        except ValidationError as error:
            names = [f"{ENV_PREFIX}{str(e['loc'][0]).upper()}" for e in error.errors()]
            # Quote the value as it was typed, not as the validators normalized it.
            problems = "; ".join(
                f"{name}={os.environ.get(name, e['input'])!r}: {e['msg']}"
                for name, e in zip(names, error.errors(), strict=True)
            )
            raise ConfigurationError(f"invalid configuration: {problems}") from None
        database_url = env.database_url.get_secret_value() or None if env.database_url else None
        if env.store == "postgres" and database_url is None:
            raise ConfigurationError(
                f"{ENV_PREFIX}STORE=postgres needs {ENV_PREFIX}DATABASE_URL, "
                "e.g. postgresql://user:password@127.0.0.1:5432/trading_orders"
            )
        data_dir = env.data_dir or project_root / "Jsons"
        return cls(
            data_dir=data_dir,
            profile_path=env.profile_path or project_root / "Jsons" / "user_profile.json",
            log_dir=env.log_dir or project_root / "Logs",
            store=env.store,
            position_scope=env.position_scope,
            log_level=env.log_level,
            api_key=env.api_key.get_secret_value() or None if env.api_key else None,
            database_url=database_url,
            snapshot_every_orders=env.snapshot_every_orders,
            snapshot_every_seconds=env.snapshot_every_seconds,
            read_scan_budget=env.read_scan_budget,
            events_poll_seconds=env.events_poll_seconds,
            events_buffer=env.events_buffer,
            log_format=env.log_format,
        )
