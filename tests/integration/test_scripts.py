"""The brief's scripts and Logs module, run as the brief runs them: from Scripts/."""

import json
import os
import subprocess
import sys
from pathlib import Path

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
