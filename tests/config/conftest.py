"""Fixtures for the config tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.config.helpers import EXAMPLES, supply_secrets


@pytest.fixture
def example_dir(tmp_path: Path) -> Path:
    """A private copy of config/examples to break one thing in."""
    target = tmp_path / "cfg"
    shutil.copytree(EXAMPLES, target)
    return target


@pytest.fixture
def example_env(example_dir: Path, tmp_path: Path) -> dict[str, str]:
    """Environment satisfying every secret reference of ``example_dir``."""
    return supply_secrets(example_dir, tmp_path).env
