"""Configuration from the environment, and the container choosing adapters by it."""

from pathlib import Path
from typing import get_args

import pytest

from trading_orders import cli
from trading_orders.adapters.storage.tinydb_store.checkpoints import CheckpointPolicy
from trading_orders.adapters.storage.tinydb_store.memory import InMemoryOrderLog
from trading_orders.adapters.storage.tinydb_store.order_log import JsonLinesOrderLog
from trading_orders.adapters.storage.tinydb_store.store import TinyDBOrderStore
from trading_orders.bootstrap import build_container
from trading_orders.cli import STORES, api_key_from_environment
from trading_orders.domain.model import PositionScope
from trading_orders.settings import ConfigurationError, Settings, StoreName, unknown_variables

VARIABLES = ("DATA_DIR", "PROFILE_PATH", "LOG_DIR", "STORE", "POSITION_SCOPE", "LOG_LEVEL", "API_KEY", "DATABASE_URL")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(f"TRADING_ORDERS_{name}", raising=False)


def test_defaults_keep_data_in_jsons_under_the_project(tmp_path: Path) -> None:
    settings = Settings.from_environment(tmp_path)
    assert settings == Settings(
        project_root=tmp_path,
        data_dir=tmp_path / "Jsons",
        profile_path=tmp_path / "Jsons" / "user_profile.json",
        log_dir=tmp_path / "Logs",
        store="tinydb",
        position_scope=PositionScope.STRATEGY,
        log_level="INFO",
    )


def test_environment_overrides_every_default_in_any_letter_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADING_ORDERS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TRADING_ORDERS_PROFILE_PATH", str(tmp_path / "p.json"))
    monkeypatch.setenv("TRADING_ORDERS_STORE", "Memory")
    monkeypatch.setenv("TRADING_ORDERS_POSITION_SCOPE", "USER")
    monkeypatch.setenv("TRADING_ORDERS_LOG_LEVEL", "debug")
    settings = Settings.from_environment(tmp_path)
    assert (settings.data_dir, settings.profile_path) == (tmp_path / "data", tmp_path / "p.json")
    assert (settings.store, settings.position_scope, settings.log_level) == ("memory", PositionScope.USER, "DEBUG")


def test_the_api_key_is_read_but_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_environment(tmp_path).api_key is None
    monkeypatch.setenv("TRADING_ORDERS_API_KEY", "")
    assert Settings.from_environment(tmp_path).api_key is None, "an empty key means no key"
    monkeypatch.setenv("TRADING_ORDERS_API_KEY", "s3cret")
    settings = Settings.from_environment(tmp_path)
    assert settings.api_key == "s3cret" and "s3cret" not in repr(settings) and "s3cret" not in str(settings)


@pytest.mark.parametrize(
    "variables",
    [
        {},
        {"TRADING_ORDERS_API_KEY": ""},
        {"TRADING_ORDERS_API_KEY": "s3cret"},
        {"trading_orders_api_key": "lower"},
        {"TRADING_ORDERS_API_KEY": "upper", "Trading_Orders_Api_Key": "mixed"},
    ],
)
def test_the_read_commands_take_the_api_key_settings_would_without_importing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
) -> None:
    for name in ("trading_orders_api_key", "Trading_Orders_Api_Key"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert api_key_from_environment() == Settings.from_environment(tmp_path).api_key


def test_serve_offers_every_store_settings_accept() -> None:
    assert get_args(StoreName) == STORES


def test_postgres_needs_a_database_url_which_is_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADING_ORDERS_STORE", "postgres")
    with pytest.raises(ConfigurationError, match="TRADING_ORDERS_STORE=postgres needs TRADING_ORDERS_DATABASE_URL"):
        Settings.from_environment(tmp_path)
    monkeypatch.setenv("TRADING_ORDERS_DATABASE_URL", "postgresql://desk:hunter2@127.0.0.1:5432/orders")
    settings = Settings.from_environment(tmp_path)
    assert settings.database_url is not None and "hunter2" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("STORE", "mongo", "'tinydb', 'memory', 'sqlite' or 'postgres'"),
        ("POSITION_SCOPE", "account", "'strategy' or 'user'"),
        ("LOG_LEVEL", "loud", "'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'"),
        # Letter case is ASCII's only: str.upper() folds the dotless i (U+0131) to I.
        ("LOG_LEVEL", "\u0131nfo", "'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'"),
        ("POSITION_SCOPE", "u\u017fer", "'strategy' or 'user'"),
        ("SNAPSHOT_EVERY_ORDERS", "0", "greater than or equal to 1"),
        ("SNAPSHOT_EVERY_SECONDS", "soon", "valid number"),
    ],
)
def test_an_unknown_value_names_the_variable_and_lists_the_allowed_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, allowed: str
) -> None:
    monkeypatch.setenv(f"TRADING_ORDERS_{variable}", value)
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_environment(tmp_path)
    assert f"TRADING_ORDERS_{variable}={value!r}" in str(raised.value)
    assert allowed in str(raised.value)


