"""Sealing buyer data: a value opens only with its key and on its own row; errors name no data.

Pure: no store. A round trip gives the plaintext back; a flipped bit, a value moved to another
order or delivery, a key the keyring lacks, each fail with an error that names the key id and
never the plaintext; a key's id is stable, short and the same for every keyring holding it.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from sync.sealing import (
    BrokenSealError,
    KeyFormatError,
    Keyring,
    UnknownKeyError,
    decode_key,
    encode_key,
    inbox_context,
    key_id,
    load_keyring,
    open_json,
    seal_json,
    sealed_key_id,
    ship_to_context,
    write_new_key_file,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))
SECRET = b'{"name":"CANARY-NAME-7f3a","line1":"1 Canary Row"}'
CONTEXT = ship_to_context(1, "1001")


def test_a_sealed_value_opens_to_the_plaintext_and_does_not_contain_it() -> None:
    keyring = Keyring(KEY_A)
    sealed = keyring.seal(SECRET, CONTEXT)
    assert b"CANARY" not in sealed and b"Canary" not in sealed
    assert keyring.open(sealed, CONTEXT) == SECRET
    # A fresh nonce each time: equal plaintexts do not give equal values.
    assert keyring.seal(SECRET, CONTEXT) != sealed
    assert sealed_key_id(sealed) == key_id(KEY_A)


def test_json_round_trip() -> None:
    keyring = Keyring(KEY_A)
    value = {"name": "CANARY-NAME-7f3a", "phone": "+1 555 0100", "line2": None}
    assert open_json(keyring, seal_json(keyring, value, CONTEXT), CONTEXT) == value


@pytest.mark.parametrize("position", [0, 5, 20, 25, -1])
def test_a_tampered_value_fails_and_says_so_without_the_plaintext(position: int) -> None:
    keyring = Keyring(KEY_A)
    sealed = bytearray(keyring.seal(SECRET, CONTEXT))
    sealed[position] ^= 0x01
    with pytest.raises((BrokenSealError, UnknownKeyError)) as caught:
        keyring.open(bytes(sealed), CONTEXT)
    assert "CANARY" not in str(caught.value)


def test_a_truncated_value_fails() -> None:
    keyring = Keyring(KEY_A)
    sealed = keyring.seal(SECRET, CONTEXT)
    for cut in (0, 1, 20, len(sealed) - 1):
        with pytest.raises(BrokenSealError):
            keyring.open(sealed[:cut], CONTEXT)


@pytest.mark.parametrize(
    "elsewhere",
    [
        ship_to_context(1, "1002"),  # another order of the same channel
        ship_to_context(2, "1001"),  # the same order id on another channel
        inbox_context(1, "1001"),  # another table
    ],
)
def test_a_value_copied_to_another_row_fails_to_open(elsewhere: bytes) -> None:
    keyring = Keyring(KEY_A)
    sealed = keyring.seal(SECRET, CONTEXT)
    with pytest.raises(BrokenSealError) as caught:
        keyring.open(sealed, elsewhere)
    assert key_id(KEY_A) in str(caught.value)
    assert "CANARY" not in str(caught.value)


def test_an_unknown_key_id_is_a_clear_error_naming_the_key_and_no_plaintext() -> None:
    sealed = Keyring(KEY_A).seal(SECRET, CONTEXT)
    with pytest.raises(UnknownKeyError) as caught:
        Keyring(KEY_B).open(sealed, CONTEXT)
    message = str(caught.value)
    assert caught.value.key_id == key_id(KEY_A)
    assert key_id(KEY_A) in message and "previous_keys" in message
    assert "CANARY" not in message and encode_key(KEY_A) not in message


def test_a_previous_key_opens_but_only_the_current_one_seals() -> None:
    old = Keyring(KEY_A).seal(SECRET, CONTEXT)
    keyring = Keyring(KEY_B, [KEY_A])
    assert keyring.open(old, CONTEXT) == SECRET
    assert sealed_key_id(keyring.seal(SECRET, CONTEXT)) == key_id(KEY_B) == keyring.current_id
    assert keyring.key_ids == {key_id(KEY_A), key_id(KEY_B)}


def test_a_key_id_is_stable_short_and_reveals_nothing_in_repr() -> None:
    assert key_id(KEY_A) == key_id(bytes(range(32)))
    assert key_id(KEY_A) != key_id(KEY_B)
    assert len(key_id(KEY_A)) == 16 and int(key_id(KEY_A), 16) >= 0
    # Pinned: an id must not change between versions, or stored values lose their key.
    assert key_id(KEY_A) == "b94822930583e33e"
    keyring = Keyring(KEY_B, [KEY_A])
    assert repr(keyring) == f"Keyring(current={key_id(KEY_B)!r}, previous={[key_id(KEY_A)]!r})"
    assert encode_key(KEY_A) not in repr(keyring)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (base64.b64encode(b"x" * 16).decode(), "16 bytes"),
        (base64.b64encode(b"x" * 33).decode(), "33 bytes"),
        ("not base64 at all!", "not base64"),
    ],
)
def test_a_key_of_the_wrong_size_is_refused_naming_it_not_its_value(
    text: str, problem: str
) -> None:
    with pytest.raises(KeyFormatError) as caught:
        decode_key(text, "buyer_data.key")
    assert "buyer_data.key" in str(caught.value) and problem in str(caught.value)
    assert text not in str(caught.value)


def test_a_new_key_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "buyer-data.2.key"
    key = write_new_key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert decode_key(path.read_text()) == key
    with pytest.raises(FileExistsError):
        write_new_key_file(path)
    assert decode_key(path.read_text()) == key
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no partial file left


def test_with_no_key_configured_one_is_generated_once_and_kept(tmp_path: Path) -> None:
    first, created = load_keyring(None, [], tmp_path)
    assert created == tmp_path / "buyer-data.key"
    assert created.stat().st_mode & 0o777 == 0o600
    again, created_again = load_keyring(None, [], tmp_path)
    assert created_again is None and again.current_id == first.current_id
    # An explicit key wins; the generated one can serve as a previous key.
    explicit, _ = load_keyring(encode_key(KEY_B), [encode_key(KEY_A)], tmp_path)
    assert explicit.current_id == key_id(KEY_B) and key_id(KEY_A) in explicit.key_ids


def test_a_generated_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    load_keyring(None, [], tmp_path)
    (tmp_path / "buyer-data.key").chmod(0o644)
    with pytest.raises(KeyFormatError, match="chmod 600"):
        load_keyring(None, [], tmp_path)
