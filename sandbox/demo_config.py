"""The config directory `channel-sync demo` writes under its state dir: the shipped demo main file
(config/demo/channel-sync.toml) and one channel file per sandbox marketplace, pointing at it.

Secrets never go into the channel files: each is a `file:` reference to a file of its own under
`STATE/secrets/` that only the owner can read, as a seller would keep them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

MAIN_FILE = "channel-sync.toml"
CHANNEL_KINDS = ("shopify", "amazon", "ebay")
"""The demo's channels, one per marketplace, each named after its kind."""


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo keeps what it writes."""

    state_dir: Path

    @property
    def config_dir(self) -> Path:
        """The config directory the daemon runs on."""
        return self.state_dir / "config"

    @property
    def secrets_dir(self) -> Path:
        """One file per secret, mode 0600, in a directory only the owner can enter."""
        return self.state_dir / "secrets"

    @property
    def sandboxes_file(self) -> Path:
        """The sandboxes' ready file (addresses and secrets, mode 0600)."""
        return self.state_dir / "sandboxes.json"

    @property
    def demo_json(self) -> Path:
        """`demo.json`: where the admin API and the sandboxes are (DESIGN.md, Interfaces)."""
        return self.state_dir / "demo.json"

    @property
    def admin_token_file(self) -> Path:
        """The admin API's bearer token."""
        return self.state_dir / "admin-token"

    @property
    def database(self) -> Path:
        """The SQLite store (the config leaves `database.url` unset: state_dir/channel-sync.db)."""
        return self.state_dir / "channel-sync.db"


def write_main_file(paths: DemoPaths) -> Path:
    """Copy the shipped demo main file into the config directory (no channels yet)."""
    channels = paths.config_dir / "channels"
    channels.mkdir(parents=True, exist_ok=True)
    for stale in channels.glob("*.toml"):
        stale.unlink()
    shipped = files("config") / "demo" / MAIN_FILE
    with shipped.open("rb") as source, (paths.config_dir / MAIN_FILE).open("wb") as target:
        shutil.copyfileobj(source, target)
    return paths.config_dir


def write_channel_files(
    paths: DemoPaths, sandboxes: Mapping[str, Mapping[str, Any]], webhooks_url: str
) -> dict[str, Path]:
    """channels/shopify.toml, amazon.toml and ebay.toml for the sandboxes' ready-file entries;
    `webhooks_url` is the daemon's webhook listener (`http://host:port`)."""
    paths.secrets_dir.mkdir(mode=0o700, exist_ok=True)
    os.chmod(paths.secrets_dir, 0o700)
    writers = {"shopify": _shopify, "amazon": _amazon, "ebay": _ebay}
    written = {}
    for kind in CHANNEL_KINDS:
        body = writers[kind](paths, sandboxes[kind], f"{webhooks_url}/webhooks/{kind}")
        path = paths.config_dir / "channels" / f"{kind}.toml"
        path.write_text(body)
        written[kind] = path
    return written


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, whole or not at all."""
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(partial, path)


def _secret(paths: DemoPaths, name: str, value: object) -> str:
    """Store one secret in its own 0600 file; the reference to put in a channel file."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"the sandboxes' ready file has no {name}")
    path = paths.secrets_dir / name
    write_private(path, value)
    return f"file:{path}"


def _toml(value: object) -> str:
    """A TOML string or array of strings (JSON's escapes are TOML's for these)."""
    return json.dumps(value)


def _shopify(paths: DemoPaths, info: Mapping[str, Any], webhook_url: str) -> str:
    location = next(iter(info["locations"].values()))
    return (
        "# The demo's Shopify channel: the sandbox store `channel-sync demo` started.\n"
        'kind = "shopify"\n'
        'locations = ["default"]\n'
        f"shop = {_toml(info['shop'])}\n"
        f"access_token = {_toml(_secret(paths, 'shopify-access-token', info['token']))}\n"
        f"webhook_secrets = [{_toml(_secret(paths, 'shopify-webhook-secret', info['secret']))}]\n"
        f"api_base_url = {_toml(info['api_base_url'])}\n"
        f"webhook_url = {_toml(webhook_url)}\n"
        "notify_customer = false\n"
        "[location_ids]\n"
        f"default = {_toml(location)}\n"
        "[schedule]\n"
        "# Webhooks bring most orders within a second; the poll catches the ones lost.\n"
        "poll_interval_s = 5\n"
        "reconcile_interval_s = 300\n"
    )


def _amazon(paths: DemoPaths, info: Mapping[str, Any], _webhook_url: str) -> str:
    lines = [
        "# The demo's Amazon channel: the sandbox seller account `channel-sync demo` started.",
        'kind = "amazon"',
        'locations = ["default"]',
        f"seller_id = {_toml(info['seller_id'])}",
        'region = "na"',
        f"marketplace_ids = {_toml(info['marketplace_ids'])}",
        f"lwa_client_id = {_toml(info['client_id'])}",
        f"lwa_client_secret = {_toml(_secret(paths, 'amazon-lwa-client-secret', info['client_secret']))}",
        f"refresh_token = {_toml(_secret(paths, 'amazon-refresh-token', info['refresh_token']))}",
        f"api_base_url = {_toml(info['api_base_url'])}",
        f"lwa_token_url = {_toml(info['lwa_token_url'])}",
    ]
    if info.get("sqs_queue_url"):
        # moto's loopback SQS server checks no signature; the key pair is a placeholder.
        lines += [
            f"sqs_queue_url = {_toml(info['sqs_queue_url'])}",
            f"sqs_endpoint_url = {_toml(info['sqs_endpoint_url'])}",
            'aws_access_key_id = "sandbox"',
            f"aws_secret_access_key = {_toml(_secret(paths, 'amazon-sqs-secret-key', 'sandbox'))}",
        ]
    lines += [
        "[schedule]",
        "# searchOrders allows a burst of 20, then one call every 3 minutes.",
        "poll_interval_s = 30",
        "reconcile_interval_s = 300",
    ]
    return "\n".join(lines) + "\n"


def _ebay(paths: DemoPaths, info: Mapping[str, Any], webhook_url: str) -> str:
    lines = [
        "# The demo's eBay channel: the sandbox seller account `channel-sync demo` started.",
        'kind = "ebay"',
        'locations = ["default"]',
        f"client_id = {_toml(info['client_id'])}",
        f"client_secret = {_toml(_secret(paths, 'ebay-client-secret', info['client_secret']))}",
        f"refresh_token = {_toml(_secret(paths, 'ebay-refresh-token', info['refresh_token']))}",
        f"marketplace_id = {_toml(info['marketplace_id'])}",
    ]
    # The sandbox makes one up when it pushes to the daemon; any valid token otherwise.
    token = info.get("verification_token") or secrets.token_urlsafe(32)
    lines += [
        f"verification_token = {_toml(_secret(paths, 'ebay-verification-token', token))}",
        f"notification_endpoint_url = {_toml(info.get('notify_url') or webhook_url)}",
        'stock_api = "trading"',
        f"api_base_url = {_toml(info['api_base_url'])}",
        f"trading_api_url = {_toml(info['trading_url'])}",
        f"identity_url = {_toml(info['identity_url'])}",
        "[schedule]",
        "poll_interval_s = 3",
        "reconcile_interval_s = 300",
    ]
    return "\n".join(lines) + "\n"
