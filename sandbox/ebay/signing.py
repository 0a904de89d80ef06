"""The sandbox's notification signing keys, made as eBay's are: EC P-256, served by key id (`kid`)
from getPublicKey as `{"key": PEM without line breaks, "algorithm": "ECDSA", "digest": "SHA1"}`.

A message is signed over its compact JSON serialisation (`compact`), ECDSA with SHA-1, DER
signature; `X-EBAY-SIGNATURE` is base64 of the compact JSON `{"alg": "ecdsa", "kid",
"signature": base64(DER), "digest": "SHA1"}`, the layout of eBay's own vectors. Rotating makes a
new current key; the old ones stay served, as messages signed with them may still be in flight.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def compact(message: Any) -> bytes:
    """The bytes eBay signs: compact JSON, key order kept, non-ASCII as is."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def public_key_text(key: ec.EllipticCurvePublicKey) -> str:
    """The public key as getPublicKey shows it: PEM armour, body on one line."""
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    return f"-----BEGIN PUBLIC KEY-----{body}-----END PUBLIC KEY-----"


def signature_header(private_key: ec.EllipticCurvePrivateKey, kid: str, signed: bytes) -> str:
    """The X-EBAY-SIGNATURE value for `signed` bytes."""
    der = private_key.sign(signed, ec.ECDSA(hashes.SHA1()))  # noqa: S303 - eBay's scheme
    header = {
        "alg": "ecdsa",
        "kid": kid,
        "signature": base64.b64encode(der).decode("ascii"),
        "digest": "SHA1",
    }
    return base64.b64encode(compact(header)).decode("ascii")


class SigningKeys:
    """Every key the sandbox has signed with, by kid; the last one made is current."""

    def __init__(self) -> None:
        self._keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self.current_kid = ""
        self.rotate()
        # Signs the bad-signature knob's messages; never served, as a forger's key would not be.
        self.stranger = ec.generate_private_key(ec.SECP256R1())

    def rotate(self) -> str:
        """Make a new current key; its kid."""
        kid = str(uuid.uuid4())
        self._keys[kid] = ec.generate_private_key(ec.SECP256R1())
        self.current_kid = kid
        return kid

    def public_key(self, kid: str) -> dict[str, str] | None:
        """getPublicKey's answer for `kid`; None for a kid never issued."""
        key = self._keys.get(kid)
        if key is None:
            return None
        return {"key": public_key_text(key.public_key()), "algorithm": "ECDSA", "digest": "SHA1"}

    def sign(self, signed: bytes, *, forged: bool = False) -> str:
        """X-EBAY-SIGNATURE for `signed` with the current key (or, forged, with a stranger's)."""
        key = self.stranger if forged else self._keys[self.current_kid]
        return signature_header(key, self.current_kid, signed)

    @property
    def kids(self) -> list[str]:
        """Every key id served."""
        return list(self._keys)
