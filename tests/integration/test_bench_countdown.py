"""The benchmark's progress display: which step runs, and a time left that learns the machine's pace."""

import io

from tests.bench.countdown import Countdown, minutes_and_seconds


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_minutes_and_seconds_round_up() -> None:
    assert [minutes_and_seconds(s) for s in (0, 0.2, 59.5, 60, 125)] == ["0:00", "0:01", "1:00", "1:00", "2:05"]


def test_off_a_terminal_each_step_is_a_plain_line_and_the_estimate_follows_the_machines_pace() -> None:
    stream, clock = io.StringIO(), Clock()
    countdown = Countdown(100.0, stream, clock, in_place=False)
    countdown.step("no-op ceiling", 20.0)
    clock.now += 40.0  # the first 20 planned seconds took 40: the machine is slower than planned
    countdown.step("tinydb", 80.0)
    clock.now += 80.0
    countdown.finish()
    lines = stream.getvalue().splitlines()
    assert lines == [
        "bench 0:00 elapsed, about 1:40 left: no-op ceiling",
        # 80 planned seconds left at a pace of (40 + 20) / (20 + 20), the prior damping one step's evidence.
        "bench 0:40 elapsed, about 2:00 left: tinydb",
        "bench done in 2:00",
    ]


def test_on_a_terminal_the_line_is_rewritten_in_place_and_cleared_at_the_end() -> None:
    stream, clock = io.StringIO(), Clock()
    countdown = Countdown(10.0, stream, clock, in_place=True)
    countdown.step("domain core", 10.0)
    clock.now += 4.0
    assert countdown.left() == 6.0
    countdown.finish()
    assert stream.getvalue().startswith("\rbench 0:00 elapsed, about 0:10 left: domain core\x1b[K")
    assert stream.getvalue().endswith("\r\x1b[Kbench done in 0:04\n")
    assert "\n" not in stream.getvalue()[:-1]
