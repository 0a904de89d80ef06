"""The cost bucket: every answer reports its cost and the bucket; a query the bucket cannot cover
is THROTTLED (and not run) until the bucket restores; one above 1000 points never runs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox.shopify.conftest import Shop, ShopFactory

pytestmark = pytest.mark.anyio

VARIANTS = "{ productVariants(first: 50) { nodes { id sku inventoryItem { id } } } }"


def cost(body: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = body["extensions"]["cost"]
    return found


async def test_an_answer_reports_requested_and_actual_cost_and_the_bucket(
    make_shop: ShopFactory,
) -> None:
    shop: Shop = await make_shop(restore_rate=50.0)
    await shop.seed(A=1, B=1)

    body = await shop.gql(VARIANTS)

    # A connection is 2 + first x its node (variant 1 + inventory item 1); two nodes came back.
    assert cost(body) == {
        "requestedQueryCost": 2 + 50 * 2,
        "actualQueryCost": 2 + 2 * 2,
        "throttleStatus": {
            "maximumAvailable": 1000.0,
            "currentlyAvailable": 1000 - 6,
            "restoreRate": 50.0,
        },
    }


async def test_an_empty_bucket_throttles_until_it_restores(make_shop: ShopFactory) -> None:
    shop: Shop = await make_shop(restore_rate=10.0, bucket_size=200.0)
    await shop.seed(A=1)
    await shop.control("POST", "/bucket", {"currently_available": 50})

    throttled = await shop.gql(VARIANTS)

    assert "data" not in throttled
    assert throttled["errors"] == [
        {
            "message": "Throttled",
            "extensions": {
                "code": "THROTTLED",
                "documentation": "https://shopify.dev/api/usage/rate-limits",
            },
        }
    ]
    assert cost(throttled)["requestedQueryCost"] == 102
    assert cost(throttled)["actualQueryCost"] is None
    assert cost(throttled)["throttleStatus"]["currentlyAvailable"] == 50

    shop.clock.advance(6.0)  # 60 more points at 10/s: 110, enough for 102
    served = await shop.gql(VARIANTS)

    assert served["data"]["productVariants"]["nodes"][0]["sku"] == "A"
    # 110 held, 102 charged, 98 refunded (the actual cost was 4): 106 left.
    assert cost(served)["throttleStatus"]["currentlyAvailable"] == 106
    calls = await shop.control("GET", "/calls")
    assert calls["calls"] == {"productVariants": 2}
    assert calls["throttled"] == {"productVariants": 1}


async def test_the_bucket_never_holds_more_than_its_maximum(make_shop: ShopFactory) -> None:
    shop: Shop = await make_shop(restore_rate=100.0)
    await shop.gql("{ shop { name } }")
    shop.clock.advance(3600.0)

    body = await shop.gql("{ shop { name } }")

    assert cost(body)["throttleStatus"]["currentlyAvailable"] == 2000 - 1


async def test_a_query_above_the_single_query_limit_never_runs(shop: Shop) -> None:
    body = await shop.gql(
        "{ orders(first: 250) { nodes { id lineItems(first: 10) { nodes { id } } } } }"
    )

    (error,) = body["errors"]
    assert error["extensions"] == {
        "code": "MAX_COST_EXCEEDED",
        "cost": 2 + 250 * 13,
        "maxCost": 1000,
    }
    assert (await shop.control("GET", "/bucket"))["currentlyAvailable"] == 2000


async def test_a_mutation_costs_ten(shop: Shop) -> None:
    body = await shop.gql(
        """mutation { webhookSubscriptionDelete(id: "gid://shopify/WebhookSubscription/1") {
             userErrors { message } } }"""
    )

    assert cost(body)["requestedQueryCost"] == 10
    assert cost(body)["actualQueryCost"] == 10


async def test_lists_cost_their_size_and_fragments_on_other_types_the_dearest(
    shop: Shop,
) -> None:
    body = await shop.gql(
        """query($ids: [ID!]!) {
             nodes(ids: $ids) {
               ... on InventoryItem { id variant { id } }
               ... on Order { id customer { id } shippingAddress { city } }
             }
           }""",
        {
            "ids": [
                "gid://shopify/InventoryItem/1",
                "gid://shopify/Order/2",
                "gid://shopify/Order/3",
            ]
        },
    )

    assert cost(body)["requestedQueryCost"] == 3 * (1 + 2)
