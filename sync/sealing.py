"""Buyers' personal data sealed at rest: AES-256-GCM under a keyring whose keys can rotate.

A plain dump of the store (the SQLite file, a backup, a PostgreSQL dump) must not hold a buyer's
name, address, e-mail or phone. Every such value is sealed before it is written and opened only
where the seller needs it (one order's detail, the inbox worker reading a delivery).

A sealed value is `VERSION | key id (8 bytes) | nonce (12 bytes) | ciphertext and tag`. The key
id is derived from the key (SHA-256 over a fixed label and the key), so operators never manage
ids by hand and the id of a key is the same on every instance. The associated data binds a value
to the row it belongs to (`ship_to_context`, `inbox_context`): a value copied to another row
fails to open, as does a tampered one. The key id is also stored beside each value, so a
rotation finds what is still under an old key without opening anything.

Errors (never holding a key or a plaintext):

    SealingError
     +-- UnknownKeyError   sealed under a key this keyring does not hold (carries the key id)
     +-- BrokenSealError   tampered, truncated, or bound to another row
     +-- KeyFormatError    a key that is not 32 bytes, base64-encoded

The daemon loads its keyring once at start (`install_keyring`); code that seals or opens asks
`current_keyring()`. A process that never installed one (a library user, a test) gets a throwaway
key, with a warning: what it seals cannot be opened by another process.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KEY_BYTES",
    "KEY_FILE_NAME",
    "BrokenSealError",
    "KeyFormatError",
    "Keyring",
    "SealingError",
    "UnknownKeyError",
    "current_keyring",
    "decode_key",
    "encode_key",
    "inbox_context",
    "install_keyring",
    "key_id",
    "load_keyring",
    "load_or_create_key_file",
    "open_json",
    "seal_json",
    "seal_ship_to",
    "sealed_key_id",
    "ship_to_context",
    "write_new_key_file",
]

log = logging.getLogger(__name__)

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12
KEY_ID_BYTES = 8
VERSION = b"\x01"
_HEADER = len(VERSION) + KEY_ID_BYTES + NONCE_BYTES
_KEY_ID_LABEL = b"channel-sync buyer-data key id v1\x00"
KEY_FILE_NAME = "buyer-data.key"
"""The key generated under STATE_DIR when the config names none."""


class SealingError(Exception):
    """A sealed value could not be opened, or a key could not be used; never holds plaintext."""


class UnknownKeyError(SealingError):
    """The value was sealed under a key this keyring does not hold."""

    def __init__(self, key_id: str) -> None:
        super().__init__(
            f"buyer data sealed under key id {key_id}, which is not in the keyring; "
            "add that key to [buyer_data] previous_keys"
        )
        self.key_id = key_id


class BrokenSealError(SealingError):
    """The value was altered, cut short, or belongs to another row."""


class KeyFormatError(SealingError, ValueError):
    """A key is not 32 random bytes, base64-encoded."""


def key_id(key: bytes) -> str:
    """The short stable id of a key (16 hex digits), safe to print and store."""
    return hashlib.sha256(_KEY_ID_LABEL + key).digest()[:KEY_ID_BYTES].hex()


def decode_key(text: str, name: str = "key") -> bytes:
    """A key from its base64 text; KeyFormatError names `name`, never the value."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError(f"{name} is not base64 (expected 32 random bytes, base64)") from None
    if len(raw) != KEY_BYTES:
        raise KeyFormatError(
            f"{name} decodes to {len(raw)} bytes; a buyer-data key is exactly {KEY_BYTES} "
            "random bytes, base64-encoded (e.g. `head -c 32 /dev/urandom | base64`)"
        )
    return raw


def encode_key(key: bytes) -> str:
    """A key as the base64 text the config and key files hold."""
    return base64.b64encode(key).decode("ascii")


def sealed_key_id(sealed: bytes) -> str:
    """The id of the key a sealed value was sealed under (read from its header)."""
    if len(sealed) < _HEADER or sealed[:1] != VERSION:
        raise BrokenSealError("not a sealed value of a known version")
    return sealed[1 : 1 + KEY_ID_BYTES].hex()


