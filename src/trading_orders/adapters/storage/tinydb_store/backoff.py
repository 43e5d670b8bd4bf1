"""How long the store waits before trying again what failed: a rebuild, a restarted thread."""

from __future__ import annotations

from dataclasses import dataclass

# Beyond this many doublings every pause is the longest one anyway.
_DOUBLINGS = 32


@dataclass(frozen=True, slots=True)
class Backoff:
    """Pauses that start at ``first`` seconds and double after each failure in a row, up to ``longest``."""

    first: float = 0.1
    longest: float = 5.0

    def __post_init__(self) -> None:
        """Refuse pauses that would spin or never end."""
        if not 0 < self.first <= self.longest:
            raise ValueError(f"need 0 < first <= longest, got first={self.first}, longest={self.longest}")

    def pause(self, failures: int) -> float:
        """The pause before the next try after ``failures`` failures in a row (1 after the first)."""
        doublings = min(max(failures - 1, 0), _DOUBLINGS)
        return min(self.first * float(2**doublings), self.longest)
