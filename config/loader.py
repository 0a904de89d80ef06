"""Load a config directory into an ``AppConfig``, or raise ``ConfigError`` listing every problem.

The directory holds ``channel-sync.toml`` and ``channels/NAME.toml``. Every file is checked even
after the first failure, so an operator fixes everything in one pass. Problem messages are built
from keys, types and references only, never from the values in the files.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import SettingsError

from config._context import LoadContext, load_context
from config.channels import (
    CHANNEL_KINDS,
    SCHEDULE_DEFAULTS_CONTEXT_KEY,
    AmazonChannel,
    ChannelConfig,
)
from config.settings import ENV_NESTED_DELIMITER, ENV_PREFIX, MainSettings, ScheduleSettings

MAIN_FILE_NAME = "channel-sync.toml"
CHANNELS_DIR_NAME = "channels"
NO_KEY = "-"
AMAZON_MAX_BUYER_DATA_DAYS = 30


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the config: where, which key (dotted, or ``-``), and what to do."""

    file: Path
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}"


class ConfigError(Exception):
    """The config directory is unusable; ``problems`` lists everything found (str(): one a line)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


@dataclass(frozen=True)
class AppConfig:
    """A validated config directory: main settings, channels by name, the effective database URL."""

    config_dir: Path
    main: MainSettings
    channels: dict[str, ChannelConfig]
    database_url: str


def load_config(config_dir: Path, *, env: Mapping[str, str] | None = None) -> AppConfig:
    """Read and validate ``config_dir``; secrets are resolved now, against ``env`` or os.environ."""
    config_dir = Path(os.path.abspath(config_dir.expanduser()))
    environ: Mapping[str, str] = dict(os.environ if env is None else env)
    if not config_dir.is_dir():
        what = "is not a directory" if config_dir.exists() else "does not exist"
        raise ConfigError([Problem(config_dir, NO_KEY, f"config directory {what}")])
    problems: list[Problem] = []
    main = _load_main(config_dir, environ, problems)
    schedules = main.schedules if main is not None else ScheduleSettings()
    channels = _load_channels(config_dir, environ, schedules, problems)
    if main is not None:
        problems.extend(_cross_checks(config_dir, environ, main, channels))
    if problems or main is None:
        raise ConfigError(problems)
    return AppConfig(
        config_dir=config_dir,
        main=main,
        channels=dict(sorted(channels.items())),
        database_url=main.database_url,
    )


def _load_main(
    config_dir: Path, env: Mapping[str, str], problems: list[Problem]
) -> MainSettings | None:
    path = config_dir / MAIN_FILE_NAME
    if not path.is_file():
        problems.append(
            Problem(path, NO_KEY, "file not found: copy config/examples/channel-sync.toml")
        )
        return None
    if _read_toml(path, problems) is None:
        return None
    try:
        with load_context(LoadContext(base_dir=config_dir, env=env, main_file=path)):
            return MainSettings()
    except ValidationError as exc:
        problems.extend(_problems_from(exc, path, MainSettings, env))
    except SettingsError as exc:
        problems.append(_problem_from_settings_error(exc, path))
    return None


def _load_channels(
    config_dir: Path, env: Mapping[str, str], schedules: ScheduleSettings, problems: list[Problem]
) -> dict[str, ChannelConfig]:
    directory = config_dir / CHANNELS_DIR_NAME
    if not directory.exists():
        return {}
    if not directory.is_dir():
        problems.append(Problem(directory, NO_KEY, "must be a directory of NAME.toml files"))
        return {}
    channels: dict[str, ChannelConfig] = {}
    files_by_name: dict[str, Path] = {}
    for path in sorted(directory.glob("*.toml")):
        if path.name.startswith("."):
            continue
        channel = _load_channel(path, config_dir, env, schedules, problems)
        if channel is None:
            continue
        folded = channel.name.casefold()
        if folded in files_by_name:
            problems.append(
                Problem(
                    path,
                    "name",
                    f"channel name {channel.name} is already used by {files_by_name[folded]}",
                )
            )
            continue
        files_by_name[folded] = path
        channels[channel.name] = channel
    return channels


def _load_channel(
    path: Path,
    config_dir: Path,
    env: Mapping[str, str],
    schedules: ScheduleSettings,
    problems: list[Problem],
) -> ChannelConfig | None:
    data = _read_toml(path, problems)
    if data is None:
        return None
    known = ", ".join(sorted(CHANNEL_KINDS))
    kind = data.get("kind")
    if kind is None:
        problems.append(Problem(path, "kind", f"missing required key; known kinds: {known}"))
        return None
    model = CHANNEL_KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        problems.append(Problem(path, "kind", f"unknown channel kind; known kinds: {known}"))
        return None
    data.setdefault("name", path.stem)
    try:
        with load_context(LoadContext(base_dir=config_dir, env=env)):
            return model.model_validate(data, context={SCHEDULE_DEFAULTS_CONTEXT_KEY: schedules})
    except ValidationError as exc:
        problems.extend(_problems_from(exc, path, model, {}))
    return None


def _cross_checks(
    config_dir: Path, env: Mapping[str, str], main: MainSettings, channels: dict[str, ChannelConfig]
) -> list[Problem]:
    problems: list[Problem] = []
    amazon = sorted(name for name, c in channels.items() if isinstance(c, AmazonChannel))
    if amazon and main.retention.buyer_data_days > AMAZON_MAX_BUYER_DATA_DAYS:
        loc = ("retention", "buyer_data_days")
        problems.append(
            Problem(
                _env_var_for(loc, env) or config_dir / MAIN_FILE_NAME,
                ".".join(loc),
                f"Amazon requires deleting buyer data within {AMAZON_MAX_BUYER_DATA_DAYS} days "
                f"of delivery (amazon channels: {', '.join(amazon)})",
            )
        )
    return problems


def _read_toml(path: Path, problems: list[Problem]) -> dict[str, Any] | None:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's messages name the position ("... (at line 3, column 9)"), not the text.
        problems.append(Problem(path, NO_KEY, f"TOML syntax error: {exc}"))
    except UnicodeDecodeError:
        problems.append(Problem(path, NO_KEY, "not UTF-8 text"))
    except OSError as exc:
        problems.append(Problem(path, NO_KEY, f"cannot be read: {exc.strerror}"))
    return None


def _problems_from(
    exc: ValidationError, path: Path, model: type[BaseModel], env: Mapping[str, str]
) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(error["loc"])
        key = ".".join(str(part) for part in loc) or NO_KEY
        problems.append(Problem(_env_var_for(loc, env) or path, key, _message(error, model)))
    return problems


def _message(error: ErrorDetails, model: type[BaseModel]) -> str:
    if error["type"] == "missing":
        return "missing required key"
    if error["type"] != "extra_forbidden":
        return error["msg"]
    loc = tuple(error["loc"])
    parent = _model_at(model, loc[:-1])
    if parent is None or not loc:
        return "unknown key"
    known = sorted(parent.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"unknown key ({hint}known keys: {', '.join(known)})"


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _env_var_for(loc: tuple[int | str, ...], env: Mapping[str, str]) -> Path | None:
    """The ``CHANNEL_SYNC_...`` variable that supplied the value at ``loc``, as ``$NAME``."""
    wanted = [str(part).casefold() for part in loc]
    best: tuple[int, str] | None = None
    for name, value in env.items():
        if not value or not name.upper().startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX) :].casefold().split(ENV_NESTED_DELIMITER)
        if path == wanted[: len(path)] and (best is None or len(path) > best[0]):
            best = (len(path), name)
    return Path(f"${best[1]}") if best is not None else None


def _problem_from_settings_error(exc: SettingsError, path: Path) -> Problem:
    # pydantic-settings names the field, not the value: 'error parsing value for field "x" ...'.
    match = re.search(r'field "([^"]+)"', str(exc))
    if match is None:
        return Problem(path, NO_KEY, "an environment override cannot be parsed")
    field = match.group(1)
    return Problem(
        Path(f"${ENV_PREFIX}{field.upper()}"),
        field,
        "cannot parse this environment override (a table must be given as JSON)",
    )
