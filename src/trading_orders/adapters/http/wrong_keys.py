"""How many wrong API keys each client address may send before its wrong keys are answered 429.

A key is checked first, so the right key always passes, from any address:
a desk behind the same address as a guesser is never locked out. What is
counted is wrong keys only (a missing key is no guess), per address, in a
fixed window that starts at the address's first wrong key. Past the limit,
its wrong keys are answered 429 with Retry-After until the window ends. The
table of addresses is bounded: past ``max_addresses`` the address whose
window started first is forgotten, so many addresses cannot grow it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

logger = logging.getLogger(__name__)

# Addresses remembered at once: about 100 bytes each, so about a megabyte.
DEFAULT_MAX_ADDRESSES = 10_000


class _Window:
    """One address's wrong keys since ``started``."""

    __slots__ = ("count", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.count = 0


class WrongKeyLimit:
    """Counts wrong API keys per client address and says when one more is past the limit."""

    def __init__(
        self,
        limit: int,
        window_seconds: float,
        max_addresses: int = DEFAULT_MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Allow ``limit`` wrong keys per address in ``window_seconds``; remember ``max_addresses``; ``clock`` in s."""
        if limit < 1 or window_seconds <= 0 or max_addresses < 1:
            raise ValueError(
                f"limit and max_addresses must be at least 1 and window_seconds above 0, "
                f"got {limit}, {max_addresses} and {window_seconds}"
            )
        self._limit = limit
        self._window_seconds = window_seconds
        self._max_addresses = max_addresses
        self._clock = clock
        # Oldest window first: what is forgotten first has expired first.
        self._windows: OrderedDict[str, _Window] = OrderedDict()
        # The desk's session route runs on the thread pool, the key guard on the event loop.
        self._lock = threading.Lock()

    def wrong_key(self, address: str) -> int | None:
        """Count a wrong key from ``address``: None to answer it 401, or the seconds it waits (429) past the limit."""
        now = self._clock()
        with self._lock:
            self._forget_expired(now)
            window = self._windows.get(address)
            if window is None:
                window = self._windows[address] = _Window(now)
                if len(self._windows) > self._max_addresses:
                    self._windows.popitem(last=False)
            window.count += 1
            if window.count <= self._limit:
                return None
            wait = max(1, math.ceil(window.started + self._window_seconds - now))
        if window.count == self._limit + 1:
            # Once per window, not once per guess: a flood of guesses is not a flood of log lines.
            logger.warning(
                "%s sent more than %d wrong API keys within %g s: its wrong keys are answered 429 for %d s",
                address,
                self._limit,
                self._window_seconds,
                wait,
            )
        return wait

    def _forget_expired(self, now: float) -> None:
        while self._windows:
            oldest = next(iter(self._windows.values()))
            if now - oldest.started < self._window_seconds:
                return
            self._windows.popitem(last=False)

    def __len__(self) -> int:
        """How many addresses are remembered."""
        with self._lock:
            return len(self._windows)
