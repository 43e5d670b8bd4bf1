"""Reading the profile file: every way it can be wrong gets one clear line naming the file."""

import json
from pathlib import Path

import pytest

from tests.worked_example import HOLLAND, PROFILE
from trading_orders.adapters.json_profile_source import JsonProfileSource
from trading_orders.application.errors import ProfileUnavailable


def test_a_valid_file_loads_indexed_by_strategy(tmp_path: Path) -> None:
    path = tmp_path / "user_profile.json"
    path.write_text(json.dumps(PROFILE, indent=4))
    profile = JsonProfileSource(path).load()
    assert dict(profile.runners_of("STRATEGY_B")) == {HOLLAND: frozenset({"MINDA"})}


def test_a_missing_file_says_how_to_create_it(tmp_path: Path) -> None:
    path = tmp_path / "user_profile.json"
    with pytest.raises(ProfileUnavailable) as raised:
        JsonProfileSource(path).load()
    message = str(raised.value)
    assert str(path) in message and "does not exist" in message and "Scripts/Generate_User_Profile.py" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2"),
        ("[]", "expected an object {user: {strategy: [instruments]}}, found list"),
        ("{}", "no users"),
        ('{"U": {"S": ["ACC"], "S": ["INFY"]}}', "user 'U': strategy 'S' is listed twice"),
        ('{"U": {"S": ["ACC"]}, "U": {"T": ["ACC"]}}', "user 'U' is listed twice"),
        ('{"U": {"S": []}}', "user 'U', strategy 'S': universe is empty"),
        ('{"U": {"S": ["ACC", 42]}}', "user 'U', strategy 'S': instrument symbol must be a string, got int 42"),
        ('{"U": {"S": ["ACC", null]}}', "instrument symbol must be a string, got NoneType None"),
        ('{"U": ["S"]}', "user 'U': strategies must be an object, got list"),
    ],
)
def test_a_malformed_file_is_one_clear_line_naming_file_and_problem(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "user_profile.json"
    path.write_text(content)
    with pytest.raises(ProfileUnavailable) as raised:
        JsonProfileSource(path).load()
    assert str(raised.value).startswith(f"profile file {path}")
    assert problem in str(raised.value)
    assert "\n" not in str(raised.value)
