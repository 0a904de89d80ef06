"""The shipped example and demo configs pass check-config, showing references and never values."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.config.helpers import DEMO, EXAMPLES, run_check_config, supply_secrets


@pytest.mark.parametrize("config_dir", [EXAMPLES, DEMO], ids=["examples", "demo"])
def test_shipped_config_passes_check_config(config_dir: Path, tmp_path: Path) -> None:
    supply = supply_secrets(config_dir, tmp_path)
    assert supply.values, "every shipped config references at least the admin token"
    env = {**supply.env, "CHANNEL_SYNC_STATE_DIR": str(tmp_path / "state")}

    run = run_check_config(config_dir, env)

    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    for reference, value in supply.values.items():
        assert reference in run.stdout
        assert value not in run.stdout
    assert str(tmp_path / "state") in run.stdout


def test_examples_cover_every_channel_kind() -> None:
    from config.channels import CHANNEL_KINDS

    files = {path.stem for path in (EXAMPLES / "channels").glob("*.toml")}
    assert files == set(CHANNEL_KINDS)


def test_examples_list_every_channel_in_output(tmp_path: Path) -> None:
    supply = supply_secrets(EXAMPLES, tmp_path)
    run = run_check_config(EXAMPLES, supply.env)
    assert run.returncode == 0, run.stderr
    for name, kind in [("shopify", "shopify"), ("amazon", "amazon"), ("ebay", "ebay")]:
        assert f"{name} ({kind}, enabled)" in run.stdout
    assert "example-store.myshopify.com" in run.stdout


def test_demo_uses_sqlite_under_state_dir_and_migrates(tmp_path: Path) -> None:
    from config.loader import load_config

    state = tmp_path / "state"
    env = {"CHANNEL_SYNC_DEMO_ADMIN_TOKEN": "t0ken", "CHANNEL_SYNC_STATE_DIR": str(state)}
    config = load_config(DEMO, env=env)
    assert config.main.database.auto_migrate is True
    assert config.main.state_dir == state
    assert config.database_url.startswith("sqlite")
    assert config.database_url.endswith(f"{state}/channel-sync.db")
    assert config.main.admin.token.reveal() == "t0ken"
    assert config.channels == {}
    assert (DEMO / "channels" / ".gitkeep").exists()
