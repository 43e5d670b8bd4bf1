"""The count of wrong API keys per client address, on a clock the test moves."""

import logging

import pytest

from trading_orders.adapters.http.wrong_keys import WrongKeyLimit


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_wrong_keys_past_the_limit_wait_until_the_window_ends(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limit = WrongKeyLimit(limit=3, window_seconds=60, clock=clock)
    assert [limit.wrong_key("10.0.0.1") for _ in range(3)] == [None, None, None]
    clock.now += 20
    assert limit.wrong_key("10.0.0.1") == 40
    clock.now += 39.5
    assert limit.wrong_key("10.0.0.1") == 1, "a wait is whole seconds, at least one"
    assert limit.wrong_key("10.0.0.2") is None, "each address has its own count"
    clock.now += 0.5
    assert limit.wrong_key("10.0.0.1") is None, "a new window starts with the first wrong key after the last"
    refusals = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert refusals == [
        "10.0.0.1 sent more than 3 wrong API keys within 60 s: its wrong keys are answered 429 for 40 s"
    ], "said once per window, not once per guess"


def test_many_addresses_cannot_grow_the_table_past_its_bound() -> None:
    clock = Clock()
    limit = WrongKeyLimit(limit=1, window_seconds=60, max_addresses=100, clock=clock)
    for n in range(10_000):
        limit.wrong_key(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
    assert len(limit) == 100
    clock.now += 60
    limit.wrong_key("192.0.2.1")
    assert len(limit) == 1, "expired windows are forgotten"


def test_a_limit_that_could_never_allow_anything_is_refused() -> None:
    with pytest.raises(ValueError, match="limit and max_addresses must be at least 1"):
        WrongKeyLimit(limit=0, window_seconds=60)
