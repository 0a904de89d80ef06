"""`inventorySetQuantities` as the 2026-04 API runs it: compare-and-swap on `changeFromQuantity`,
all-or-nothing batches, mandatory idempotency keys whose first answer is replayed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox.shopify.conftest import Shop

pytestmark = pytest.mark.anyio

SET_STOCK = """
mutation SetStock($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id reason changes { name delta quantityAfterChange } }
    userErrors { code field message }
  }
}
"""
READ_STOCK = """
query Read($ids: [ID!]!, $location: ID!) {
  nodes(ids: $ids) {
    ... on InventoryItem {
      sku
      inventoryLevel(locationId: $location) { quantities(names: ["available", "on_hand"]) { name quantity } }
    }
  }
}
"""


class Stock:
    """Helpers bound to one store with SKUs A and B at its only location."""

    def __init__(self, shop: Shop, created: dict[str, Any], location: str) -> None:
        self.shop = shop
        self.items = {sku: ids["inventory_item_id"] for sku, ids in created.items()}
        self.location = location

    def entry(self, sku: str, quantity: int, expected: int | str | None = "absent") -> Any:
        entry: dict[str, Any] = {
            "inventoryItemId": self.items[sku],
            "locationId": self.location,
            "quantity": quantity,
        }
        if expected != "absent":
            entry["changeFromQuantity"] = expected
        return entry

    async def set(self, key: str, *entries: Any, name: str = "available") -> Any:
        body = await self.shop.gql(
            SET_STOCK,
            {
                "input": {"name": name, "reason": "correction", "quantities": list(entries)},
                "key": key,
            },
        )
        return body

    async def read(self) -> dict[str, dict[str, int]]:
        body = await self.shop.gql(
            READ_STOCK, {"ids": list(self.items.values()), "location": self.location}
        )
        return {
            node["sku"]: {q["name"]: q["quantity"] for q in node["inventoryLevel"]["quantities"]}
            for node in body["data"]["nodes"]
        }


@pytest.fixture
async def stock(shop: Shop) -> Stock:
    created = await shop.seed(A=5, B=2)
    location = (await shop.control("GET", "/shop"))["locations"]["Main warehouse"]
    return Stock(shop, created, location)


async def test_a_matching_change_from_quantity_applies_the_whole_batch(stock: Stock) -> None:
    body = await stock.set("k-1", stock.entry("A", 9, 5), stock.entry("B", 0, 2))

    payload = body["data"]["inventorySetQuantities"]
    assert payload["userErrors"] == []
    assert payload["inventoryAdjustmentGroup"]["reason"] == "correction"
    deltas = {
        (c["name"], c["delta"], c["quantityAfterChange"])
        for c in payload["inventoryAdjustmentGroup"]["changes"]
    }
    assert ("available", 4, 9) in deltas and ("available", -2, 0) in deltas
    assert await stock.shop.control("GET", "/inventory") == {"A": 9, "B": 0}


async def test_one_stale_entry_refuses_the_batch_and_changes_nothing(stock: Stock) -> None:
    body = await stock.set("k-1", stock.entry("A", 9, 5), stock.entry("B", 7, 1))

    payload = body["data"]["inventorySetQuantities"]
    assert payload["inventoryAdjustmentGroup"] is None
    assert payload["userErrors"] == [
        {
            "code": "CHANGE_FROM_QUANTITY_STALE",
            "field": ["input", "quantities", "1", "changeFromQuantity"],
            "message": "The changeFromQuantity value does not match persisted value.",
        }
    ]
    assert await stock.shop.control("GET", "/inventory") == {"A": 5, "B": 2}


async def test_an_explicit_null_opts_out_of_the_check(stock: Stock) -> None:
    body = await stock.set("k-1", stock.entry("A", 3, None))

    assert body["data"]["inventorySetQuantities"]["userErrors"] == []
    assert (await stock.read())["A"] == {"available": 3, "on_hand": 3}


async def test_omitting_change_from_quantity_is_an_error(stock: Stock) -> None:
    body = await stock.set("k-1", stock.entry("A", 3))

    assert "data" not in body
    assert "changeFromQuantity" in body["errors"][0]["message"]
    assert await stock.shop.control("GET", "/inventory") == {"A": 5, "B": 2}


async def test_omitting_the_idempotency_key_is_an_error(stock: Stock) -> None:
    document = SET_STOCK.replace(" @idempotent(key: $key)", "").replace(", $key: String!", "")
    body = await stock.shop.gql(
        document,
        {
            "input": {
                "name": "available",
                "reason": "correction",
                "quantities": [stock.entry("A", 1, 5)],
            }
        },
    )

    assert body["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert "@idempotent" in body["errors"][0]["message"]
    assert await stock.shop.control("GET", "/inventory") == {"A": 5, "B": 2}


async def test_a_retry_with_the_same_key_replays_the_first_answer(stock: Stock) -> None:
    first = await stock.set("k-1", stock.entry("A", 9, 5))
    await stock.shop.order(A=2)  # stock moves on: A is 7 now

    retry = await stock.set("k-1", stock.entry("A", 9, 5))

    assert retry["data"] == first["data"]  # the same adjustment group, not a stale answer
    assert await stock.shop.control("GET", "/inventory") == {"A": 7, "B": 2}


async def test_a_key_reused_with_other_arguments_is_refused(stock: Stock) -> None:
    await stock.set("k-1", stock.entry("A", 9, 5))

    body = await stock.set("k-1", stock.entry("A", 4, 9))

    (error,) = body["data"]["inventorySetQuantities"]["userErrors"]
    assert error["code"] == "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"
    assert await stock.shop.control("GET", "/inventory") == {"A": 9, "B": 2}


async def test_a_sale_between_read_and_set_makes_the_set_stale(stock: Stock) -> None:
    believed = (await stock.read())["A"]["available"]
    await stock.shop.control(
        "POST", "/sell-before-next-set", {"sku": "A", "quantity": 2}, status=202
    )

    stale = await stock.set("k-1", stock.entry("A", 4, believed))
    assert stale["data"]["inventorySetQuantities"]["userErrors"][0]["code"] == (
        "CHANGE_FROM_QUANTITY_STALE"
    )
    now = (await stock.read())["A"]["available"]
    assert now == believed - 2  # the buyer's order took two units

    # The caller subtracts the unseen sale from its target and retries with a new key.
    retried = await stock.set("k-2", stock.entry("A", 4 - 2, now))
    assert retried["data"]["inventorySetQuantities"]["userErrors"] == []
    assert await stock.shop.control("GET", "/inventory") == {"A": 2, "B": 2}
    orders = await stock.shop.gql(
        "{ orders(first: 5) { nodes { lineItems(first: 5) { nodes { sku quantity } } } } }"
    )
    assert orders["data"]["orders"]["nodes"] == [
        {"lineItems": {"nodes": [{"sku": "A", "quantity": 2}]}}
    ]


async def test_invalid_entries_are_user_errors_naming_the_field(stock: Stock) -> None:
    missing_item = {**stock.entry("A", 1, 5), "inventoryItemId": "gid://shopify/InventoryItem/1"}
    body = await stock.set("k-1", stock.entry("B", -1, 2), missing_item, name="available")

    errors = body["data"]["inventorySetQuantities"]["userErrors"]
    assert [(e["code"], e["field"]) for e in errors] == [
        ("INVALID_QUANTITY_NEGATIVE", ["input", "quantities", "0", "quantity"]),
        ("INVALID_INVENTORY_ITEM", ["input", "quantities", "1", "inventoryItemId"]),
    ]
    assert await stock.shop.control("GET", "/inventory") == {"A": 5, "B": 2}


async def test_more_than_250_quantities_are_refused(stock: Stock) -> None:
    body = await stock.set("k-1", *[stock.entry("A", 1, None)] * 251)

    assert body["errors"][0]["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"


async def test_setting_on_hand_moves_available_with_it(stock: Stock) -> None:
    await stock.shop.order(A=2)  # 3 available, 2 committed, 5 on hand

    body = await stock.set("k-1", stock.entry("A", 8, 5), name="on_hand")

    assert body["data"]["inventorySetQuantities"]["userErrors"] == []
    assert (await stock.read())["A"] == {"available": 6, "on_hand": 8}
