"""Where the marketplaces' official specs live (../shared/specs), for the tests that read them.

They are data kept beside the repository, not in it: a user's clone has no ../shared, and the
tests that need them skip there with a reason saying so. Under CI (`CI=true`) the files are always
present, so a missing file is an error there, not a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SPECS_DIR = REPO_ROOT.parent / "shared" / "specs"


def _is_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def specs_dir(*parts: str) -> Path:
    """`../shared/specs/<parts>` if it exists; otherwise skip the test (fail it under CI=true)."""
    path = SPECS_DIR.joinpath(*parts)
    if not path.exists():
        reason = f"marketplace specs absent: {path} (they live in ../shared/specs beside the repo)"
        if _is_ci():
            pytest.fail(f"{reason}; CI=true, so this is an error, not a skip")
        pytest.skip(reason)
    return path
