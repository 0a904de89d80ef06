"""``channel-sync check-config DIR``: validate a config directory and print what would run.

Secrets appear only as their references (``env:SHOPIFY_TOKEN``), the database URL with its password
masked. Output is plain text so that it reads the same in a terminal, a pipe or a CI log.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from pydantic import BaseModel, HttpUrl

from config.channels import ChannelConfig
from config.loader import AppConfig, ConfigError, load_config
from config.secrets import Secret

EXIT_OK = 0
EXIT_INVALID = 2
_LABEL_WIDTH = 28


def run_check(config_dir: Path) -> int:
    """Print the effective config of ``config_dir`` and return 0, or its problems and return 2."""
    try:
        config = load_config(config_dir)
    except ConfigError as exc:
        write_problems(exc, sys.stderr)
        return EXIT_INVALID
    sys.stdout.write(describe(config))
    return EXIT_OK


def write_problems(error: ConfigError, out: TextIO) -> None:
    """Write each problem as ``FILE: key.path: message``, then a count."""
    for problem in error.problems:
        out.write(f"{problem}\n")
    count = len(error.problems)
    out.write(f"check-config: {count} problem{'s' if count != 1 else ''} found\n")


def describe(config: AppConfig) -> str:
    """What would run, as plain text, secrets shown only by reference."""
    from sync.db import render_url  # masks the password (and password query keys)

    main = config.main
    hooks, admin = main.listeners.webhooks, main.listeners.admin
    sched, keep = main.schedules, main.retention
    lines = [
        f"config {config.config_dir}: OK",
        "",
        _row("state_dir", str(main.state_dir)),
        _row(
            "database",
            f"{render_url(config.database_url)} (auto_migrate: {_yes(main.database.auto_migrate)}, "
            f"pool_size: {main.database.pool_size})",
        ),
        _row(
            "webhooks listener",
            f"{_address(hooks.host, hooks.port)} (max body {hooks.max_body_bytes} bytes)",
        ),
        _row(
            "admin listener",
            _address(admin.host, admin.port) + (" (HTTPS)" if admin.is_tls else ""),
        ),
        _row("admin token", f"{main.admin.token.reference} (value hidden)"),
        _row("shutdown", f"drain deadline {_secs(main.shutdown.drain_deadline_s)}"),
        _row(
            "schedules",
            f"outbox {_secs(sched.outbox_interval_s)}, "
            f"poll {_secs(sched.default_poll_interval_s)}, "
            f"reconcile {_secs(sched.default_reconcile_interval_s)}, "
            f"lease ttl {_secs(sched.lease_ttl_s)}, heartbeat {_secs(sched.heartbeat_s)}",
        ),
        _row(
            "retention",
            f"webhook inbox {keep.webhook_inbox_days} days, events {keep.events_days} days, "
            f"buyer data {keep.buyer_data_days} days",
        ),
        *_buyer_data_lines(config),
        _row("logging", f"{main.logging.level}, format {main.logging.format}"),
        "",
        f"channels ({len(config.channels)}){':' if config.channels else ''}",
    ]
    for channel in config.channels.values():
        lines.extend(_channel_lines(channel))
    return "\n".join(lines) + "\n"


def _buyer_data_lines(config: AppConfig) -> list[str]:
    """Where the buyer-data key comes from and its id, never the key."""
    from sync.sealing import KEY_FILE_NAME, SealingError, decode_key, key_id

    settings = config.main.buyer_data
    if settings.key is not None:
        current = f"{settings.key.reference} (id {key_id(decode_key(settings.key.reveal()))})"
    else:
        path = config.main.state_dir / KEY_FILE_NAME
        try:
            found = decode_key(path.read_text(encoding="ascii"), str(path))
            current = f"generated, {path} (id {key_id(found)})"
        except FileNotFoundError:
            current = f"none set: generated at {path} on first start"
        except (OSError, SealingError) as exc:
            current = f"generated, {path}: unusable ({exc})"
    lines = [_row("buyer data key", current)]
    for n, key in enumerate(settings.previous_keys):
        label = "previous keys" if n == 0 else ""
        lines.append(_row(label, f"{key.reference} (id {key_id(decode_key(key.reveal()))})"))
    return lines


def _channel_lines(channel: ChannelConfig) -> list[str]:
    stock = channel.stock
    lines = [
        f"  {channel.name} ({channel.kind}, {'enabled' if channel.enabled else 'disabled'})",
        _row("locations", ", ".join(channel.locations), indent=4),
        _row(
            "stock",
            f"buffer {stock.buffer}, percent {stock.percent}, "
            f"max shown {_value(stock.max_shown)}, zero at or below {stock.zero_at_or_below}",
            indent=4,
        ),
        _row(
            "schedule",
            f"poll {_secs(channel.schedule.poll_interval_s)}, "
            f"reconcile {_secs(channel.schedule.reconcile_interval_s)}",
            indent=4,
        ),
    ]
    common = set(ChannelConfig.model_fields)
    for key in type(channel).model_fields:
        if key not in common:
            lines.append(_row(key, _value(getattr(channel, key)), indent=4))
    return lines


def _value(value: object) -> str:
    """Render a setting; a Secret only ever as its reference."""
    if value is None:
        return "-"
    if isinstance(value, Secret):
        return value.reference
    if isinstance(value, HttpUrl):
        return str(value)
    if isinstance(value, bool):
        return _yes(value)
    if isinstance(value, list | tuple):
        return ", ".join(_value(item) for item in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_value(v)}" for k, v in value.items()) or "-"
    if isinstance(value, BaseModel):
        return ", ".join(f"{k}={_value(getattr(value, k))}" for k in type(value).model_fields)
    return str(value)


def _row(label: str, text: str, indent: int = 0) -> str:
    return f"{' ' * indent}{label:<{_LABEL_WIDTH - indent}} {text}"


def _address(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" + (" (a free port)" if port == 0 else "")


def _secs(seconds: float) -> str:
    return f"{seconds:g}s"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