def test_the_container_is_configured_with_every_setting_as_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADING_ORDERS_EVENTS_BUFFER", "7")
    monkeypatch.setenv("TRADING_ORDERS_POSITION_SCOPE", "user")
    settings = Settings.from_environment(tmp_path)
    configured = build_container(settings).config()
    assert configured == settings.model_dump()
    assert (configured["events_buffer"], configured["position_scope"]) == (7, PositionScope.USER)


@pytest.mark.parametrize(("store", "log_type"), [("tinydb", JsonLinesOrderLog), ("memory", InMemoryOrderLog)])
def test_the_container_selects_the_store_by_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str, log_type: type
) -> None:
    monkeypatch.setenv("TRADING_ORDERS_STORE", store)
    monkeypatch.setenv("TRADING_ORDERS_SNAPSHOT_EVERY_ORDERS", "250")
    container = build_container(Settings.from_environment(tmp_path))
    try:
        order_store = container.order_store()
        assert isinstance(order_store, TinyDBOrderStore)
        assert isinstance(container.order_log_reader(), log_type)
        assert container.checkpoint_policy() == CheckpointPolicy(every_orders=250, every_seconds=10.0)
    finally:
        container.shutdown_resources()
    written = sorted(p.name for p in (tmp_path / "Jsons").glob("*")) if (tmp_path / "Jsons").exists() else []
    assert bool(written) is (store == "tinydb"), "only the selected store touches the data directory"


def test_a_variable_that_is_no_setting_is_named_with_the_closest_setting() -> None:
    environment = {
        "TRADING_ORDERS_STOER": "sqlite",
        "trading_orders_log_levle": "DEBUG",
        "TRADING_ORDERS_XYZZY": "1",
        "TRADING_ORDERS_STORE": "sqlite",
        "trading_orders_data_dir": "/srv/desk",
        "OTHER_STOER": "x",
    }
    assert unknown_variables(environment) == [
        "TRADING_ORDERS_STOER is not a setting and is ignored; did you mean TRADING_ORDERS_STORE?",
        "TRADING_ORDERS_XYZZY is not a setting and is ignored; the settings are in docs/configuration.md",
        "trading_orders_log_levle is not a setting and is ignored; did you mean TRADING_ORDERS_LOG_LEVEL?",
    ]


def test_every_setting_in_the_environment_is_known() -> None:
    # project_root is the program's, never the environment's.
    names = {f"TRADING_ORDERS_{name.upper()}": "x" for name in Settings.model_fields if name != "project_root"}
    assert unknown_variables(names) == []
    assert unknown_variables({"TRADING_ORDERS_PROJECT_ROOT": "/"}) != []


def test_a_command_that_reads_the_settings_warns_of_a_mistyped_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRADING_ORDERS_STOER", "sqlite")
    monkeypatch.chdir(tmp_path)
    cli.main(["verify", "--data-dir", str(tmp_path)])
    assert capsys.readouterr().err.splitlines()[0] == (
        "trading-orders: warning: TRADING_ORDERS_STOER is not a setting and is ignored; "
        "did you mean TRADING_ORDERS_STORE?"
    )
