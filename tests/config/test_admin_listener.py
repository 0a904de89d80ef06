"""The admin listener stays on loopback unless it has TLS or an explicit override: check-config
exits 2 naming the key otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from config.settings import AdminListenerSettings
from tests.config.helpers import run_check_config

MAIN = "channel-sync.toml"
ADMIN_LOOPBACK = 'host = "127.0.0.1"\nport = 8081'


def _set_admin(config_dir: Path, lines: str) -> None:
    path = config_dir / MAIN
    text = path.read_text()
    assert ADMIN_LOOPBACK in text
    path.write_text(text.replace(ADMIN_LOOPBACK, f"{lines}\nport = 8081", 1))


def _tls_files(config_dir: Path, key_mode: int = 0o600) -> tuple[Path, Path]:
    cert, key = config_dir / "admin.crt", config_dir / "admin.key"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")  # check-config does not load them
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(key_mode)
    return cert, key


def _problem(run_stderr: str, where: str, key: str) -> str:
    lines = [line for line in run_stderr.splitlines() if line.startswith(f"{where}: {key}: ")]
    assert lines, run_stderr
    return lines[0]


def test_a_public_admin_host_without_tls_is_refused(
    example_dir: Path, example_env: dict[str, str]
) -> None:
    _set_admin(example_dir, 'host = "0.0.0.0"')
    run = run_check_config(example_dir, example_env)
    assert run.returncode == 2, run.stdout + run.stderr
    line = _problem(run.stderr, str(example_dir / MAIN), "listeners.admin.host")
    assert "0.0.0.0 is not a loopback address" in line
    assert "tls_certfile" in line and "allow_insecure_remote = true" in line


def test_the_same_through_the_environment_names_the_variable(
    example_dir: Path, example_env: dict[str, str]
) -> None:
    env = {**example_env, "CHANNEL_SYNC_LISTENERS__ADMIN__HOST": "192.0.2.10"}
    run = run_check_config(example_dir, env)
    assert run.returncode == 2, run.stdout + run.stderr
    line = _problem(run.stderr, "$CHANNEL_SYNC_LISTENERS__ADMIN__HOST", "listeners.admin.host")
    assert "192.0.2.10 is not a loopback address" in line


def test_half_a_tls_pair_or_a_readable_key_is_refused(
    example_dir: Path, example_env: dict[str, str]
) -> None:
    cert, key = _tls_files(example_dir, key_mode=0o644)
    _set_admin(example_dir, f'host = "0.0.0.0"\ntls_keyfile = "{key.name}"')
    run = run_check_config(example_dir, example_env)
    assert run.returncode == 2
    assert "set tls_certfile too" in _problem(
        run.stderr, str(example_dir / MAIN), "listeners.admin.tls_keyfile"
    )
    assert "listeners.admin.host" not in run.stderr  # one problem, said once

    text = (
        (example_dir / MAIN)
        .read_text()
        .replace(
            f'tls_keyfile = "{key.name}"',
            f'tls_certfile = "{cert.name}"\ntls_keyfile = "{key.name}"',
        )
    )
    (example_dir / MAIN).write_text(text)
    run = run_check_config(example_dir, example_env)
    assert run.returncode == 2
    assert "chmod 600" in _problem(
        run.stderr, str(example_dir / MAIN), "listeners.admin.tls_keyfile"
    )


@pytest.mark.parametrize("extra", ["tls", "allow_insecure_remote = true"])
def test_tls_or_the_override_lets_it_listen_anywhere(
    extra: str, example_dir: Path, example_env: dict[str, str]
) -> None:
    if extra == "tls":
        cert, key = _tls_files(example_dir)
        extra = f'tls_certfile = "{cert.name}"\ntls_keyfile = "{key}"'
    _set_admin(example_dir, f'host = "0.0.0.0"\n{extra}')
    run = run_check_config(example_dir, example_env)
    assert run.returncode == 0, run.stdout + run.stderr
    admin_row = next(line for line in run.stdout.splitlines() if "admin listener" in line)
    assert "0.0.0.0:8081" in admin_row
    assert ("(HTTPS)" in admin_row) == ("tls" in extra)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost", "::ffff:127.0.0.1"])
def test_loopback_hosts_need_nothing(host: str) -> None:
    assert AdminListenerSettings(host=host).host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.1", "2001:db8::1", "::ffff:10.0.0.1"])
def test_other_hosts_need_tls_or_the_override(host: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AdminListenerSettings(host=host)
    assert caught.value.errors()[0]["loc"] == ("host",)
    assert AdminListenerSettings(host=host, allow_insecure_remote=True).host == host
