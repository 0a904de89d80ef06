"""CHANNEL_SYNC_* environment overrides: precedence, naming the variable, stray variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from config._context import LoadContext, load_context
from config.loader import ConfigError, load_config
from config.settings import MainSettings
from tests.config.helpers import run_check_config


def test_env_overrides_the_file(example_dir: Path, example_env: dict[str, str]) -> None:
    env = {**example_env, "CHANNEL_SYNC_LISTENERS__ADMIN__PORT": "9999"}
    config = load_config(example_dir, env=env)
    assert config.main.listeners.admin.port == 9999
    assert config.main.listeners.webhooks.port == 8080


def test_env_override_seen_by_check_config(example_dir: Path, example_env: dict[str, str]) -> None:
    env = {**example_env, "CHANNEL_SYNC_LISTENERS__ADMIN__PORT": "9999"}
    run = run_check_config(example_dir, env)
    assert run.returncode == 0, run.stderr
    assert "127.0.0.1:9999" in run.stdout


def test_bad_env_value_names_the_variable(example_dir: Path, example_env: dict[str, str]) -> None:
    env = {**example_env, "CHANNEL_SYNC_LISTENERS__ADMIN__PORT": "70000"}
    with pytest.raises(ConfigError) as caught:
        load_config(example_dir, env=env)
    [problem] = caught.value.problems
    assert problem.file == Path("$CHANNEL_SYNC_LISTENERS__ADMIN__PORT")
    assert problem.key == "listeners.admin.port"
    assert str(problem).startswith("$CHANNEL_SYNC_LISTENERS__ADMIN__PORT: listeners.admin.port: ")


def test_unknown_nested_env_key_names_the_variable(
    example_dir: Path, example_env: dict[str, str]
) -> None:
    env = {**example_env, "CHANNEL_SYNC_LISTENERS__ADMIN__PROT": "1"}
    with pytest.raises(ConfigError) as caught:
        load_config(example_dir, env=env)
    [problem] = caught.value.problems
    assert problem.file == Path("$CHANNEL_SYNC_LISTENERS__ADMIN__PROT")
    assert "did you mean port" in problem.message


def test_prefixed_variables_that_are_not_settings_are_ignored(
    example_dir: Path, example_env: dict[str, str]
) -> None:
    env = {
        **example_env,
        "CHANNEL_SYNC_REQUIRE_PG": "1",
        "CHANNEL_SYNC_TEST_PG_URL": "postgresql://u@h/db",
        "CHANNEL_SYNC_DEMO_ADMIN_TOKEN": "x",
    }
    assert load_config(example_dir, env=env).main.listeners.admin.port == 8081


def test_env_sets_state_dir_and_database_url(
    example_dir: Path, example_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **example_env,
        "CHANNEL_SYNC_STATE_DIR": str(tmp_path / "state"),
        "CHANNEL_SYNC_DATABASE__URL": "postgresql://sync:pw-in-url@db.internal/sync",
    }
    config = load_config(example_dir, env=env)
    assert config.main.state_dir == tmp_path / "state"
    assert config.database_url == "postgresql+psycopg://sync:pw-in-url@db.internal/sync"


def test_state_directory_from_systemd_is_the_default(tmp_path: Path) -> None:
    (tmp_path / "channel-sync.toml").write_text('[admin]\ntoken = "env:T"\n')
    env = {"T": "x", "STATE_DIRECTORY": "/var/lib/from-systemd:/var/lib/other"}
    config = load_config(tmp_path, env=env)
    assert config.main.state_dir == Path("/var/lib/from-systemd")
    assert config.database_url.endswith("/var/lib/from-systemd/channel-sync.db")

    assert load_config(tmp_path, env={"T": "x"}).main.state_dir == Path("/var/lib/channel-sync")


def test_init_kwargs_beat_env_which_beats_file(tmp_path: Path) -> None:
    main = tmp_path / "channel-sync.toml"
    main.write_text('[admin]\ntoken = "env:T"\n[listeners.admin]\nport = 1111\n')
    env = {"T": "x", "CHANNEL_SYNC_LISTENERS__ADMIN__PORT": "2222"}
    with load_context(LoadContext(base_dir=tmp_path, env=env, main_file=main)):
        assert MainSettings().listeners.admin.port == 2222
        explicit = MainSettings(listeners={"admin": {"port": 3333}})
        assert explicit.listeners.admin.port == 3333
    with load_context(LoadContext(base_dir=tmp_path, env={"T": "x"}, main_file=main)):
        assert MainSettings().listeners.admin.port == 1111


def test_empty_variables_are_ignored(example_dir: Path, example_env: dict[str, str]) -> None:
    env = {**example_env, "CHANNEL_SYNC_STATE_DIR": "", "STATE_DIRECTORY": ""}
    assert load_config(example_dir, env=env).main.state_dir == Path("/var/lib/channel-sync")


def test_table_override_must_be_json(example_dir: Path, example_env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(example_dir, env={**example_env, "CHANNEL_SYNC_LISTENERS": "not json"})
    [problem] = caught.value.problems
    assert (problem.file, problem.key) == (Path("$CHANNEL_SYNC_LISTENERS"), "listeners")

    env = {**example_env, "CHANNEL_SYNC_LISTENERS__ADMIN": '{"port": 7000}'}
    assert load_config(example_dir, env=env).main.listeners.admin.port == 7000
