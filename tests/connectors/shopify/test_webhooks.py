"""Webhook verification: Shopify's own HMAC vectors, secret rotation, and every refusal."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.datastructures import Headers

from connectors.shopify.webhooks import (
    WebhookVerificationError,
    compute_signature,
    is_signed_by,
    verify_webhook,
)
from tests.support.specs import specs_dir

SECRET = "hush-app-secret"
OLD_SECRET = "hush-old-secret"
BODY = b'{"id":820982911946154508,"admin_graphql_api_id":"gid://shopify/Order/820982911946154508"}'


def _vectors() -> list[dict[str, Any]]:
    path = specs_dir("test-vectors", "shopify_webhook_hmac_vectors.json")
    vectors: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["vectors"]
    return vectors


def _headers(body: bytes = BODY, secret: str = SECRET, **extra: str) -> dict[str, str]:
    headers = {
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Hmac-Sha256": compute_signature(body, secret),
        "X-Shopify-Shop-Domain": "demo-shop.myshopify.com",
        "X-Shopify-API-Version": "2026-04",
        "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        "X-Shopify-Event-Id": "98880550-7158-44d4-b7cd-2c97c8a091b5",
        "X-Shopify-Triggered-At": "2026-03-01T10:00:00.000Z",
    }
    headers.update(extra)
    return headers


def test_every_vector_verifies_as_expected() -> None:
    vectors = _vectors()
    assert len(vectors) >= 5
    for vector in vectors:
        body = vector["raw_body"].encode("utf-8")
        expected = vector["expect"] == "valid"
        assert is_signed_by(body, vector["expected_header"], [vector["secret"]]) is expected, (
            vector["id"]
        )
        assert (compute_signature(body, vector["secret"]) == vector["expected_header"]) is (
            expected
        ), vector["id"]


def test_vectors_with_their_headers_verify_end_to_end() -> None:
    checked = 0
    for vector in _vectors():
        headers = {
            **vector.get("other_headers", {}),
            "X-Shopify-Hmac-Sha256": vector["expected_header"],
        }
        if vector["expect"] != "valid" or "X-Shopify-Webhook-Id" not in headers:
            continue
        delivery = verify_webhook(headers, vector["raw_body"].encode(), [vector["secret"]])
        assert delivery.topic == headers["X-Shopify-Topic"]
        assert delivery.webhook_id == headers["X-Shopify-Webhook-Id"]
        checked += 1
    assert checked >= 1


def test_rotation_accepts_the_old_secret_too() -> None:
    rotation = [v for v in _vectors() if v["id"].startswith("shopify_app/webhook_verification")]
    assert len(rotation) == 2
    secrets = [v["secret"] for v in rotation]  # the new one and the old one, as configured
    for vector in rotation:
        assert is_signed_by(vector["raw_body"].encode(), vector["expected_header"], secrets)
    signed_old = _headers(secret=OLD_SECRET)
    assert verify_webhook(signed_old, BODY, [SECRET, OLD_SECRET]).topic == "orders/create"
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(signed_old, BODY, [SECRET])  # rotation over: the old one is refused


def test_a_good_delivery_answers_its_ids() -> None:
    delivery = verify_webhook(_headers(), BODY, [SECRET], shop_domain="demo-shop.myshopify.com")
    assert delivery.topic == "orders/create"
    assert delivery.event_id == "98880550-7158-44d4-b7cd-2c97c8a091b5"
    assert delivery.webhook_id == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    assert delivery.api_version == "2026-04"
    assert delivery.delivery_id == "event:98880550-7158-44d4-b7cd-2c97c8a091b5:orders/create"


def test_header_names_match_whatever_their_case() -> None:
    lowered = {k.lower(): v for k, v in _headers().items()}
    upper = {k.upper(): v for k, v in _headers().items()}
    assert verify_webhook(lowered, BODY, [SECRET]) == verify_webhook(upper, BODY, [SECRET])


def test_duplicates_of_one_event_share_a_delivery_id() -> None:
    first = verify_webhook(_headers(), BODY, [SECRET])
    retry = verify_webhook(_headers(**{"X-Shopify-Webhook-Id": "another-delivery"}), BODY, [SECRET])
    assert first.delivery_id == retry.delivery_id
    other_topic = verify_webhook(_headers(**{"X-Shopify-Topic": "orders/updated"}), BODY, [SECRET])
    assert other_topic.delivery_id != first.delivery_id
    no_event = _headers()
    del no_event["X-Shopify-Event-Id"]
    assert verify_webhook(no_event, BODY, [SECRET]).delivery_id == (
        "webhook:b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    )


@pytest.mark.parametrize("position", [0, len(BODY) // 2, len(BODY) - 1])
def test_a_one_byte_change_is_refused(position: int) -> None:
    headers = _headers()
    changed = bytearray(BODY)
    changed[position] ^= 0x01
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(headers, bytes(changed), [SECRET])


def test_refusals_name_what_is_wrong_and_never_a_secret() -> None:
    refusals: list[tuple[dict[str, str], bytes, list[str], str]] = [
        (_headers(secret="wrong-secret"), BODY, [SECRET], "signature"),
        (_headers(**{"X-Shopify-Hmac-Sha256": "not base64!"}), BODY, [SECRET], "signature"),
        (_headers(**{"X-Shopify-Hmac-Sha256": ""}), BODY, [SECRET], "Hmac"),
        (_headers(), BODY, [], "secret"),
    ]
    for missing in ("X-Shopify-Hmac-Sha256", "X-Shopify-Topic"):
        headers = _headers()
        del headers[missing]
        refusals.append((headers, BODY, [SECRET], missing.split("-")[-1]))
    no_ids = _headers()
    del no_ids["X-Shopify-Webhook-Id"], no_ids["X-Shopify-Event-Id"]
    refusals.append((no_ids, BODY, [SECRET], "Webhook-Id"))
    for headers, body, secrets, word in refusals:
        with pytest.raises(WebhookVerificationError, match=word) as caught:
            verify_webhook(headers, body, secrets)
        assert SECRET not in str(caught.value) and "820982911946154508" not in str(caught.value)


def test_a_delivery_for_another_shop_is_refused() -> None:
    with pytest.raises(WebhookVerificationError, match="shop"):
        verify_webhook(_headers(), BODY, [SECRET], shop_domain="other-shop.myshopify.com")
    headers = _headers()
    del headers["X-Shopify-Shop-Domain"]
    with pytest.raises(WebhookVerificationError, match="shop"):
        verify_webhook(headers, BODY, [SECRET], shop_domain="demo-shop.myshopify.com")


def test_event_deliveries_without_the_x_prefix_verify() -> None:
    headers = {k.removeprefix("X-"): v for k, v in _headers().items()}
    assert verify_webhook(headers, BODY, [SECRET]).topic == "orders/create"


@pytest.mark.parametrize(
    "header", ["X-Shopify-Hmac-Sha256", "X-Shopify-Topic", "X-Shopify-Webhook-Id"]
)
def test_a_header_we_read_that_comes_twice_is_refused(header: str) -> None:
    # As a web framework hands them over: every pair, repeats included (Starlette's Headers).
    pairs = [(k.lower().encode(), v.encode()) for k, v in _headers().items()]
    forged = compute_signature(b"{}", SECRET) if header.endswith("Sha256") else "orders/paid"
    headers = Headers(raw=[*pairs, (header.lower().encode(), forged.encode())])
    with pytest.raises(WebhookVerificationError, match=f"header {header.lower()} is repeated"):
        verify_webhook(headers, BODY, [SECRET])
    other = Headers(raw=[*pairs, (b"accept", b"*/*"), (b"accept", b"application/json")])
    assert verify_webhook(other, BODY, [SECRET]).topic == "orders/create"  # others may repeat
