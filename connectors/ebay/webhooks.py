"""eBay Notification API push messages: the endpoint check, signature verification, and what
each topic asks of us.

- Endpoint check: eBay calls `GET <endpoint>?challenge_code=X` and wants
  `{"challengeResponse": hex(sha256(X + verification token + endpoint URL))}`
  (`challenge_response`).
- Signature: `X-EBAY-SIGNATURE` is base64 of JSON `{alg, kid, signature, digest}`. The public key
  of `kid` comes from the Notification API's getPublicKey (application token), cached for an hour;
  the signature (DER, base64) is ECDSA with SHA-1 over the message re-serialised compactly, not
  over the raw body: eBay's own SDKs verify `JSON.stringify(parsed)`, and
  `json.dumps(message, separators=(",", ":"), ensure_ascii=False)` gives the same bytes (their
  published vectors pass). A refused message answers 412 and nothing of it is kept.
- Topics: MARKETPLACE_ACCOUNT_DELETION names a user whose personal data must go (`AccountDeletion`
  gives the buyer refs to erase); ORDER_CONFIRMATION and ITEM_MARKED_SHIPPED are hints naming an
  order to fetch (`order_hint`). Redeliveries carry the same `notificationId`: dedupe on it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from connectors.ebay import const
from connectors.ebay.mapper import buyer_ref
from connectors.errors import NotFoundError

KeyFetcher = Callable[[str], Awaitable[Mapping[str, Any]]]
"""getPublicKey for a kid: answers `{key, algorithm, digest}`; NotFoundError for an unknown one."""

_KID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_MAX_HEADER = 4096
_PEM = re.compile(r"-----BEGIN PUBLIC KEY-----(.*?)-----END PUBLIC KEY-----", re.DOTALL)


class NotificationVerificationError(ValueError):
    """A message refused before anything of it is kept; the text says which check failed and never
    quotes the message. Answer 412."""


def challenge_response(challenge_code: str, verification_token: str, endpoint_url: str) -> str:
    """The endpoint check's answer: hex SHA-256 of the code, our token and the endpoint URL (as
    registered with eBay, byte for byte)."""
    digest = hashlib.sha256()
    digest.update(challenge_code.encode("utf-8"))
    digest.update(verification_token.encode("utf-8"))
    digest.update(endpoint_url.encode("utf-8"))
    return digest.hexdigest()


def signed_bytes(message: object) -> bytes:
    """The bytes eBay signs: the message as compact JSON, keys in the order received."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class SignatureHeader:
    """A decoded X-EBAY-SIGNATURE."""

    alg: str
    kid: str
    signature: bytes = field(repr=False)
    digest: str


def parse_signature_header(value: str | None) -> SignatureHeader:
    """Decode the header; NotificationVerificationError naming what is wrong."""
    if not value or not value.strip():
        raise NotificationVerificationError("missing X-EBAY-SIGNATURE header")
    if len(value) > _MAX_HEADER:
        raise NotificationVerificationError("X-EBAY-SIGNATURE is too long")
    try:
        decoded = json.loads(base64.b64decode(value.strip(), validate=True))
        signature = base64.b64decode(str(decoded["signature"]), validate=True)
        header = SignatureHeader(
            alg=str(decoded.get("alg") or ""),
            kid=str(decoded["kid"]),
            signature=signature,
            digest=str(decoded.get("digest") or ""),
        )
    except (binascii.Error, ValueError, KeyError, TypeError) as err:
        raise NotificationVerificationError("X-EBAY-SIGNATURE is not eBay's format") from err
    if header.alg.upper() != "ECDSA" or header.digest.upper() != "SHA1":
        raise NotificationVerificationError("X-EBAY-SIGNATURE names an unexpected algorithm")
    if not _KID.match(header.kid):
        raise NotificationVerificationError("X-EBAY-SIGNATURE names an unusable key id")
    return header


