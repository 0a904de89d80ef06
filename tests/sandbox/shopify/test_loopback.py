"""The runner on real loopback sockets: `python -m sandbox.shopify` answers GraphQL over HTTP,
delivers a signed webhook to a receiver on loopback, and holds an answer past a client's
timeout after applying the call (so only the idempotency key makes the retry safe)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import httpx
import pytest

from tests.sandbox.shopify.process import ShopifyProcess, WebhookReceiver

SECRET = "loopback-secret"
SUBSCRIBE = """
mutation($topic: WebhookSubscriptionTopic!, $sub: WebhookSubscriptionInput!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $sub) {
    webhookSubscription { id } userErrors { message }
  }
}
"""
SET_STOCK = """
mutation($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id } userErrors { code }
  }
}
"""


def test_the_runner_serves_the_api_and_delivers_signed_webhooks(tmp_path: Path) -> None:
    args = ["--shop", "loop", "--token", "loop-token", "--secret", SECRET, "--product", "A=5@9.99"]
    with WebhookReceiver() as receiver, ShopifyProcess(tmp_path, args) as shopify:
        assert shopify.info["domain"] == "loop.myshopify.com"
        assert shopify.info["token"] == "loop-token"
        assert (shopify.ready.stat().st_mode & 0o777) == 0o600
        subscribed = shopify.graphql(
            SUBSCRIBE, {"topic": "ORDERS_CREATE", "sub": {"uri": receiver.url}}
        )
        assert subscribed["data"]["webhookSubscriptionCreate"]["userErrors"] == []

        placed = shopify.control("POST", "/orders", {"lines": [{"sku": "A", "quantity": 2}]})
        body, headers = receiver.next()

        digest = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
        assert hmac.compare_digest(headers["x-shopify-hmac-sha256"], digest)
        assert headers["x-shopify-topic"] == "orders/create"
        assert json.loads(body)["admin_graphql_api_id"] == placed["order_id"]
        assert shopify.control("GET", "/inventory") == {"A": 3}

        # A timeout: the set is applied, its answer held past the client's timeout.
        shopify.control(
            "POST",
            "/faults",
            {"next": {"inventorySetQuantities": ["timeout"]}, "timeout_delay_s": 30},
        )
        item = shopify.graphql(
            '{ productVariants(first: 1, query: "sku:A") { nodes { inventoryItem { id } } } }', {}
        )["data"]["productVariants"]["nodes"][0]["inventoryItem"]["id"]
        entry = {
            "inventoryItemId": item,
            "locationId": shopify.info["locations"]["Main warehouse"],
            "quantity": 8,
            "changeFromQuantity": 3,
        }
        variables = {
            "input": {"name": "available", "reason": "correction", "quantities": [entry]},
            "key": "push-1",
        }
        with pytest.raises(httpx.ReadTimeout):
            shopify.graphql(SET_STOCK, variables, timeout=0.5)
        assert shopify.control("GET", "/inventory") == {"A": 8}

        retry = shopify.graphql(SET_STOCK, variables)  # same key: the first answer, not a stale one
        assert retry["data"]["inventorySetQuantities"]["userErrors"] == []
        assert shopify.control("GET", "/calls")["faulted"] == {"inventorySetQuantities": 1}

        assert shopify.stop() == 0
