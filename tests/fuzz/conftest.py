"""The fuzz tests run on a real SQLite store only: they prove the HTTP edges, not the backends."""

from __future__ import annotations

import pytest


@pytest.fixture
def db_backend() -> str:
    """Overrides the suite's parametrized backend: SQLite, a file in tmp_path."""
    return "sqlite"
