"""The brief's scripts and Logs module, run as the brief runs them: from Scripts/."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trading_orders.tools.raw_details import RawDetails

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "Scripts"


def run_script(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=SCRIPTS, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def test_generator_keeps_the_briefs_shape_and_is_reproducible_with_a_seed(tmp_path: Path) -> None:
    raw = json.loads((ROOT / "Jsons" / "raw_details.json").read_text())
    outputs = []
    for name in ("a.json", "b.json"):
        result = run_script(["Generate_User_Profile.py", "--seed", "42", "--output", str(tmp_path / name)])
        assert result.returncode == 0, result.stderr
        outputs.append((tmp_path / name).read_text())
    assert outputs[0] == outputs[1]
    profile = json.loads(outputs[0])
    assert outputs[0].startswith('{\n    "'), "indent 4, as the brief writes it"
    assert len(profile) == 3 and set(profile) <= set(raw["USERS"])
    universes: dict[str, list[str]] = {}
    for strategies in profile.values():
        assert 1 <= len(strategies) <= 7
        for strategy, instruments in strategies.items():
            assert strategy in raw["STRATEGIES"]
            assert 1 <= len(instruments) <= 10 and len(set(instruments)) == len(instruments)
            assert set(instruments) <= set(raw["INSTRUMENTS"])
            assert universes.setdefault(strategy, instruments) == instruments, "one shared universe per strategy"


def test_generator_takes_the_number_of_users(tmp_path: Path) -> None:
    result = run_script(["Generate_User_Profile.py", "--users", "12", "--output", str(tmp_path / "p.json")])
    assert result.returncode == 0, result.stderr
    assert len(json.loads((tmp_path / "p.json").read_text())) == 12
    too_many = run_script(["Generate_User_Profile.py", "--users", "999", "--output", str(tmp_path / "q.json")])
    assert too_many.returncode == 2 and "--users must be between 1 and 30" in too_many.stderr


def test_raw_details_ship_enough_realistic_names() -> None:
    raw = json.loads((ROOT / "Jsons" / "raw_details.json").read_text())
    assert len(set(raw["USERS"])) >= 25
    assert raw["STRATEGIES"][:10] == [f"STRATEGY_{letter}" for letter in "ABCDEFGHIJ"]
    assert len(set(raw["INSTRUMENTS"])) >= 100 and {"RELIANCE", "TCS", "INFY", "GRASIM"} <= set(raw["INSTRUMENTS"])


def test_the_briefs_logs_module_imports_from_scripts_and_writes_log_files(tmp_path: Path) -> None:
    code = (
        "from Logs import logInfo, logError, logCritical, logWarning, logDebug\n"
        "import requests\n"
        "logInfo('info line'); logError('error line'); logCritical('critical line')\n"
    )
    result = run_script(["-c", code], env={"TRADING_ORDERS_LOG_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    written = (tmp_path / "trading_orders.log").read_text()
    for line in ("INFO trading_orders.scripts: info line", "ERROR", "error line", "CRITICAL", "critical line"):
        assert line in written


def test_raw_details_ship_the_names_of_the_briefs_example() -> None:
    raw = json.loads((ROOT / "Jsons" / "raw_details.json").read_text())
    assert {"Holland Proctor", "Oaklee Wagner"} <= set(raw["USERS"])
    assert {"STRATEGY_A", "STRATEGY_B", "STRATEGY_D"} <= set(raw["STRATEGIES"])
    assert {"BIRLASOFT", "GRASIM", "EICHER", "MINDA", "ACC", "INFY"} <= set(raw["INSTRUMENTS"])


def _raw_details_listing_names_twice(tmp_path: Path) -> Path:
    # As the brief's own file does: one user listed twice (here an instrument too).
    raw = {
        "USERS": ["Holland Proctor", "Oaklee Wagner", "Holland Proctor", "Aarav Mehta"],
        "STRATEGIES": ["STRATEGY_A", "STRATEGY_B"],
        "INSTRUMENTS": ["GRASIM", "MINDA", "GRASIM", "ACC"],
    }
    path = tmp_path / "raw_details.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize(
    ("command", "cwd"),
    [(["Generate_User_Profile.py"], SCRIPTS), (["-m", "trading_orders", "generate-profiles"], ROOT)],
    ids=["Generate_User_Profile.py", "trading-orders generate-profiles"],
)
def test_the_generator_keeps_the_first_of_a_repeated_name_and_warns(
    tmp_path: Path, command: list[str], cwd: Path
) -> None:
    raw_details = _raw_details_listing_names_twice(tmp_path)
    result = subprocess.run(
        [sys.executable, *command, "--users", "3", "--seed", "1",
         "--raw-details", str(raw_details), "--output", str(tmp_path / "p.json")],
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert set(json.loads((tmp_path / "p.json").read_text())) == {"Holland Proctor", "Oaklee Wagner", "Aarav Mehta"}
    assert f"WARNING {raw_details}: USERS lists 'Holland Proctor' more than once; the first is kept" in result.stderr
    assert f"WARNING {raw_details}: INSTRUMENTS lists 'GRASIM' more than once; the first is kept" in result.stderr


@pytest.mark.parametrize(
    ("command", "cwd"),
    [(["Order_Producer.py"], SCRIPTS), (["-m", "trading_orders", "produce"], ROOT)],
    ids=["Order_Producer.py", "trading-orders produce"],
)
def test_the_producer_reads_a_repeated_name_and_warns(tmp_path: Path, command: list[str], cwd: Path) -> None:
    raw_details = _raw_details_listing_names_twice(tmp_path)
    result = subprocess.run(
        [sys.executable, *command, "--count", "0", "--raw-details", str(raw_details)],
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "sent 0: 0 accepted, 0 rejected, 0 errors"
    assert f"WARNING {raw_details}: USERS lists 'Holland Proctor' more than once; the first is kept" in result.stderr


def test_raw_details_keep_the_first_of_each_name_in_order(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    details = RawDetails.load(_raw_details_listing_names_twice(tmp_path))
    assert details.users == ("Holland Proctor", "Oaklee Wagner", "Aarav Mehta")
    assert details.instruments == ("GRASIM", "MINDA", "ACC")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w.split(": ", 1)[1] for w in warnings] == [
        "USERS lists 'Holland Proctor' more than once; the first is kept",
        "INSTRUMENTS lists 'GRASIM' more than once; the first is kept",
    ]
