"""The command line's tables: they fit the width by wrapping text and dropping columns, never by cutting a value."""

from hypothesis import given
from hypothesis import strategies as st

from trading_orders.tools.text_table import Column, table_lines

STAMP = "2026-12-04T19:03:26.123456Z"
ORDER_ID = "5f0c6a8e2d9b4c1f8a7e3b2d1c0f9e8a"
COLUMNS = (
    Column("user", wraps=True),
    Column("strategy", wraps=True),
    Column("order_id"),
    Column("opened_at"),
    Column("notes", wraps=True),
)
ROWS = [["Priya Raghunathan", "STRATEGY_B", ORDER_ID, STAMP, "INSTRUMENT_NOT_IN_STRATEGY for two users"]]


def test_a_table_that_fits_is_one_line_a_row_with_every_column() -> None:
    lines = table_lines("positions (1)", COLUMNS, ROWS, 200)
    assert lines[0] == "positions (1)"
    assert lines[1].split() == ["user", "strategy", "order_id", "opened_at", "notes"]
    assert lines[3] == "  ".join(
        ["Priya Raghunathan", "STRATEGY_B", ORDER_ID, STAMP, "INSTRUMENT_NOT_IN_STRATEGY for two users"]
    )
    assert len(lines) == 4


def test_at_80_columns_text_wraps_at_spaces_and_values_stay_whole() -> None:
    lines = table_lines("t", COLUMNS, ROWS, 80, drop_first=("order_id",))
    assert all(len(line) <= 80 for line in lines), lines
    text = "\n".join(lines)
    assert STAMP in text and "INSTRUMENT_NOT_IN_STRATEGY" in text and "…" not in text
    assert ORDER_ID not in text
    assert lines[-1] == "(not shown at 80 columns: order_id; --json gives every field)"
    # The name and the notes wrapped onto a second line, each under its own column.
    assert lines[3].split()[:2] == ["Priya", "STRATEGY_B"]
    assert lines[4].split() == ["Raghunathan", "for", "two", "users"]
    assert lines[4].index("for") == lines[1].index("notes")


def test_columns_are_dropped_in_the_order_given_only_as_far_as_needed() -> None:
    lines = table_lines("t", COLUMNS, ROWS, 70, drop_first=("order_id", "opened_at", "strategy"))
    assert lines[1].split() == ["user", "strategy", "notes"]
    assert "not shown at 70 columns: order_id, opened_at;" in " ".join(lines[-2:])


def test_a_value_wider_than_the_width_is_printed_whole_not_cut() -> None:
    lines = table_lines("t", [Column("opened_at")], [[STAMP]], 10)
    assert lines[3] == STAMP


def test_the_note_of_dropped_columns_wraps_to_the_width() -> None:
    lines = table_lines("t", COLUMNS, ROWS, 40, drop_first=("order_id", "opened_at", "notes"))
    note = " ".join(line for line in lines if not line.startswith(("t", "user", "-", "Priya", " ")))
    assert note.startswith("(not shown at 40 columns: order_id, opened_at, notes")
    assert all(len(line) <= 40 for line in lines), lines


def test_no_rows_still_shows_the_headers() -> None:
    assert table_lines("trades (0)", [Column("user"), Column("sold_at")], [], 80) == [
        "trades (0)",
        "user  sold_at",
        "----  -------",
    ]


WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789-:.", min_size=1, max_size=30)


@given(
    rows=st.lists(st.tuples(st.lists(WORD, min_size=1, max_size=6).map(" ".join), WORD, WORD), max_size=5),
    width=st.integers(min_value=20, max_value=160),
)
def test_whole_values_are_never_cut_and_lines_fit_when_the_kept_columns_can(
    rows: list[tuple[str, str, str]], width: int
) -> None:
    columns = (Column("text", wraps=True), Column("stamp"), Column("identifier"))
    lines = table_lines("t", columns, [list(row) for row in rows], width, drop_first=("identifier",))
    kept = lines[1].split()
    for _, stamp, identifier in rows:
        assert any(stamp in line.split() for line in lines[3:])
        if "identifier" in kept:
            assert any(identifier in line.split() for line in lines[3:])
    longest_word = max([len(word) for text, _, _ in rows for word in text.split()] + [len("text")])
    stamps = max([len(stamp) for _, stamp, _ in rows] + [len("stamp")])
    if longest_word + 2 + stamps <= width:
        assert all(len(line) <= width for line in lines), lines
