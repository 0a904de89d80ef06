"""Helpers for the config tests: run check-config as a real process, supply referenced secrets."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "config" / "examples"
DEMO = REPO / "config" / "demo"


@dataclass
class Run:
    """A finished check-config process."""

    returncode: int
    stdout: str
    stderr: str


@dataclass
class SecretSupply:
    """Environment and credentials that satisfy every secret reference of a config directory."""

    env: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)  # reference -> value


def check_config_command() -> list[str]:
    """The installed console script, or the same entry point through this interpreter."""
    script = Path(sys.executable).parent / "channel-sync"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import daemon; daemon.main()"]


def base_env() -> dict[str, str]:
    """A clean environment: nothing from the outer CHANNEL_SYNC_* or systemd variables leaks in."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    return {key: os.environ[key] for key in keep if key in os.environ}


def run_check_config(config_dir: Path, env: dict[str, str]) -> Run:
    """Run ``channel-sync check-config DIR`` as a subprocess with ``env`` plus PATH and HOME."""
    done = subprocess.run(
        [*check_config_command(), "check-config", str(config_dir)],
        env={**base_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def iter_strings(value: Any) -> Iterator[str]:
    """Every string anywhere in a parsed TOML document."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from iter_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from iter_strings(item)


def secret_references(config_dir: Path) -> set[str]:
    """The env:, file: and credential: references used in every TOML file of ``config_dir``."""
    refs: set[str] = set()
    for path in sorted(config_dir.rglob("*.toml")):
        with path.open("rb") as handle:
            document = tomllib.load(handle)
        refs.update(
            text
            for text in iter_strings(document)
            if text.startswith(("env:", "file:", "credential:"))
        )
    return refs


def supply_secrets(config_dir: Path, scratch: Path) -> SecretSupply:
    """Create a random value for every reference found in ``config_dir``."""
    supply = SecretSupply()
    credentials = scratch / "credentials"
    for ref in sorted(secret_references(config_dir)):
        value = f"value-{secrets.token_hex(12)}"
        scheme, _, rest = ref.partition(":")
        if scheme == "env":
            supply.env[rest] = value
        elif scheme == "credential":
            credentials.mkdir(exist_ok=True)
            (credentials / rest).write_text(value + "\n")
            supply.env["CREDENTIALS_DIRECTORY"] = str(credentials)
        else:
            target = Path(rest) if Path(rest).is_absolute() else config_dir / rest
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(value + "\n")
            target.chmod(0o600)
        supply.values[ref] = value
    return supply