def load_public_key(answer: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    """The EC key of a getPublicKey answer (its PEM comes without line breaks)."""
    if str(answer.get("algorithm", "ECDSA")).upper() != "ECDSA":
        raise NotificationVerificationError("eBay's public key is not an ECDSA key")
    match = _PEM.search(str(answer.get("key") or ""))
    if match is None:
        raise NotificationVerificationError("eBay's public key answer holds no PEM key")
    try:
        key = load_der_public_key(base64.b64decode("".join(match.group(1).split())))
    except (binascii.Error, ValueError, UnsupportedAlgorithm) as err:
        raise NotificationVerificationError("eBay's public key does not load") from err
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise NotificationVerificationError("eBay's public key is not an EC key")
    return key


def is_signed(key: ec.EllipticCurvePublicKey, header: SignatureHeader, message: object) -> bool:
    """True when the header's signature is `key`'s over the compact form of `message`."""
    try:
        key.verify(header.signature, signed_bytes(message), ec.ECDSA(hashes.SHA1()))  # noqa: S303
    except InvalidSignature:
        return False
    return True


class PublicKeyCache:
    """eBay's notification keys by kid, kept an hour (an unknown kid is not asked again for a
    few minutes, so a flood of forged kids cannot turn into a flood of calls)."""

    def __init__(
        self,
        fetch: KeyFetcher,
        *,
        clock: Callable[[], float] = time.monotonic,
        ttl_s: float = const.PUBLIC_KEY_TTL_S,
        unknown_ttl_s: float = const.UNKNOWN_KEY_TTL_S,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._ttl = ttl_s
        self._unknown_ttl = unknown_ttl_s
        self._keys: dict[str, tuple[float, ec.EllipticCurvePublicKey | None]] = {}
        self.fetches = 0

    async def key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        """The key of `kid`, or None when eBay has none by that id."""
        now = self._clock()
        cached = self._keys.get(kid)
        if cached is not None and now < cached[0]:
            return cached[1]
        self.fetches += 1
        try:
            answer = await self._fetch(kid)
        except NotFoundError:
            self._keys[kid] = (now + self._unknown_ttl, None)
            return None
        key = load_public_key(answer)
        self._keys[kid] = (now + self._ttl, key)
        return key


@dataclass(frozen=True)
class Notification:
    """A verified notification."""

    notification_id: str
    topic: str
    schema_version: str | None
    publish_attempt_count: int
    event_date: str | None
    data: Mapping[str, Any] = field(repr=False)
    message: Mapping[str, Any] = field(repr=False)  # the whole message, to persist as received

    @property
    def delivery_id(self) -> str:
        """The inbox key: redeliveries of one notification share it."""
        return f"notification:{self.notification_id}"

    @property
    def is_redelivery(self) -> bool:
        """eBay tried before (the first delivery may or may not have reached us)."""
        return self.publish_attempt_count > 1


def read_notification(message: object) -> Notification:
    """The envelope of a (verified) message; NotificationVerificationError when it has none."""
    if not isinstance(message, Mapping):
        raise NotificationVerificationError("the message is not a JSON object")
    metadata = message.get("metadata")
    body = message.get("notification")
    if not isinstance(metadata, Mapping) or not isinstance(body, Mapping):
        raise NotificationVerificationError("the message has no metadata or notification")
    notification_id = body.get("notificationId")
    topic = metadata.get("topic")
    if not isinstance(notification_id, str) or not notification_id or len(notification_id) > 200:
        raise NotificationVerificationError("the notification has no usable notificationId")
    if not isinstance(topic, str) or not topic:
        raise NotificationVerificationError("the notification has no topic")
    attempts = body.get("publishAttemptCount")
    data = body.get("data")
    return Notification(
        notification_id=notification_id,
        topic=topic,
        schema_version=metadata.get("schemaVersion"),
        publish_attempt_count=attempts if isinstance(attempts, int) else 1,
        event_date=body.get("eventDate") if isinstance(body.get("eventDate"), str) else None,
        data=data if isinstance(data, Mapping) else {},
        message=message,
    )


class NotificationVerifier:
    """Verifies POSTed notifications of one eBay application."""

    def __init__(self, keys: PublicKeyCache) -> None:
        self._keys = keys

    async def verify(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """The notification, once its signature checks; NotificationVerificationError (412)
        otherwise. A key eBay cannot be asked for now is a RetryableError: answer 5xx and eBay
        delivers again."""
        lowered = {name.lower(): value for name, value in headers.items()}
        header = parse_signature_header(lowered.get(const.SIGNATURE_HEADER))
        try:
            message = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise NotificationVerificationError("the body is not JSON") from err
        key = await self._keys.key(header.kid)
        if key is None:
            raise NotificationVerificationError("eBay knows no public key by the header's kid")
        if not is_signed(key, header, message):
            raise NotificationVerificationError("the signature does not match the message")
        return read_notification(message)


@dataclass(frozen=True)
class AccountDeletion:
    """An eBay user closed their account: their personal data must go from the store."""

    user_id: str | None
    buyer_refs: frozenset[str] = field(repr=False)

    def __repr__(self) -> str:
        return f"AccountDeletion(user_id={'set' if self.user_id else None}, ...)"


def account_deletion(notification: Notification) -> AccountDeletion | None:
    """What a MARKETPLACE_ACCOUNT_DELETION asks to erase (None for other topics): the buyer refs
    of the user's immutable id and of their username (orders hold a hash of either)."""
    if notification.topic != const.TOPIC_ACCOUNT_DELETION:
        return None
    data = notification.data
    identities = {
        value.strip()
        for value in (data.get("userId"), data.get("username"))
        if isinstance(value, str) and value.strip()
    }
    user_id = data.get("userId")
    return AccountDeletion(
        user_id=user_id if isinstance(user_id, str) and user_id else None,
        buyer_refs=frozenset(buyer_ref(identity) for identity in identities),
    )


def order_hint(notification: Notification) -> str | None:
    """The order an ORDER_CONFIRMATION or ITEM_MARKED_SHIPPED points at (None otherwise).

    The order id is read from `data.orderId`, or `data.order.orderId` (unsure which: the topics'
    contracts are not among the specs here); the order itself is always fetched, never mapped
    from the notification."""
    if notification.topic not in const.ORDER_HINT_TOPICS:
        return None
    data = notification.data
    candidates = [data.get("orderId")]
    nested = data.get("order")
    if isinstance(nested, Mapping):
        candidates.append(nested.get("orderId"))
    for value in candidates:
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None