class Keyring:
    """The current key (seals and opens) and older keys (only open), by key id."""

    def __init__(self, current: bytes, previous: Iterable[bytes] = ()) -> None:
        for key in (current, *previous):
            if len(key) != KEY_BYTES:
                raise KeyFormatError(f"a buyer-data key is exactly {KEY_BYTES} bytes")
        self._current_id = key_id(current)
        self._ciphers = {key_id(key): AESGCM(key) for key in previous}
        self._ciphers[self._current_id] = AESGCM(current)

    @classmethod
    def generate(cls) -> Keyring:
        """A keyring with one fresh random key."""
        return cls(AESGCM.generate_key(bit_length=KEY_BYTES * 8))

    @property
    def current_id(self) -> str:
        """The id of the key new values are sealed under."""
        return self._current_id

    @property
    def key_ids(self) -> frozenset[str]:
        """Every key id this keyring can open."""
        return frozenset(self._ciphers)

    def __repr__(self) -> str:
        older = sorted(self.key_ids - {self._current_id})
        return f"Keyring(current={self._current_id!r}, previous={older!r})"

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        """`plaintext` sealed under the current key, bound to `context`."""
        nonce = os.urandom(NONCE_BYTES)
        header = VERSION + bytes.fromhex(self._current_id) + nonce
        return header + self._ciphers[self._current_id].encrypt(nonce, plaintext, context)

    def open(self, sealed: bytes, context: bytes) -> bytes:
        """The plaintext of a value sealed by `seal` with the same `context`."""
        found = sealed_key_id(sealed)
        cipher = self._ciphers.get(found)
        if cipher is None:
            raise UnknownKeyError(found)
        nonce = sealed[1 + KEY_ID_BYTES : _HEADER]
        try:
            return cipher.decrypt(nonce, sealed[_HEADER:], context)
        except InvalidTag:
            raise BrokenSealError(
                f"buyer data under key id {found} failed its integrity check "
                "(altered, or copied from another row)"
            ) from None


def ship_to_context(channel_id: int, external_id: str) -> bytes:
    """Associated data of an order's sealed ship-to: its table, channel and channel order id."""
    return b"orders.ship_to\x00%d\x00%s" % (channel_id, external_id.encode())


def inbox_context(channel_id: int, delivery_id: str) -> bytes:
    """Associated data of a sealed inbox body: its table, channel and delivery id."""
    return b"webhook_inbox.body\x00%d\x00%s" % (channel_id, delivery_id.encode())


def seal_json(keyring: Keyring, value: Mapping[str, Any], context: bytes) -> bytes:
    """A JSON object sealed under the current key."""
    return keyring.seal(json.dumps(value, separators=(",", ":")).encode(), context)


def open_json(keyring: Keyring, sealed: bytes, context: bytes) -> dict[str, Any]:
    """The JSON object `seal_json` sealed."""
    value = json.loads(keyring.open(sealed, context))
    if not isinstance(value, dict):
        raise BrokenSealError("sealed buyer data is not a JSON object")
    return value


# The process's keyring ------------------------------------------------------------------------

_lock = threading.Lock()
_installed: Keyring | None = None


def install_keyring(keyring: Keyring) -> None:
    """Make `keyring` the one this process seals and opens with (the daemon, at start)."""
    global _installed
    with _lock:
        _installed = keyring


def current_keyring() -> Keyring:
    """The installed keyring; a throwaway one (with a warning) when none was installed."""
    global _installed
    with _lock:
        if _installed is None:
            _installed = Keyring.generate()
            log.warning(
                "no buyer-data key loaded in this process: sealing with a throwaway key "
                "(id %s) that no other process can open",
                _installed.current_id,
            )
        return _installed


# Key files ------------------------------------------------------------------------------------


def write_new_key_file(path: Path) -> bytes:
    """Write 32 fresh random bytes (base64) to `path`, mode 0600 from the first byte; refuse to
    overwrite. Answer the key."""
    key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, (encode_key(key) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link() fails when `path` exists: two processes starting at once keep the first key.
        os.link(partial, path)
    finally:
        partial.unlink()
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return key


def load_or_create_key_file(path: Path) -> tuple[bytes, bool]:
    """The key kept at `path`, created on first use (like an SSH host key); (key, created)."""
    created = False
    if not path.exists():
        try:
            write_new_key_file(path)
            created = True
        except FileExistsError:
            pass  # another process created it first: use theirs
    if path.stat().st_mode & 0o077:
        raise KeyFormatError(f"{path} must not be readable by others (chmod 600)")
    return decode_key(path.read_text(encoding="ascii"), str(path)), created


# Row values -----------------------------------------------------------------------------------


def seal_ship_to(
    keyring: Keyring, channel_id: int, external_id: str, ship_to: Mapping[str, Any] | None
) -> tuple[bytes | None, str | None]:
    """(sealed ship-to, key id) for an order's row; (None, None) when it has no ship-to."""
    if ship_to is None:
        return None, None
    sealed = seal_json(keyring, ship_to, ship_to_context(channel_id, external_id))
    return sealed, keyring.current_id


def load_keyring(
    key: str | None, previous_keys: Iterable[str], state_dir: Path
) -> tuple[Keyring, Path | None]:
    """The keyring the config names: `key` (base64) and older keys; with no `key`, the one kept at
    STATE_DIR/buyer-data.key, created on first use. Answers (keyring, key file created now)."""
    previous = [
        decode_key(text, f"buyer_data.previous_keys[{n}]") for n, text in enumerate(previous_keys)
    ]
    if key is not None:
        return Keyring(decode_key(key, "buyer_data.key"), previous), None
    path = state_dir / KEY_FILE_NAME
    current, created = load_or_create_key_file(path)
    return Keyring(current, previous), path if created else None
