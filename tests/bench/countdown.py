"""A benchmark's progress on stderr: the step it is on and an estimate of the time left.

On a terminal it is one line rewritten in place every second; elsewhere (a pipe,
a log file, CI) one plain line per step, so a log shows what ran and when.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TextIO

# Rewrites the line on a terminal at this interval, so the time left counts down between steps.
TICK_SECONDS = 1.0
# The plan's own seconds counted as done at its pace before any step ends: one short
# step that ran fast or slow moves the estimate only a little.
PRIOR_SECONDS = 20.0


def minutes_and_seconds(seconds: float) -> str:
    """``seconds`` as m:ss, rounded up to the next whole second."""
    whole = max(0, int(-(-seconds // 1)))
    return f"{whole // 60}:{whole % 60:02d}"


class Countdown:
    """The planned steps of a run, each with its expected seconds; reports which one runs and the time left.

    The time left is what the plan has not done yet, scaled by how the steps
    done so far compared with their plan: a slower machine lengthens the
    estimate as the steps end.
    """

    def __init__(
        self,
        planned_seconds: float,
        stream: TextIO,
        clock: Callable[[], float] = time.monotonic,
        in_place: bool | None = None,
    ) -> None:
        self._planned = planned_seconds
        self._stream = stream
        self._clock = clock
        self._in_place = stream.isatty() if in_place is None else in_place
        self._started = clock()
        self._done_planned = 0.0
        self._step_started = self._started
        self._step_planned = 0.0
        self._label = ""
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._ticker: threading.Thread | None = None

    def left(self) -> float:
        """Estimated seconds until the last planned step ends."""
        now = self._clock()
        ahead = max(0.0, self._planned - self._done_planned - self._step_planned)
        in_step = max(0.0, self._step_planned - (now - self._step_started))
        spent = self._step_started - self._started
        pace = (spent + PRIOR_SECONDS) / (self._done_planned + PRIOR_SECONDS)
        return (ahead + in_step) * pace

    def line(self) -> str:
        """What the display shows now: elapsed, the step, and the time left."""
        elapsed = minutes_and_seconds(self._clock() - self._started)
        return f"bench {elapsed} elapsed, about {minutes_and_seconds(self.left())} left: {self._label}"

    def step(self, label: str, planned_seconds: float) -> None:
        """Begin the step ``label``, expected to take ``planned_seconds``; ends the step before it."""
        with self._lock:
            now = self._clock()
            self._done_planned += self._step_planned
            self._step_started = now
            self._step_planned = planned_seconds
            self._label = label
            self._show()
        if self._in_place and self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="countdown", daemon=True)
            self._ticker.start()

    def finish(self) -> None:
        """End the display: on a terminal clear the line, elsewhere say how long it took."""
        self._stopped.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            took = minutes_and_seconds(self._clock() - self._started)
            if self._in_place:
                self._stream.write("\r\x1b[K")
            self._stream.write(f"bench done in {took}\n")
            self._stream.flush()

    def _show(self) -> None:
        if self._in_place:
            # \x1b[K clears what a longer line before it left on the right.
            self._stream.write(f"\r{self.line()}\x1b[K")
        else:
            self._stream.write(f"{self.line()}\n")
        self._stream.flush()

    def _tick(self) -> None:
        while not self._stopped.wait(TICK_SECONDS):
            with self._lock:
                self._show()
