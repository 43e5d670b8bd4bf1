"""Order ids from random UUIDs."""

from __future__ import annotations

import uuid


class RandomOrderIds:
    """Opaque ids with 122 random bits: unique without coordination, across restarts and hosts."""

    def next_id(self) -> str:
        """A new order id."""
        return uuid.uuid4().hex
