"""Verify a Shopify webhook delivery and read its headers, before anything parses the body.

Shopify signs each delivery with `base64(HMAC-SHA256(app client secret, raw body))` in
`X-Shopify-Hmac-Sha256`. During a secret rotation it may keep signing with the old secret for up
to an hour, so every configured secret is tried, each compared in constant time. Header names are
matched case-insensitively, and the `Shopify-*` names of newer event deliveries are accepted too.

Deduplication: `X-Shopify-Event-Id` is shared by every delivery of one merchant action (Shopify's
retries and duplicates), `X-Shopify-Webhook-Id` is one per delivery. `delivery_id` keys on the
event where Shopify sent one (with the topic, since one action fires several topics), else on the
webhook id, so a repeated delivery of the same event is stored once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TOPIC = "x-shopify-topic"
HMAC_HEADER = "x-shopify-hmac-sha256"
SHOP_DOMAIN = "x-shopify-shop-domain"
API_VERSION = "x-shopify-api-version"
WEBHOOK_ID = "x-shopify-webhook-id"
EVENT_ID = "x-shopify-event-id"
TRIGGERED_AT = "x-shopify-triggered-at"

_MAX_HEADER = 256  # longer values are not Shopify's: refused rather than stored


class WebhookVerificationError(ValueError):
    """A delivery refused before its body was read; the message says which check failed and
    never quotes the body or a secret. Answer 401 and store nothing."""


@dataclass(frozen=True)
class WebhookDelivery:
    """What a verified delivery's headers say."""

    topic: str
    webhook_id: str | None
    event_id: str | None
    shop_domain: str | None
    api_version: str | None
    triggered_at: str | None

    @property
    def delivery_id(self) -> str:
        """The inbox key: one row per event and topic (or per delivery when no event id came)."""
        if self.event_id:
            return f"event:{self.event_id}:{self.topic}"
        return f"webhook:{self.webhook_id}"


def compute_signature(body: bytes, secret: str) -> str:
    """The header value Shopify sends for `body` signed with `secret`."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def is_signed_by(body: bytes, signature: str, secrets: Sequence[str]) -> bool:
    """True when `signature` is the HMAC of the raw `body` under one of `secrets`."""
    try:
        given = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
        # Every secret is tried, whatever matched, so timing says nothing about which one.
        matched |= hmac.compare_digest(expected, given)
    return matched


_READ = frozenset(
    name
    for header in (TOPIC, HMAC_HEADER, SHOP_DOMAIN, API_VERSION, WEBHOOK_ID, EVENT_ID, TRIGGERED_AT)
    for name in (header, header.removeprefix("x-"))
)


def _single_valued(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers by lower-case name; a header we read that comes twice is refused, so that
    what is verified is what is used (a web framework would read the first, a dict the last)."""
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in lowered and key in _READ:
            raise WebhookVerificationError(f"header {key} is repeated")
        lowered[key] = value
    return lowered


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # `name` is the X-Shopify-* form; event deliveries send the same without the X- prefix.
    for candidate in (name, name.removeprefix("x-")):
        value = headers.get(candidate)
        if value is not None:
            value = value.strip()
            if len(value) > _MAX_HEADER:
                raise WebhookVerificationError(f"header {candidate} is too long")
            return value or None
    return None


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    shop_domain: str | None = None,
) -> WebhookDelivery:
    """Check the signature (and, when given, that the delivery is for `shop_domain`); answer what
    the headers say, or raise WebhookVerificationError naming what is wrong."""
    if not secrets or not all(secrets):
        raise WebhookVerificationError("no webhook secret configured")
    lowered = _single_valued(headers)
    signature = _header(lowered, HMAC_HEADER)
    if signature is None:
        raise WebhookVerificationError("missing X-Shopify-Hmac-Sha256 header")
    if not is_signed_by(body, signature, secrets):
        raise WebhookVerificationError("signature does not match the body")
    topic = _header(lowered, TOPIC)
    if topic is None:
        raise WebhookVerificationError("missing X-Shopify-Topic header")
    webhook_id = _header(lowered, WEBHOOK_ID)
    event_id = _header(lowered, EVENT_ID)
    if webhook_id is None and event_id is None:
        raise WebhookVerificationError("missing X-Shopify-Webhook-Id and X-Shopify-Event-Id")
    shop = _header(lowered, SHOP_DOMAIN)
    if shop_domain is not None and (shop is None or shop.lower() != shop_domain.lower()):
        raise WebhookVerificationError("delivery is not for this channel's shop")
    return WebhookDelivery(
        topic=topic.lower(),
        webhook_id=webhook_id,
        event_id=event_id,
        shop_domain=shop,
        api_version=_header(lowered, API_VERSION),
        triggered_at=_header(lowered, TRIGGERED_AT),
    )
