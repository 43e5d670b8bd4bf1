"""Where `import` builds a store: a TinyDB import in a directory of its own, renamed into place only once complete."""

from pathlib import Path

import pytest

from trading_orders.adapters.storage.tinydb_store.import_directory import import_directory
from trading_orders.bootstrap import build_container
from trading_orders.settings import Settings


def test_a_completed_import_is_renamed_into_place_and_the_leftover_of_a_killed_one_is_cleared(tmp_path: Path) -> None:
    target = tmp_path / "desk"
    (tmp_path / ".desk.importing").mkdir()
    (tmp_path / ".desk.importing" / "order_log.jsonl").write_text("half of an earlier import\n")
    with import_directory(target) as building:
        assert building != target and not target.exists()
        assert list(building.iterdir()) == []
        (building / "order_log.jsonl").write_text("imported\n")
    assert (target / "order_log.jsonl").read_text() == "imported\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["desk"]


def test_an_empty_target_directory_is_replaced_by_the_import(tmp_path: Path) -> None:
    target = tmp_path / "desk"
    target.mkdir()
    with import_directory(target) as building:
        (building / "positions.json").write_text("{}")
    assert [p.name for p in target.iterdir()] == ["positions.json"]


def test_a_failed_import_leaves_no_directory_behind(tmp_path: Path) -> None:
    target = tmp_path / "desk"
    with pytest.raises(ValueError, match="line 3"), import_directory(target) as building:
        (building / "order_log.jsonl").write_text("two lines in\n")
        raise ValueError("line 3 does not fit")
    assert list(tmp_path.iterdir()) == []


def test_a_directory_that_holds_anything_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "desk"
    target.mkdir()
    (target / "order_log.jsonl").write_text("the live desk\n")
    refused = pytest.raises(FileExistsError, match="is not empty: import only into a new data directory")
    with refused, import_directory(target):
        pytest.fail("the import must not start")
    assert (target / "order_log.jsonl").read_text() == "the live desk\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["desk"]


@pytest.mark.parametrize(("store", "built_aside"), [("tinydb", True), ("sqlite", False)])
def test_the_container_says_where_each_store_takes_an_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str, built_aside: bool
) -> None:
    monkeypatch.setenv("TRADING_ORDERS_STORE", store)
    monkeypatch.setenv("TRADING_ORDERS_DATA_DIR", str(tmp_path / "desk"))
    container = build_container(Settings.from_environment(tmp_path))
    with container.import_destination() as data_dir:
        assert (data_dir != tmp_path / "desk") is built_aside
