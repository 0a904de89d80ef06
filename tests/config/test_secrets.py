"""Secret references: resolution, refusal of literals and loose files, and never showing a value."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from config._context import LoadContext, load_context
from config.channels import ShopifyChannel
from config.secrets import MASK, Secret, SecretError, known_secret_values


def _resolve(reference: str, env: dict[str, str], base_dir: Path) -> Secret:
    with load_context(LoadContext(base_dir=base_dir, env=env)):
        return Secret.from_reference(reference)


def test_repr_and_str_are_masked(tmp_path: Path) -> None:
    secret = _resolve("env:TOKEN", {"TOKEN": "hunter2-value"}, tmp_path)
    assert repr(secret) == MASK == "**********"
    assert str(secret) == MASK
    assert f"{secret}" == MASK
    assert "hunter2-value" not in repr([secret, {"k": secret}])
    assert secret.reveal() == "hunter2-value"
    assert secret.reference == "env:TOKEN"


def test_resolved_values_are_registered_for_redaction(tmp_path: Path) -> None:
    _resolve("env:TOKEN", {"TOKEN": "register-me-3141"}, tmp_path)
    assert "register-me-3141" in known_secret_values()


def test_equality_compares_values_not_references() -> None:
    assert Secret("env:A", "same") == Secret("file:/b", "same")
    assert Secret("env:A", "one") != Secret("env:A", "two")
    assert Secret("env:A", "one") != "one"


def test_env_reference_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="environment variable NOPE is not set"):
        _resolve("env:NOPE", {}, tmp_path)
    with pytest.raises(SecretError, match="NOPE is empty"):
        _resolve("env:NOPE", {"NOPE": ""}, tmp_path)
    with pytest.raises(SecretError, match="letters, digits and underscores"):
        _resolve("env:not-a-name", {}, tmp_path)


def test_literal_is_refused_without_echo(tmp_path: Path) -> None:
    with pytest.raises(SecretError) as caught:
        _resolve("shpat_literal_value", {}, tmp_path)
    assert "env:VAR, file:/path or credential:NAME" in str(caught.value)
    assert "shpat_literal_value" not in str(caught.value)


def test_credential_reads_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "shop-token").write_text("from-systemd\n")
    secret = _resolve("credential:shop-token", {"CREDENTIALS_DIRECTORY": str(tmp_path)}, tmp_path)
    assert secret.reveal() == "from-systemd"


def test_credential_without_directory_or_file(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="CREDENTIALS_DIRECTORY"):
        _resolve("credential:shop-token", {}, tmp_path)
    with pytest.raises(SecretError, match="credential missing not found"):
        _resolve("credential:missing", {"CREDENTIALS_DIRECTORY": str(tmp_path)}, tmp_path)
    with pytest.raises(SecretError, match="without '/'"):
        _resolve("credential:../etc/passwd", {"CREDENTIALS_DIRECTORY": str(tmp_path)}, tmp_path)


def test_file_refused_at_0644_accepted_at_0600(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("file-value\n\n")
    path.chmod(0o644)
    with pytest.raises(SecretError, match="chmod 600") as caught:
        _resolve("file:token", {}, tmp_path)
    assert "file-value" not in str(caught.value)

    path.chmod(0o600)
    assert _resolve("file:token", {}, tmp_path).reveal() == "file-value"
    assert _resolve(f"file:{path}", {}, Path("/")).reveal() == "file-value"


def test_file_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="does not exist"):
        _resolve("file:absent", {}, tmp_path)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(SecretError, match="is empty"):
        _resolve("file:empty", {}, tmp_path)


def _shopify(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "kind": "shopify",
        "name": "shop",
        "shop": "x.myshopify.com",
        "access_token": "env:SHOP_TOKEN",
        "webhook_secrets": ["env:SHOP_HOOK"],
    }
    data.update(overrides)
    return data


def test_secret_values_absent_from_validation_errors(tmp_path: Path) -> None:
    env = {"SHOP_TOKEN": "resolved-canary-271", "SHOP_HOOK": "hook-canary-828"}
    data = _shopify(webhook_secrets=["env:SHOP_HOOK", "literal-canary-161"], stock={"percent": 0})
    with (
        load_context(LoadContext(base_dir=tmp_path, env=env)),
        pytest.raises(ValidationError) as caught,
    ):
        ShopifyChannel.model_validate(data)
    # str()/repr() hide inputs (hide_input_in_errors); errors() would hand them over on request.
    text = str(caught.value) + repr(caught.value) + repr(caught.value.errors(include_input=False))
    for canary in ("resolved-canary-271", "hook-canary-828", "literal-canary-161"):
        assert canary not in text
    assert "webhook_secrets.1" in str(caught.value)


def test_model_repr_and_dump_show_no_values(tmp_path: Path) -> None:
    env = {"SHOP_TOKEN": "dump-canary-577", "SHOP_HOOK": "dump-canary-578"}
    with load_context(LoadContext(base_dir=tmp_path, env=env)):
        channel = ShopifyChannel.model_validate(_shopify())
    assert isinstance(channel.access_token, Secret)
    assert channel.access_token.reveal() == "dump-canary-577"
    for text in (repr(channel), str(channel), str(channel.model_dump()), channel.model_dump_json()):
        assert "dump-canary" not in text
    assert channel.model_dump()["access_token"] == "env:SHOP_TOKEN"
