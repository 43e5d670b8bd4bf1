"""What a log line may hold: every non-printable character escaped visibly, the backslash too, one line per record."""

import logging
import re
import sys

import pytest

from trading_orders.adapters.log_files import OneLineFormatter, escape_for_log


@pytest.mark.parametrize(
    ("text", "logged"),
    [
        ("GET /x\n2026-11-26T00:00:00.000Z INFO", "GET /x\\n2026-11-26T00:00:00.000Z INFO"),
        ("a\rb", "a\\rb"),
        ("a\r\nb", "a\\r\\nb"),
        ("a\tb", "a\\tb"),
        ("\x1b[2K\rforged", "\\x1b[2K\\rforged"),
        ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
        ("a\x85b", "a\\x85b"),  # NEL, the C1 next line
        ("\x00\x07\x7f\x9f", "\\x00\\x07\\x7f\\x9f"),
        ("a\u200bb\u202ec", "a\\u200bb\\u202ec"),  # zero-width space, right-to-left override
        ("\U000e0041", "\\U000e0041"),  # a tag character, outside the BMP
        ("C:\\new", "C:\\\\new"),  # a backslash and an n, not a line feed
        ("\\n", "\\\\n"),
        ("Holland Proctor bought GRASIM", "Holland Proctor bought GRASIM"),
        ("é ü 日本 ²", "é ü 日本 ²"),  # printable non-ASCII stays as it is
        ("", ""),
    ],
)
def test_escape_for_log_writes_every_non_printable_character_visibly(text: str, logged: str) -> None:
    assert escape_for_log(text) == logged


@pytest.mark.parametrize("character", ["\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"])
def test_nothing_escaped_holds_a_line_break_of_any_kind(character: str) -> None:
    # These are every character str.splitlines() breaks on.
    assert escape_for_log(f"a{character}b").splitlines() == [escape_for_log(f"a{character}b")]


def test_the_escaping_reads_back_one_way_only() -> None:
    # A line feed and the two characters "\n" a client typed must not log alike.
    assert escape_for_log("\n") != escape_for_log("\\n")
    assert escape_for_log("\\x1b") != escape_for_log("\x1b")


def test_a_record_with_its_traceback_is_one_line_starting_with_the_time() -> None:
    formatter = OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        raise ValueError("bad\n2026-11-26T00:00:00.000Z INFO forged")
    except ValueError:
        record = logging.LogRecord(
            "trading_orders.test", logging.ERROR, __file__, 1, "GET %s failed", ("/x\n",), sys.exc_info()
        )
    line = formatter.format(record)
    assert "\n" not in line
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ERROR trading_orders.test: GET /x\\n failed\\n", line)
    assert line.endswith("ValueError: bad\\n2026-11-26T00:00:00.000Z INFO forged")
