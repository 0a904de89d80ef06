"""One channel file read before its credential exists, for the `connect` commands.

A channel is connected before its token is: the file's reference to it (`access_token =
"file:..."`) does not resolve yet, or the key is not written at all. `load_pending_channel` reads
the main file and that one channel file as `load_config` does (every other key checked, every
other secret resolved, the same problem messages), with only the key being connected set aside.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from config._context import LoadContext, load_context
from config.channels import CHANNEL_KINDS, SCHEDULE_DEFAULTS_CONTEXT_KEY, ChannelConfig
from config.loader import (
    CHANNELS_DIR_NAME,
    NO_KEY,
    ConfigError,
    Problem,
    _load_main,
    _problems_from,
    _read_toml,
)
from config.secrets import Secret
from config.settings import MainSettings

PENDING_REFERENCE = "(not connected yet)"


@dataclass(frozen=True)
class PendingChannel:
    """The main settings, the channel (its pending key holds a placeholder, never to be used),
    the channel's file, and the reference that file gives for the pending key now, if any."""

    main: MainSettings
    channel: ChannelConfig
    file: Path
    reference: str | None


def load_pending_channel(
    config_dir: Path, name: str, *, kind: str, key: str, env: Mapping[str, str] | None = None
) -> PendingChannel:
    """Read `config_dir` for connecting channel `name` (of `kind`) whose secret `key` may not
    exist yet; ConfigError listing every problem otherwise."""
    config_dir = Path(os.path.abspath(config_dir.expanduser()))
    environ: Mapping[str, str] = dict(os.environ if env is None else env)
    problems: list[Problem] = []
    main = _load_main(config_dir, environ, problems)
    path = _channel_file(config_dir, name, problems)
    data = _read_toml(path, problems) if path is not None else None
    if main is None or path is None or data is None:
        raise ConfigError(problems or [Problem(config_dir, NO_KEY, "cannot be read")])
    if data.get("kind") != kind:
        problems.append(Problem(path, "kind", f"channel {name} is not a {kind} channel"))
        raise ConfigError(problems)
    model = CHANNEL_KINDS[kind]
    reference = data.pop(key, None)
    data.setdefault("name", path.stem)
    # Stands in for the secret being connected; its value is random and never used.
    data[key] = Secret(PENDING_REFERENCE, secrets.token_hex(16))
    try:
        with load_context(LoadContext(base_dir=config_dir, env=environ)):
            channel = model.model_validate(
                data, context={SCHEDULE_DEFAULTS_CONTEXT_KEY: main.schedules}
            )
    except ValidationError as exc:
        problems.extend(_problems_from(exc, path, model, {}))
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return PendingChannel(
        main=main,
        channel=channel,
        file=path,
        reference=reference if isinstance(reference, str) else None,
    )


def _channel_file(config_dir: Path, name: str, problems: list[Problem]) -> Path | None:
    """The file of channel `name`: the one whose `name` key, or else file name, is `name`."""
    directory = config_dir / CHANNELS_DIR_NAME
    for path in sorted(directory.glob("*.toml")) if directory.is_dir() else []:
        if path.name.startswith("."):
            continue
        data = _read_toml(path, [])  # other files' own problems are not this command's
        if data is None and path.stem == name:
            _read_toml(path, problems)  # report why this channel's own file cannot be read
            return None
        if data is not None and data.get("name", path.stem) == name:
            return path
    problems.append(Problem(directory, NO_KEY, f"no channel {name!r} (no {name}.toml here)"))
    return None


__all__ = ["PENDING_REFERENCE", "PendingChannel", "load_pending_channel"]
