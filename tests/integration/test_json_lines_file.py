"""The append-only JSON-lines file under both logs: reading backwards across blocks, checks, undo."""

from pathlib import Path
from typing import Any

import pytest

from trading_orders.adapters.storage.tinydb_store import json_lines
from trading_orders.adapters.storage.tinydb_store.json_lines import JsonLinesFile
from trading_orders.application.errors import CorruptStore


def rising(offset: int, record: dict[str, Any], previous: int) -> int:
    if record["sequence"] <= previous:
        raise ValueError(f"sequence {record['sequence']} after {previous}")
    sequence: int = record["sequence"]
    return sequence


@pytest.mark.parametrize("block", [7, 64, 4096])
def test_backward_yields_every_line_newest_first_whatever_the_block_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    monkeypatch.setattr(json_lines, "_BLOCK", block)
    lines = JsonLinesFile(tmp_path / "f.jsonl", rising, "record")
    offsets = [lines.append({"sequence": n, "pad": "x" * (n % 13) * 10}, n) for n in range(1, 60)]
    backward = list(lines.backward())
    assert [record["sequence"] for _, record in backward] == list(range(59, 0, -1))
    assert [offset for offset, _ in backward] == offsets[::-1]
    # Starting before a line's offset continues with the line before it.
    assert [r["sequence"] for _, r in lines.backward(before=offsets[10])][:3] == [10, 9, 8]
    assert [r["sequence"] for _, r in lines.forward()] == list(range(1, 60))
    assert lines.read_at(offsets[41])["sequence"] == 42
    lines.close()


def test_a_cursor_outside_the_file_is_refused(tmp_path: Path) -> None:
    lines = JsonLinesFile(tmp_path / "f.jsonl", rising, "record")
    lines.append({"sequence": 1}, 1)
    with pytest.raises(ValueError, match="outside"):
        list(lines.backward(before=10_000))
    lines.close()


def test_a_line_that_is_not_an_object_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "f.jsonl").write_bytes(b'{"sequence": 1}\n[1, 2]\n{"sequence": 3}\n')
    lines = JsonLinesFile(tmp_path / "f.jsonl", rising, "record")
    assert lines.last_sequence == 3, "opening reads only the last line"
    with pytest.raises(CorruptStore, match=r"line 2 \(byte 16\) is not a valid record \(expected a JSON object"):
        lines.check()
    with pytest.raises(CorruptStore, match=r"the line at byte 16 is not a valid record"):
        lines.check(16, 1)
    lines.close()


def test_a_bad_last_line_is_refused_at_open_naming_its_byte(tmp_path: Path) -> None:
    (tmp_path / "f.jsonl").write_bytes(b'{"sequence": 1}\n{"no": "sequence"}\n')
    with pytest.raises(CorruptStore, match=r"the last line \(byte 16\) is not a valid record"):
        JsonLinesFile(tmp_path / "f.jsonl", rising, "record")


def test_written_lines_are_visible_to_readers_once_synced(tmp_path: Path) -> None:
    lines = JsonLinesFile(tmp_path / "f.jsonl", rising, "record")
    lines.append({"sequence": 1}, 1)
    lines.write({"sequence": 2}, 2)
    assert (lines.last_sequence, lines.durable_sequence) == (2, 1)
    assert [r["sequence"] for _, r in lines.backward()] == [1], "readers see durable lines only"
    assert lines.sync() == 2
    assert [r["sequence"] for _, r in lines.backward()] == [2, 1]
    lines.close()
