"""Snapshot files for mapping tests: canonical values as stable, reviewable JSON.

A snapshot is compared, never written, unless CHANNEL_SYNC_UPDATE_SNAPSHOTS=1: then it is
(re)written and the test fails, so an update is always a deliberate, reviewed step.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE_ENV = "CHANNEL_SYNC_UPDATE_SNAPSHOTS"


def plain(value: Any) -> Any:
    """A canonical value as JSON-ready data (Decimal and datetime as strings)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def assert_snapshot(name: str, value: Any) -> None:
    """`value` equals the stored snapshot `name` (see the module docstring to update)."""
    path = SNAPSHOTS / f"{name}.json"
    text = json.dumps(plain(value), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if os.environ.get(UPDATE_ENV) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        pytest.fail(f"snapshot {path.name} written; review it, then run without {UPDATE_ENV}")
    if not path.exists():
        pytest.fail(f"no snapshot {path.name}: run with {UPDATE_ENV}=1 and review the file")
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(text), path.name
