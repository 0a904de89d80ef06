"""The shipped unit file: hardened enough that systemd itself rates it 2.0 or lower."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "channel-sync.service"


def directives(unit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_security_exposure_is_2_or_lower() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0


def test_unit_is_notify_with_watchdog_and_a_stop_longer_than_the_drain() -> None:
    found = directives(UNIT)
    assert found["Type"] == ["notify"]
    assert found["WatchdogSec"]
    assert found["DynamicUser"] == ["yes"]
    assert found["StateDirectory"] == ["channel-sync"]
    assert found["Restart"] == ["on-failure"]
    assert found["LoadCredential"]
    assert found["CapabilityBoundingSet"] == [""]
    stop_s = int(found["TimeoutStopSec"][0].rstrip("s"))
    # The default drain deadline is 20 s; systemd must not SIGKILL a drain in progress.
    from config.settings import ShutdownSettings

    assert stop_s > ShutdownSettings().drain_deadline_s
