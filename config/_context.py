"""What a config load resolves against: the config directory, the environment and the main file.

Pydantic gives no way to pass a validation context through ``BaseSettings.__init__``, so the loader
sets this context variable around validation; validators for secrets, paths and the settings
sources read it. Outside a load it falls back to the current directory and ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LoadContext:
    """The directory relative paths resolve against, the environment, and the main file if any."""

    base_dir: Path
    env: Mapping[str, str]
    main_file: Path | None = None


_CURRENT: ContextVar[LoadContext | None] = ContextVar("channel_sync_config_load", default=None)


def current_context() -> LoadContext:
    """The context of the load in progress, or one built from the process when there is none."""
    ctx = _CURRENT.get()
    if ctx is None:
        return LoadContext(base_dir=Path.cwd(), env=os.environ)
    return ctx


@contextmanager
def load_context(ctx: LoadContext) -> Iterator[LoadContext]:
    """Make ``ctx`` the current load context for the duration of the block."""
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)


def resolve_path(path: Path) -> Path:
    """Make ``path`` absolute against the current config directory, expanding ``~``."""
    path = path.expanduser()
    return path if path.is_absolute() else current_context().base_dir / path
