"""The wall clock, in UTC."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    """Reads the machine's clock."""

    def now(self) -> datetime:
        """The current time in UTC."""
        return datetime.now(UTC)
