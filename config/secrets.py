"""Secrets as references (``env:``, ``file:``, ``credential:``), resolved at load and never shown.

A config file names where a secret lives, never the secret itself. Resolution happens while the
config is validated, so a missing variable or a file others can read is reported on that key.
Every resolved value is recorded in a process-wide registry the log redaction filter reads.
No message in this module ever contains a secret's value.
"""

from __future__ import annotations

import hmac
import re
import stat
import threading
from pathlib import Path
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from config._context import current_context, resolve_path

MASK = "**********"
REFERENCE_FORMS = "env:VAR, file:/path or credential:NAME"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KNOWN_LOCK = threading.Lock()
_KNOWN_VALUES: set[str] = set()


class SecretError(ValueError):
    """A secret reference is malformed or cannot be resolved; the message never holds the value."""


def register_secret_value(value: str) -> None:
    """Record ``value`` so that log redaction hides it (e.g. a password inside a database URL)."""
    if value:
        with _KNOWN_LOCK:
            _KNOWN_VALUES.add(value)


def known_secret_values() -> frozenset[str]:
    """Every secret value resolved so far in this process, for the log redaction filter."""
    with _KNOWN_LOCK:
        return frozenset(_KNOWN_VALUES)


class Secret:
    """A resolved secret: ``reveal()`` gives the value, everything else shows the mask."""

    __slots__ = ("_reference", "_value")

    def __init__(self, reference: str, value: str) -> None:
        if not value:
            raise SecretError(f"{reference} is empty")
        self._reference = reference
        self._value = value
        register_secret_value(value)

    @classmethod
    def from_reference(cls, reference: str) -> Secret:
        """Resolve ``reference`` against the current load context (config dir, environment)."""
        return cls(reference, _resolve(reference))

    def reveal(self) -> str:
        """The secret's value: pass it to the API client, never to a log or a message."""
        return self._value

    @property
    def reference(self) -> str:
        """Where the secret comes from (e.g. ``env:SHOPIFY_TOKEN``): safe to print."""
        return self._reference

    def __repr__(self) -> str:
        return MASK

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """Validate a reference string into a resolved Secret; serialise back to the reference."""
        return core_schema.no_info_plain_validator_function(
            _validate_secret,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda secret: secret.reference
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """A secret is written as a reference string."""
        return {"type": "string", "description": f"secret reference: {REFERENCE_FORMS}"}


def _validate_secret(value: object) -> Secret:
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError(
            "secret_type",
            "a secret must be a reference string: {forms}",
            {"forms": REFERENCE_FORMS},
        )
    try:
        return Secret.from_reference(value)
    except SecretError as exc:
        # The reason is built by this module from the reference only, never from a value.
        raise PydanticCustomError("secret", "{reason}", {"reason": str(exc)}) from None


def _resolve(reference: str) -> str:
    scheme, sep, rest = reference.partition(":")
    if sep and scheme == "env":
        return _from_env(rest)
    if sep and scheme == "file":
        return _from_file(rest)
    if sep and scheme == "credential":
        return _from_credential(rest)
    raise SecretError(f"literal secrets are not accepted: use a reference, {REFERENCE_FORMS}")


def _from_env(name: str) -> str:
    if not _ENV_NAME.match(name):
        raise SecretError("env: needs a variable name of letters, digits and underscores")
    env = current_context().env
    if name not in env:
        raise SecretError(f"environment variable {name} is not set")
    if not env[name]:
        raise SecretError(f"environment variable {name} is empty")
    return env[name]


def _from_file(raw_path: str) -> str:
    if not raw_path:
        raise SecretError("file: needs a path, e.g. file:/etc/channel-sync/secrets/token")
    path = resolve_path(Path(raw_path))
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SecretError(f"secret file {path} does not exist") from None
    except OSError as exc:
        raise SecretError(f"secret file {path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SecretError(f"secret file {path} is not a regular file")
    if info.st_mode & 0o077:
        raise SecretError(
            f"secret file {path} is readable or writable by group/other "
            f"(mode {stat.S_IMODE(info.st_mode):04o}): run chmod 600 {path}"
        )
    return _read_value(path, "secret file")


def _from_credential(name: str) -> str:
    if not name or "/" in name or name in {".", ".."}:
        raise SecretError("credential: needs a credential name without '/'")
    directory = current_context().env.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise SecretError(
            f"credential:{name} needs $CREDENTIALS_DIRECTORY, which is unset "
            "(set LoadCredential= in the systemd unit)"
        )
    path = Path(directory) / name
    if not path.is_file():
        raise SecretError(f"credential {name} not found in $CREDENTIALS_DIRECTORY ({directory})")
    return _read_value(path, "credential file")


def _read_value(path: Path, what: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SecretError(f"{what} {path} cannot be read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"{what} {path} is not UTF-8 text") from None
    text = text.rstrip("\r\n")
    if not text:
        raise SecretError(f"{what} {path} is empty")
    return text


__all__ = [
    "MASK",
    "Secret",
    "SecretError",
    "known_secret_values",
    "register_secret_value",
]
