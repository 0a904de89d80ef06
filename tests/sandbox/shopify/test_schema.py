"""Every request is checked against the Admin schema (2025-01 plus the 2026 additions) before it
runs: what Shopify would refuse is refused in Shopify's error shape, and nothing is applied."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sandbox.shopify.schema import SCHEMA_FILE, load_admin_schema
from tests.sandbox.shopify.conftest import Shop, ShopFactory
from tests.support.specs import SPECS_DIR, specs_dir

pytestmark = pytest.mark.anyio

SET_STOCK = """
mutation SetStock($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id }
    userErrors { code field message }
  }
}
"""


@pytest.fixture
def validated() -> None:
    specs_dir(*SCHEMA_FILE.parts)


async def test_an_unknown_field_is_refused_in_shopifys_shape(validated: None, shop: Shop) -> None:
    body = await shop.gql("{ shop { name nickname } }")

    assert "data" not in body
    (error,) = body["errors"]
    assert "nickname" in error["message"] and "Shop" in error["message"]
    assert error["locations"] == [{"line": 1, "column": 15}]
    assert error["extensions"]["code"] == "undefinedField"
    assert (await shop.control("GET", "/calls"))["calls"] == {"invalid": 1}


async def test_a_syntax_error_is_refused(shop: Shop) -> None:
    body = await shop.gql("{ shop { name ")

    assert "data" not in body
    assert body["errors"][0]["locations"] == [{"line": 1, "column": 15}]


async def test_fields_removed_in_2026_are_refused_and_nothing_changes(
    validated: None, shop: Shop
) -> None:
    created = await shop.seed(A=5)
    location = (await shop.control("GET", "/shop"))["locations"]["Main warehouse"]
    old_style = {
        "name": "available",
        "reason": "correction",
        "ignoreCompareQuantity": True,
        "quantities": [
            {
                "inventoryItemId": created["A"]["inventory_item_id"],
                "locationId": location,
                "quantity": 9,
                "compareQuantity": 5,
            }
        ],
    }

    body = await shop.gql(SET_STOCK, {"input": old_style, "key": "k-1"})

    messages = " ".join(e["message"] for e in body["errors"])
    assert "compareQuantity" in messages and "ignoreCompareQuantity" in messages
    assert await shop.control("GET", "/inventory") == {"A": 5}


async def test_a_missing_required_argument_is_refused(validated: None, shop: Shop) -> None:
    body = await shop.gql("{ order { id } }")

    assert body["errors"][0]["extensions"]["code"] == "missingRequiredArguments"


async def test_the_2026_additions_validate_and_run(validated: None, shop: Shop) -> None:
    created = await shop.seed(A=5)
    location = (await shop.control("GET", "/shop"))["locations"]["Main warehouse"]
    quantities = [
        {
            "inventoryItemId": created["A"]["inventory_item_id"],
            "locationId": location,
            "quantity": 9,
            "changeFromQuantity": 5,
        }
    ]
    body = await shop.gql(
        SET_STOCK,
        {
            "input": {"name": "available", "reason": "correction", "quantities": quantities},
            "key": "k",
        },
    )
    assert body["data"]["inventorySetQuantities"]["userErrors"] == []

    subscribed = await shop.subscribe("ORDERS_CREATE", "https://hooks.example.com/shopify")
    assert subscribed["webhookSubscription"]["uri"] == "https://hooks.example.com/shopify"

    cancel = await shop.gql(
        """mutation($id: ID!) {
             orderCancel(orderId: $id, reason: CUSTOMER, restock: true,
                         refundMethod: {originalPaymentMethodsRefund: true}) {
               job { id } orderCancelUserErrors { code message }
             }
           }""",
        {"id": await shop.order(A=1)},
    )
    assert cancel["data"]["orderCancel"]["orderCancelUserErrors"] == []


async def test_variables_are_checked_against_their_declared_types(
    validated: None, shop: Shop
) -> None:
    body = await shop.gql("query($id: ID!) { order(id: $id) { id } }", {})

    assert "data" not in body
    assert "$id" in body["errors"][0]["message"]


async def test_without_the_schema_requests_run_unvalidated(make_shop: ShopFactory) -> None:
    shop = await make_shop(validate=False)
    assert shop.sandbox.schema is None
    await shop.seed(A=2)

    body = await shop.gql("{ productVariants(first: 5) { nodes { sku } } }")

    assert body["data"] == {"productVariants": {"nodes": [{"sku": "A"}]}}


def test_the_loader_answers_none_and_says_so_when_the_specs_are_absent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="sandbox.shopify.schema"):
        assert load_admin_schema(tmp_path) is None
    assert "without validating" in caplog.text


def test_the_schema_is_built_once(validated: None) -> None:
    assert load_admin_schema(SPECS_DIR) is load_admin_schema(SPECS_DIR)
