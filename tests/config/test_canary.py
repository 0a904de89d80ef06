"""Canary: marked secret values never appear in check-config's output, pass or fail."""

from __future__ import annotations

import secrets
from pathlib import Path

from tests.config.helpers import run_check_config, secret_references

CANARY = f"CANARY{secrets.token_hex(8)}"


def _canaried_env(config_dir: Path, scratch: Path) -> dict[str, str]:
    """Every referenced secret holds a distinct canary; one more sits in a 0600 file."""
    env: dict[str, str] = {}
    credentials = scratch / "credentials"
    credentials.mkdir()
    for index, ref in enumerate(sorted(secret_references(config_dir))):
        scheme, _, rest = ref.partition(":")
        value = f"{CANARY}-{index}"
        if scheme == "env":
            env[rest] = value
        elif scheme == "credential":
            (credentials / rest).write_text(value + "\n")
    env["CREDENTIALS_DIRECTORY"] = str(credentials)
    hook_file = config_dir / "shopify-webhook-secret"
    hook_file.write_text(f"{CANARY}-file\n")
    hook_file.chmod(0o600)
    shopify = config_dir / "channels" / "shopify.toml"
    shopify.write_text(
        shopify.read_text().replace(
            '["env:SHOPIFY_WEBHOOK_SECRET"]',
            '["env:SHOPIFY_WEBHOOK_SECRET", "file:shopify-webhook-secret"]',
        )
    )
    env["CHANNEL_SYNC_DATABASE__URL"] = f"postgresql://sync:{CANARY}-db@db.internal/sync"
    return env


def _assert_no_canary(text: str) -> None:
    assert CANARY not in text, text


def test_no_canary_in_successful_output(example_dir: Path, tmp_path: Path) -> None:
    env = _canaried_env(example_dir, tmp_path)

    run = run_check_config(example_dir, env)

    assert run.returncode == 0, run.stderr
    _assert_no_canary(run.stdout + run.stderr)
    assert "file:shopify-webhook-secret" in run.stdout
    assert "postgresql+psycopg://sync:***@db.internal/sync" in run.stdout


def test_no_canary_in_failure_output(example_dir: Path, tmp_path: Path) -> None:
    env = _canaried_env(example_dir, tmp_path)
    main = example_dir / "channel-sync.toml"
    main.write_text(main.read_text().replace("pool_size = 5", 'pool_size = "five"\nbogus = 1'))
    ebay = example_dir / "channels" / "ebay.toml"
    ebay.write_text(
        ebay.read_text()
        .replace('"env:EBAY_REFRESH_TOKEN"', f'"{CANARY}-literal"')
        .replace('stock_api = "trading"', f'stock_api = "{CANARY}-kind"')
    )
    amazon = example_dir / "channels" / "amazon.toml"
    amazon.write_text(amazon.read_text().replace('region = "na"', f"region = {CANARY}-unquoted"))
    shopify = example_dir / "channels" / "shopify.toml"
    shopify.write_text(shopify.read_text().replace("percent = 100", "percent = 101"))
    bad_db = {**env, "CHANNEL_SYNC_DATABASE__URL": f"mysql://sync:{CANARY}-db@db/x"}

    run = run_check_config(example_dir, bad_db)

    assert run.returncode == 2
    _assert_no_canary(run.stdout + run.stderr)
    stderr = run.stderr
    assert "database.pool_size" in stderr
    assert "refresh_token: literal secrets are not accepted" in stderr
    assert "stock_api" in stderr
    assert "amazon.toml: -: TOML syntax error" in stderr
    assert "stock.percent" in stderr
    assert "$CHANNEL_SYNC_DATABASE__URL: database.url: " in stderr
