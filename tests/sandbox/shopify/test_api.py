"""The Admin API the connector uses, end to end in-process: polling orders by `updated_at`,
fulfilments and cancels, subscriptions, authentication and the API fault knobs."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.shopify import OPERATIONS, ShopifySandbox, ShopOptions
from sandbox.shopify.executor import prepare
from sandbox.shopify.mutations import Mutations
from sandbox.shopify.queries import query_root
from sandbox.shopify.views import View
from tests.sandbox.shopify.conftest import GRAPHQL, TOKEN, Shop

pytestmark = pytest.mark.anyio

ORDER_IDS = """
query Ids($first: Int!, $after: String, $query: String!) {
  orders(first: $first, after: $after, sortKey: UPDATED_AT, query: $query) {
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id updatedAt } }
  }
}
"""
FULFILLMENT_ORDERS = """
query FulfillmentOrders($id: ID!) {
  order(id: $id) {
    displayFulfillmentStatus
    fulfillmentOrders(first: 5) {
      nodes { id status lineItems(first: 10) { nodes { id remainingQuantity lineItem { sku } } } }
    }
  }
}
"""
FULFILL = """
mutation Fulfil($fulfillment: FulfillmentInput!) {
  fulfillmentCreate(fulfillment: $fulfillment) {
    fulfillment { id status trackingInfo(first: 1) { company number url } }
    userErrors { field message }
  }
}
"""
CANCEL = """
mutation Cancel($id: ID!) {
  orderCancel(orderId: $id, reason: CUSTOMER, refund: true, restock: true) {
    job { id done }
    orderCancelUserErrors { code field message }
  }
}
"""


async def ids_since(shop: Shop, since: str, first: int) -> list[list[str]]:
    """Every page of order ids updated at or after `since`."""
    pages, after = [], None
    while True:
        body = await shop.gql(
            ORDER_IDS, {"first": first, "after": after, "query": f"updated_at:>='{since}'"}
        )
        connection = body["data"]["orders"]
        pages.append([edge["node"]["id"] for edge in connection["edges"]])
        if not connection["pageInfo"]["hasNextPage"]:
            return pages
        after = connection["pageInfo"]["endCursor"]


async def test_orders_page_by_updated_at_from_a_checkpoint(shop: Shop) -> None:
    await shop.seed(A=50)
    early = [await shop.order(A=1) for _ in range(2)]
    shop.clock.advance(60)
    later = [await shop.order(A=1) for _ in range(3)]
    shop.clock.advance(60)
    await shop.control("POST", "/cancel", {"order_id": early[0]})  # updated now: last by UPDATED_AT

    pages = await ids_since(shop, "2026-05-01T12:01:00Z", first=2)

    assert pages == [later[:2], [later[2], early[0]]]
    assert await ids_since(shop, "2026-05-01T12:00:00Z", first=250) == [
        [early[1], *later, early[0]]
    ]


async def test_an_order_reads_back_with_lines_money_and_address(shop: Shop) -> None:
    await shop.seed(A=5, B=5)
    order_id = await shop.order(A=2, B=1)

    body = await shop.gql(
        """query($id: ID!) { order(id: $id) {
             name legacyResourceId displayFinancialStatus currencyCode
             currentTotalPriceSet { shopMoney { amount currencyCode } }
             shippingAddress { name city countryCodeV2 }
             lineItems(first: 10) { nodes { sku quantity currentQuantity
               originalUnitPriceSet { shopMoney { amount } } } }
           } }""",
        {"id": order_id},
    )

    order = body["data"]["order"]
    assert order["name"] == "#1001" and order["legacyResourceId"] == order_id.rsplit("/", 1)[1]
    assert order["displayFinancialStatus"] == "PAID"
    assert order["currentTotalPriceSet"] == {"shopMoney": {"amount": "37.5", "currencyCode": "USD"}}
    assert order["shippingAddress"] == {
        "name": "Jo Buyer",
        "city": "Springfield",
        "countryCodeV2": "US",
    }
    assert [line["sku"] for line in order["lineItems"]["nodes"]] == ["A", "B"]
    assert order["lineItems"]["nodes"][0]["originalUnitPriceSet"]["shopMoney"]["amount"] == "12.5"


async def test_a_fulfilment_with_tracking_closes_the_fulfilment_order(shop: Shop) -> None:
    await shop.seed(A=5)
    order_id = await shop.order(A=3)
    order = (await shop.gql(FULFILLMENT_ORDERS, {"id": order_id}))["data"]["order"]
    (fulfillment_order,) = order["fulfillmentOrders"]["nodes"]
    (line,) = fulfillment_order["lineItems"]["nodes"]

    partial = await shop.gql(
        FULFILL,
        {
            "fulfillment": {
                "notifyCustomer": True,
                "trackingInfo": {
                    "company": "UPS",
                    "number": "1Z999",
                    "url": "https://ups.example/1Z999",
                },
                "lineItemsByFulfillmentOrder": [
                    {
                        "fulfillmentOrderId": fulfillment_order["id"],
                        "fulfillmentOrderLineItems": [{"id": line["id"], "quantity": 2}],
                    }
                ],
            }
        },
    )
    created = partial["data"]["fulfillmentCreate"]
    assert created["userErrors"] == []
    assert created["fulfillment"]["trackingInfo"] == [
        {"company": "UPS", "number": "1Z999", "url": "https://ups.example/1Z999"}
    ]
    order = (await shop.gql(FULFILLMENT_ORDERS, {"id": order_id}))["data"]["order"]
    assert order["displayFulfillmentStatus"] == "PARTIALLY_FULFILLED"
    assert order["fulfillmentOrders"]["nodes"][0]["status"] == "IN_PROGRESS"

    too_many = await shop.gql(
        FULFILL,
        {
            "fulfillment": {
                "lineItemsByFulfillmentOrder": [
                    {
                        "fulfillmentOrderId": fulfillment_order["id"],
                        "fulfillmentOrderLineItems": [{"id": line["id"], "quantity": 2}],
                    }
                ]
            }
        },
    )
    assert too_many["data"]["fulfillmentCreate"]["userErrors"][0]["field"][-1] == "quantity"

    await shop.gql(
        FULFILL,
        {
            "fulfillment": {
                "lineItemsByFulfillmentOrder": [{"fulfillmentOrderId": fulfillment_order["id"]}]
            }
        },
    )
    order = (await shop.gql(FULFILLMENT_ORDERS, {"id": order_id}))["data"]["order"]
    assert order["displayFulfillmentStatus"] == "FULFILLED"
    assert order["fulfillmentOrders"]["nodes"][0]["status"] == "CLOSED"
    shipped = (await shop.control("GET", "/fulfillments"))["fulfillments"]
    assert [(f["lines"], f["tracking"]["number"], f["source"]) for f in shipped] == [
        ([{"sku": "A", "quantity": 2}], "1Z999", "api"),
        ([{"sku": "A", "quantity": 1}], None, "api"),
    ]
    detail = await shop.control("GET", "/inventory?detail=1")
    assert detail["A"]["Main warehouse"] == {"available": 2, "committed": 0, "on_hand": 2}


async def test_a_cancel_restocks_and_a_second_cancel_is_refused(shop: Shop) -> None:
    await shop.seed(A=5)
    order_id = await shop.order(A=2)
    assert await shop.control("GET", "/inventory") == {"A": 3}

    body = await shop.gql(CANCEL, {"id": order_id})
    assert body["data"]["orderCancel"]["orderCancelUserErrors"] == []
    assert body["data"]["orderCancel"]["job"]["done"] is False  # Shopify cancels in a job
    assert await shop.control("GET", "/inventory") == {"A": 5}

    again = await shop.gql(CANCEL, {"id": order_id})
    assert again["data"]["orderCancel"]["orderCancelUserErrors"][0]["code"] == "INVALID"
    missing = await shop.gql(CANCEL, {"id": "gid://shopify/Order/1"})
    assert missing["data"]["orderCancel"]["orderCancelUserErrors"][0]["code"] == "NOT_FOUND"


async def test_subscriptions_are_listed_and_a_second_one_for_the_same_topic_and_uri_refused(
    shop: Shop,
) -> None:
    assert (await shop.subscribe("ORDERS_CREATE"))["userErrors"] == []
    assert (await shop.subscribe("ORDERS_UPDATED"))["userErrors"] == []

    taken = await shop.subscribe("ORDERS_CREATE")
    plain_http = await shop.subscribe("ORDERS_CANCELLED", "http://hooks.example.com/x")

    assert taken["userErrors"][0]["message"] == "Address for this topic has already been taken"
    assert plain_http["webhookSubscription"] is None
    body = await shop.gql("{ webhookSubscriptions(first: 10) { nodes { topic uri } } }")
    assert body["data"]["webhookSubscriptions"]["nodes"] == [
        {"topic": "ORDERS_CREATE", "uri": "http://127.0.0.1:9/hooks"},
        {"topic": "ORDERS_UPDATED", "uri": "http://127.0.0.1:9/hooks"},
    ]


async def test_variants_are_found_by_sku(shop: Shop) -> None:
    await shop.seed(A=1, B=2, C=3)

    body = await shop.gql(
        '{ productVariants(first: 10, query: "sku:A OR sku:C") { nodes { sku inventoryQuantity } } }'
    )

    assert body["data"]["productVariants"]["nodes"] == [
        {"sku": "A", "inventoryQuantity": 1},
        {"sku": "C", "inventoryQuantity": 3},
    ]


@pytest.mark.parametrize(
    ("headers", "path", "status"),
    [
        ({}, GRAPHQL, 401),
        ({"X-Shopify-Access-Token": "wrong"}, GRAPHQL, 401),
        ({"X-Shopify-Access-Token": TOKEN}, "/admin/api/2026-13/graphql.json", 404),
    ],
)
async def test_bad_credentials_or_versions_are_refused(
    shop: Shop, headers: dict[str, str], path: str, status: int
) -> None:
    response = await shop.http.post(path, json={"query": "{ shop { name } }"}, headers=headers)

    assert response.status_code == status
    assert (await shop.control("GET", "/calls"))["calls"] == {}


async def test_an_uninstalled_app_is_refused(shop: Shop) -> None:
    await shop.control("POST", "/uninstall")

    response = await shop.http.post(
        GRAPHQL, json={"query": "{ shop { name } }"}, headers={"X-Shopify-Access-Token": TOKEN}
    )

    assert response.status_code == 401


async def test_planned_faults_answer_429_5xx_and_throttled_without_applying(shop: Shop) -> None:
    await shop.seed(A=5)
    await shop.control(
        "POST",
        "/faults",
        {"next": {"orderCancel": ["429", "5xx", "throttled"]}, "retry_after_s": 2},
    )
    order_id = await shop.order(A=1)

    answers: list[Any] = []
    for _ in range(4):
        answers.append(
            await shop.http.post(
                GRAPHQL,
                json={"query": CANCEL, "variables": {"id": order_id}},
                headers={"X-Shopify-Access-Token": TOKEN},
            )
        )

    assert [a.status_code for a in answers] == [429, 503, 200, 200]
    assert answers[0].headers["Retry-After"] == "2"
    assert answers[2].json()["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert answers[3].json()["data"]["orderCancel"]["orderCancelUserErrors"] == []
    assert await shop.control("GET", "/calls") == {
        "calls": {"orderCancel": 4},
        "throttled": {"orderCancel": 2},
        "faulted": {"orderCancel": 1},
    }


async def test_fault_rates_follow_the_seed(shop: Shop) -> None:
    async def statuses() -> list[int]:
        await shop.control(
            "POST", "/faults", {"seed": 7, "operations": {"shop": {"error_rate": 0.5}}}
        )
        codes = []
        for _ in range(20):
            response = await shop.http.post(
                GRAPHQL,
                json={"query": "{ shop { name } }"},
                headers={"X-Shopify-Access-Token": TOKEN},
            )
            codes.append(response.status_code)
        return codes

    first = await statuses()
    assert first == await statuses()
    assert 3 <= first.count(503) <= 17


async def test_unknown_operations_in_the_fault_knobs_are_refused(shop: Shop) -> None:
    response = await shop.http.post("/_sandbox/faults", json={"next": {"ordersz": ["5xx"]}})

    assert response.status_code == 422
    assert "ordersz" in response.json()["error"]


def test_the_fault_knobs_know_every_operation_the_sandbox_serves() -> None:
    sandbox = ShopifySandbox(ShopOptions(validate=False))
    view = View(sandbox.store, "2026-04")
    prepared = prepare(None, "mutation { x }", None, None)
    served = set(query_root(view)) | set(Mutations(view, prepared, sandbox.ledger).root())

    assert served == OPERATIONS
