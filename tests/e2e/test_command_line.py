"""The trading-orders command line as a real subprocess, against a real service where it needs one."""

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import ServiceFactory
from tests.support.service_process import free_port

COLUMN_NAMES = {
    "positions": ("user", "strategy", "instrument", "order_id", "opened_at"),
    "orders": ("sequence", "received_at", "strategy", "instrument", "position", "RESPONSE", "decisions"),
    "trades": ("user", "strategy", "instrument", "bought_at", "sold_at", "holding_seconds"),
}
PROFILE = {"U1": {"S1": ["ACC", "INFY"]}, "U2": {"S1": ["ACC"]}}


def cli(
    *args: str, cwd: Path | None = None, settings: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    variables = {f"TRADING_ORDERS_{name.upper()}": value for name, value in (settings or {}).items()}
    return subprocess.run(
        [sys.executable, "-m", "trading_orders", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **variables},
    )


def place(base_url: str, instrument: str, side: str) -> None:
    body = {"STRATEGY": "S1", "INSTRUMENT": instrument, "POSITION": side}
    requests.post(f"{base_url}/create_order", json=body, timeout=5).raise_for_status()


def test_positions_orders_and_trades_print_tables_or_json(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        for instrument, side in [("ACC", "BUY"), ("INFY", "BUY"), ("ACC", "SELL")]:
            place(service.base_url, instrument, side)
        positions = cli("positions", "--url", service.base_url, "--json")
        assert positions.returncode == 0, positions.stderr
        assert [json.loads(line)["instrument"] for line in positions.stdout.splitlines()] == ["INFY"]
        orders = cli("orders", "--url", service.base_url, "--json", "--limit", "2")
        assert [json.loads(line)["sequence"] for line in orders.stdout.splitlines()] == [3, 2]
        table = cli("trades", "--url", service.base_url, "--user", "U2")
        assert table.returncode == 0 and "trades (1)" in table.stdout and "U2" in table.stdout
        rejected = cli("orders", "--url", service.base_url, "--status", "REJECTED")
        assert "orders (0)" in rejected.stdout


# Runs one command in this interpreter, then prints, last, the web frameworks and the command-line
# toolkits it imported.
IMPORTED_FRAMEWORKS = """
import json, sys
from trading_orders.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exit:
    status = exit.code
frameworks = ("fastapi", "starlette", "uvicorn", "pydantic", "pydantic_settings", "dependency_injector")
toolkits = ("click", "rich", "pygments")
loaded = {name.split(".")[0] for name in sys.modules}
imported, toolkits = sorted(loaded & set(frameworks)), sorted(loaded & set(toolkits))
print(json.dumps({"status": status, "imported": imported, "toolkits": toolkits}))
"""


def imports_of(*arguments: str) -> tuple[str, dict[str, Any]]:
    """What the command printed, and its exit status and the web frameworks and toolkits it imported."""
    run = subprocess.run(
        [sys.executable, "-c", IMPORTED_FRAMEWORKS, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    *printed, last = run.stdout.splitlines()
    return "\n".join(printed), json.loads(last)


def test_the_commands_that_talk_to_a_service_import_no_web_framework(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    with service_factory(PROFILE) as service:
        place(service.base_url, "ACC", "BUY")
        url = service.base_url
        runs = {
            "--help": imports_of("--help"),
            "positions": imports_of("positions", "--url", url),
            "orders": imports_of("orders", "--url", url),
            "trades --json": imports_of("trades", "--url", url, "--json"),
            # follow imports all it needs before its first attempt, which fails at once here.
            "follow": imports_of("follow", "--url", f"http://127.0.0.1:{free_port()}"),
            "follow --help": imports_of("follow", "--help"),
        }
    assert "ACC" in runs["positions"][0] and "orders (1)" in runs["orders"][0]
    assert {name: answer["imported"] for name, (_, answer) in runs.items()} == {name: [] for name in runs}
    assert [answer["status"] for _, answer in runs.values()] == [0, 0, 0, 0, 1, 0]
    # The same probe sees the framework where a command does need it.
    _, verify = imports_of("verify", "--data-dir", str(tmp_path))
    assert {"fastapi", "starlette", "pydantic"} <= set(verify["imported"])


def test_follow_imports_no_command_line_toolkit() -> None:
    # httpx imports its own command line (click, rich, pygments) whenever click is installed, as
    # uvicorn's dependency it always is: a tenth of a second of start-up follow has no use for.
    _, follow = imports_of("follow", "--url", f"http://127.0.0.1:{free_port()}", "--json")
    assert follow["status"] == 1 and follow["toolkits"] == []


def test_the_orders_table_shows_the_reason_of_an_order_with_no_decisions(service_factory: ServiceFactory) -> None:
    with service_factory(PROFILE) as service:
        place(service.base_url, "ACC", "BUY")
        body = {"STRATEGY": "S9", "INSTRUMENT": "ACC", "POSITION": "BUY"}
        requests.post(f"{service.base_url}/create_order", json=body, timeout=5).raise_for_status()
        table = cli("orders", "--url", service.base_url)
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if " S9 " in line or " S1 " in line]
    assert len(rows) == 2, table.stdout
    unknown, accepted = rows
    assert "REJECTED" in unknown and "UNKNOWN_STRATEGY" in unknown
    # One line per user's decision, the second under the first.
    below = table.stdout.splitlines()[table.stdout.splitlines().index(accepted) + 1]
    assert accepted.endswith("U1: ACCEPTED") and below.strip() == "U2: ACCEPTED"
    assert below.index("U2") == accepted.index("U1")


def test_piped_tables_fit_80_columns_with_every_value_they_show_whole(service_factory: ServiceFactory) -> None:
    profile = {"Priya Raghunathan": {"STRATEGY_B": ["HINDUNILVR", "INFY"]}, "Holland Proctor": {"STRATEGY_B": ["INFY"]}}
    with service_factory(profile) as service:
        for instrument, side in [("HINDUNILVR", "BUY"), ("INFY", "BUY"), ("HINDUNILVR", "SELL"), ("INFY", "SELL")]:
            body = {"STRATEGY": "STRATEGY_B", "INSTRUMENT": instrument, "POSITION": side}
            requests.post(f"{service.base_url}/create_order", json=body, timeout=5).raise_for_status()
        requests.post(f"{service.base_url}/create_order", json={**body, "POSITION": "BUY"}, timeout=5)
        answers = {what: requests.get(f"{service.base_url}/{what}", timeout=5).json()[what] for what in COLUMN_NAMES}
        # Piped, with no COLUMNS: the width is unknown, and 80 is assumed.
        environment = {name: value for name, value in os.environ.items() if name != "COLUMNS"}
        tables = {
            what: subprocess.run(
                [sys.executable, "-m", "trading_orders", what, "--url", service.base_url],
                capture_output=True,
                text=True,
                timeout=60,
                env=environment,
            ).stdout
            for what in COLUMN_NAMES
        }
    for what, table in tables.items():
        lines = table.splitlines()
        assert all(len(line) <= 80 for line in lines), table
        assert "…" not in table, table
        headers = lines[1].split()
        assert set(headers) <= set(COLUMN_NAMES[what]) and {"strategy"} <= set(headers), table
        words = table.split()
        for row in answers[what]:
            for column in set(headers) & {"sequence", "received_at", "order_id", "opened_at", "sold_at"}:
                assert str(row[column]) in words, (column, table)
    assert "decisions" in tables["orders"].splitlines()[1] and "INSTRUMENT_NOT_IN_STRATEGY" in tables["orders"]
    assert "opened_at" in tables["positions"].splitlines()[1]


def test_a_read_command_without_a_service_says_so(tmp_path: Path) -> None:
    result = cli("positions", "--url", "http://127.0.0.1:9")
    assert result.returncode == 1 and "cannot reach the service at http://127.0.0.1:9" in result.stderr


# Runs one command in a process of its own, then prints, on its last line, which of HEAVY it loaded.
HEAVY = ("fastapi", "uvicorn", "trading_orders.container", "trading_orders.adapters.http.api")
LOADED_BY = (
    "import sys\n"
    "from trading_orders import cli\n"
    "cli.main(sys.argv[1:])\n"
    f"print('ran', *(name for name in {HEAVY!r} if name in sys.modules))\n"
)


def loaded_by(*args: str) -> set[str]:
    """Which of HEAVY a process that ran the command ``args`` had imported."""
    result = subprocess.run([sys.executable, "-c", LOADED_BY, *args], capture_output=True, text=True, timeout=120)
    ran, *loaded = (result.stdout.splitlines() or [""])[-1].split() or [""]
    assert ran == "ran", result.stdout + result.stderr
    return set(loaded)


def test_a_command_imports_only_what_it_runs(tmp_path: Path) -> None:
    # Each command is a new process: a read that imported the service's web
    # framework, stores and server paid for them on every run, more CPU than its own work.
    assert loaded_by("positions", "--url", "http://127.0.0.1:9") == set()
    verify = loaded_by("verify", "--data-dir", str(tmp_path))
    assert "trading_orders.container" in verify and not {"uvicorn", "trading_orders.adapters.http.api"} & verify


def test_a_refused_read_or_order_prints_the_problems_title_and_detail(service_factory: ServiceFactory) -> None:
    root = Path(__file__).resolve().parents[2]
    with service_factory(PROFILE, api_key="the-desk-key") as service:
        refused = cli("orders", "--url", service.base_url)
        assert refused.returncode == 1
        assert refused.stderr.strip() == (
            "trading-orders orders: GET /orders answered 401 API key missing or wrong: X-API-Key header missing"
        )
        url = f"{service.base_url}/create_order"
        produced = cli("produce", "--count", "1", "--interval", "0", "--seed", "1", "--url", url, cwd=root)
        assert produced.stdout.splitlines()[0].endswith(
            "-> ERROR 401 API key missing or wrong: X-API-Key header missing"
        )


@pytest.mark.slow
def test_export_then_import_gives_the_same_orders_positions_and_trades(
    service_factory: ServiceFactory, data_dir: Path, tmp_path: Path
) -> None:
    with service_factory(PROFILE) as service:
        for instrument, side in [("ACC", "BUY"), ("INFY", "BUY"), ("ACC", "SELL"), ("ACC", "BUY")]:
            place(service.base_url, instrument, side)
        before = {what: requests.get(f"{service.base_url}/{what}", timeout=5).json() for what in ("orders", "trades")}
        positions = requests.get(f"{service.base_url}/positions", timeout=5).json()
    exported = cli("export", str(tmp_path / "desk.jsonl"), "--data-dir", str(data_dir))
    assert exported.returncode == 0 and "exported 4 orders and 3 open positions" in exported.stdout
    moved = tmp_path / "moved"
    imported = cli("import", str(tmp_path / "desk.jsonl"), "--data-dir", str(moved))
    assert imported.returncode == 0, imported.stderr
    assert "imported 4 orders" in imported.stdout and "3 open positions" in imported.stdout
    assert cli("verify", "--data-dir", str(moved)).returncode == 0
    again = service_factory(PROFILE, data_dir=str(moved))
    with again:
        after = {what: requests.get(f"{again.base_url}/{what}", timeout=5).json() for what in ("orders", "trades")}
        assert after == before
        assert requests.get(f"{again.base_url}/positions", timeout=5).json() == positions


@pytest.mark.slow
def test_export_then_import_carries_the_controls_and_a_flatten_with_its_trades(
    service_factory: ServiceFactory, data_dir: Path, tmp_path: Path
) -> None:
    with service_factory(PROFILE) as service:
        base = service.base_url
        place(base, "ACC", "BUY")
        place(base, "INFY", "BUY")
        for path, body in [
            ("/controls/limits", {"user": "U1", "max_open_positions": 5, "reason": "risk"}),
            ("/controls/limits", {"strategy": "S1", "max_orders_per_second": 100, "burst": 10}),
        ]:
            assert requests.put(f"{base}{path}", json=body, timeout=5).status_code == 200
        flatten = {"strategy": "S1", "state": "REDUCING", "reason": "feed gone wrong"}
        assert requests.post(f"{base}/controls/flatten", json=flatten, timeout=5).status_code == 200
        place(base, "ACC", "BUY")
        before = {what: requests.get(f"{base}/{what}", timeout=5).json() for what in ("orders", "trades", "controls")}
    assert len(before["trades"]["trades"]) == 3
    exported = cli("export", str(tmp_path / "desk.jsonl"), "--data-dir", str(data_dir))
    assert "exported 3 orders, 3 control changes and 0 open positions" in exported.stdout, exported.stderr
    moved = tmp_path / "moved"
    imported = cli("import", str(tmp_path / "desk.jsonl"), "--data-dir", str(moved), settings={"store": "sqlite"})
    assert imported.returncode == 0, imported.stderr
    with service_factory(PROFILE, data_dir=str(moved), store="sqlite") as again:
        after = {
            what: requests.get(f"{again.base_url}/{what}", timeout=5).json()
            for what in ("orders", "trades", "controls")
        }
        assert after == before
        assert requests.get(f"{again.base_url}/positions", timeout=5).json()["positions"] == []


def test_import_refuses_a_damaged_export_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"kind": "order", "sequence": 1}\n')
    result = cli("import", str(tmp_path / "bad.jsonl"), "--data-dir", str(tmp_path / "new"))
    assert result.returncode == 1 and "line 1 is not an export record" in result.stderr
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".new.*"))


def test_generate_profiles_runs_the_briefs_generator(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    result = cli("generate-profiles", "--seed", "5", "--users", "4", "--output", str(tmp_path / "p.json"), cwd=root)
    assert result.returncode == 0, result.stderr
    assert len(json.loads((tmp_path / "p.json").read_text())) == 4


def test_produce_sends_orders_to_a_running_service(service_factory: ServiceFactory) -> None:
    root = Path(__file__).resolve().parents[2]
    with service_factory(PROFILE) as service:
        url = f"{service.base_url}/create_order"
        result = cli("produce", "--count", "3", "--interval", "0", "--seed", "1", "--url", url, cwd=root)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1].startswith("sent 3: ")
        assert len(requests.get(f"{service.base_url}/orders", timeout=5).json()["orders"]) == 3


@pytest.mark.slow
def test_a_desk_moves_from_tinydb_to_sqlite_and_postgres_and_back_losing_nothing(
    service_factory: ServiceFactory, data_dir: Path, tmp_path: Path, postgres_url: Callable[[], str]
) -> None:
    with service_factory(PROFILE) as service:
        for instrument, side in [("ACC", "BUY"), ("INFY", "BUY"), ("ACC", "SELL"), ("ACC", "BUY"), ("INFY", "SELL")]:
            place(service.base_url, instrument, side)
        seen = {
            what: requests.get(f"{service.base_url}/{what}", timeout=5).json()
            for what in ("orders", "trades", "positions")
        }
    assert cli("export", str(tmp_path / "from-tinydb.jsonl"), "--data-dir", str(data_dir)).returncode == 0
    url = postgres_url()
    targets = {
        "sqlite": {"store": "sqlite", "data_dir": str(tmp_path / "sqlite")},
        "postgres": {"store": "postgres", "database_url": url},
    }
    for name, settings in targets.items():
        imported = cli("import", str(tmp_path / "from-tinydb.jsonl"), settings=settings)
        assert imported.returncode == 0, imported.stderr
        assert f"imported 5 orders ({name})" in imported.stdout
        with service_factory(PROFILE, **settings) as moved:
            for what, answer in seen.items():
                assert requests.get(f"{moved.base_url}/{what}", timeout=5).json() == answer, (name, what)
    back = cli("export", str(tmp_path / "from-postgres.jsonl"), settings=targets["postgres"])
    assert back.returncode == 0, back.stderr
    assert (tmp_path / "from-postgres.jsonl").read_text() == (tmp_path / "from-tinydb.jsonl").read_text()
    again = cli("import", str(tmp_path / "from-postgres.jsonl"), settings=targets["postgres"])
    assert again.returncode == 1 and "already holds orders" in again.stderr
