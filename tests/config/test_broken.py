"""Broken config directories: check-config exits 2 and names the file and key of each problem."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.config.helpers import run_check_config

MAIN = "channel-sync.toml"
SHOPIFY = "channels/shopify.toml"
AMAZON = "channels/amazon.toml"
EBAY = "channels/ebay.toml"


def _edit(relative: str, old: str, new: str) -> Callable[[Path, dict[str, str]], None]:
    def apply(config_dir: Path, env: dict[str, str]) -> None:
        path = config_dir / relative
        text = path.read_text()
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new, 1))

    return apply


def _prepend(relative: str, line: str) -> Callable[[Path, dict[str, str]], None]:
    def apply(config_dir: Path, env: dict[str, str]) -> None:
        path = config_dir / relative
        path.write_text(line + "\n" + path.read_text())

    return apply


def _unset_env(name: str) -> Callable[[Path, dict[str, str]], None]:
    def apply(config_dir: Path, env: dict[str, str]) -> None:
        del env[name]

    return apply


def _set_env(name: str, value: str) -> Callable[[Path, dict[str, str]], None]:
    def apply(config_dir: Path, env: dict[str, str]) -> None:
        env[name] = value

    return apply


def _world_readable_secret_file(config_dir: Path, env: dict[str, str]) -> None:
    secret = config_dir / "secrets" / "shopify-token"
    secret.parent.mkdir()
    secret.write_text("shpat_0123\n")
    secret.chmod(0o644)
    _edit(SHOPIFY, '"env:SHOPIFY_ACCESS_TOKEN"', '"file:secrets/shopify-token"')(config_dir, env)


def _duplicate_channel(config_dir: Path, env: dict[str, str]) -> None:
    shutil.copy(config_dir / SHOPIFY, config_dir / "channels" / "shopify-copy.toml")


def _unknown_kind(config_dir: Path, env: dict[str, str]) -> None:
    (config_dir / "channels" / "etsy.toml").write_text('kind = "etsy"\n')


def _no_main_file(config_dir: Path, env: dict[str, str]) -> None:
    (config_dir / MAIN).unlink()


@dataclass(frozen=True)
class Case:
    """One broken thing and the problem line it must produce."""

    id: str
    breaks: Callable[[Path, dict[str, str]], None]
    file: str  # relative to the config dir, or "$VAR" for an environment override
    key: str
    fragment: str


CASES = [
    Case("unknown-top-level-key", _prepend(MAIN, 'colour = "blue"'), MAIN, "colour", "unknown key"),
    Case(
        "unknown-nested-key",
        _edit(SHOPIFY, "buffer = 0", "bufer = 0"),
        SHOPIFY,
        "stock.bufer",
        "did you mean buffer",
    ),
    Case(
        "wrong-type",
        _edit(MAIN, "port = 8081", 'port = "eighty"'),
        MAIN,
        "listeners.admin.port",
        "valid integer",
    ),
    Case(
        "missing-required-key",
        _edit(SHOPIFY, 'shop = "example-store.myshopify.com"', ""),
        SHOPIFY,
        "shop",
        "missing required key",
    ),
    Case(
        "missing-secret-env-var",
        _unset_env("EBAY_CLIENT_SECRET"),
        EBAY,
        "client_secret",
        "environment variable EBAY_CLIENT_SECRET is not set",
    ),
    Case(
        "secret-in-list-missing",
        _edit(SHOPIFY, '["env:SHOPIFY_WEBHOOK_SECRET"]', '["env:NOT_SET_ANYWHERE"]'),
        SHOPIFY,
        "webhook_secrets.0",
        "NOT_SET_ANYWHERE is not set",
    ),
    Case(
        "world-readable-secret-file",
        _world_readable_secret_file,
        SHOPIFY,
        "access_token",
        "chmod 600",
    ),
    Case(
        "duplicate-channel-name",
        _duplicate_channel,
        "channels/shopify.toml",
        "name",
        "already used",
    ),
    Case(
        "unknown-channel-kind",
        _unknown_kind,
        "channels/etsy.toml",
        "kind",
        "amazon, ebay, reference, shopify",
    ),
    Case(
        "bad-listener-address",
        _edit(MAIN, 'host = "127.0.0.1"', 'host = "example.com"'),
        MAIN,
        "listeners.webhooks.host",
        "IP address or 'localhost'",
    ),
    Case(
        "bad-database-url",
        _edit(MAIN, '# url = "sqlite', 'url = "mysql://sync@db/x"\n# "'),
        MAIN,
        "database.url",
        "not a supported database",
    ),
    Case(
        "literal-secret",
        _edit(EBAY, '"env:EBAY_REFRESH_TOKEN"', '"v^1.1#i^1#literal"'),
        EBAY,
        "refresh_token",
        "use a reference, env:VAR, file:/path or credential:NAME",
    ),
    Case(
        "toml-syntax-error",
        _edit(AMAZON, 'region = "na"', "region = na"),
        AMAZON,
        "-",
        "TOML syntax error",
    ),
    Case("missing-main-file", _no_main_file, MAIN, "-", "file not found"),
    Case(
        "negative-linger",
        _edit(SHOPIFY, "# max_linger_s = 1.0", "max_linger_s = -1"),
        SHOPIFY,
        "push.max_linger_s",
        "greater than or equal to 0",
    ),
    Case(
        "push-typo",
        _edit(SHOPIFY, "# hold_full = false", "hold_ful = true"),
        SHOPIFY,
        "push.hold_ful",
        "unknown key",
    ),
    Case(
        "percent-out-of-range",
        _edit(AMAZON, "percent = 100", "percent = 0"),
        AMAZON,
        "stock.percent",
        "greater than or equal to 1",
    ),
    Case(
        "heartbeat-not-below-lease",
        _edit(MAIN, "heartbeat_s = 10", "heartbeat_s = 30"),
        MAIN,
        "schedules.heartbeat_s",
        "below lease_ttl_s",
    ),
    Case(
        "bad-env-override",
        _set_env("CHANNEL_SYNC_LISTENERS__ADMIN__PORT", "eighty"),
        "$CHANNEL_SYNC_LISTENERS__ADMIN__PORT",
        "listeners.admin.port",
        "valid integer",
    ),
    Case(
        "shopify-domain",
        _edit(SHOPIFY, "example-store.myshopify.com", "https://shop.example.com"),
        SHOPIFY,
        "shop",
        "myshopify.com",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_broken_config_exits_2_naming_file_and_key(
    case: Case, example_dir: Path, example_env: dict[str, str]
) -> None:
    env = dict(example_env)
    case.breaks(example_dir, env)

    run = run_check_config(example_dir, env)

    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stdout == ""
    where = case.file if case.file.startswith("$") else str(example_dir / case.file)
    lines = [line for line in run.stderr.splitlines() if line.startswith(f"{where}: {case.key}: ")]
    assert lines, run.stderr
    assert case.fragment in lines[0], run.stderr


def test_missing_directory_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    run = run_check_config(missing, {})
    assert run.returncode == 2
    assert f"{missing}: -: config directory does not exist" in run.stderr


def test_every_problem_is_reported_in_one_run(
    example_dir: Path, example_env: dict[str, str]
) -> None:
    env = dict(example_env)
    for case in CASES[:3] + CASES[4:5] + CASES[8:10]:
        case.breaks(example_dir, env)

    run = run_check_config(example_dir, env)

    assert run.returncode == 2
    assert "colour: unknown key" in run.stderr
    assert "stock.bufer: unknown key" in run.stderr
    assert "listeners.admin.port: " in run.stderr
    assert "client_secret: environment variable" in run.stderr
    assert "etsy.toml: kind: " in run.stderr
    assert "listeners.webhooks.host: " in run.stderr
    assert run.stderr.splitlines()[-1] == "check-config: 6 problems found"
