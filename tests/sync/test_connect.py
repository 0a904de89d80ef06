"""The connect commands' storage side: the 0600 credential file and the messages around it."""

from __future__ import annotations

import stat
from pathlib import Path

from sync.connect import (
    callback_path,
    connected_message,
    public_callback_url,
    secret_file,
    write_secret,
)


def test_a_secret_replaces_an_older_file_and_is_never_readable_by_others(tmp_path: Path) -> None:
    target = secret_file(tmp_path / "state", "shop", "access_token")
    assert target == tmp_path / "state" / "credentials" / "shop.access_token"
    write_secret(target, "first")
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    target.chmod(0o644)
    leftover = target.with_name(f".{target.name}.partial")
    leftover.write_text("half-written")
    leftover.chmod(0o644)
    write_secret(target, "second")
    assert target.read_text() == "second\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not leftover.exists()


def test_the_callback_sits_beside_the_public_webhook_url() -> None:
    path = callback_path("shopify", "main")
    assert path == "/oauth/shopify/main/callback"
    assert (
        public_callback_url("https://sync.example.com/webhooks/main?x=1", path)
        == "https://sync.example.com/oauth/shopify/main/callback"
    )
    assert public_callback_url(None, path) is None


def test_the_message_names_the_file_reference_never_the_secret(tmp_path: Path) -> None:
    target = tmp_path / "credentials" / "main.access_token"
    fresh = connected_message(
        channel="main", key="access_token", target=target, reference_now=None, note="scopes: x"
    )
    assert f'    access_token = "file:{target}"' in fresh
    assert "scopes: x" in fresh and "restart the daemon" in fresh
    same = connected_message(
        channel="main",
        key="access_token",
        target=target,
        reference_now=f"file:{target}",
        note="",
    )
    assert "already has access_token" in same
