"""The Sell Fulfillment API: getOrders' filter syntax and offset pagination, the Order shape a
connector maps, and shipping fulfilments, which are not idempotent."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.sandbox.ebay.conftest import Account

pytestmark = pytest.mark.anyio
ORDERS = "/sell/fulfillment/v1/order"


async def get_orders(account: Account, **params: str) -> dict[str, Any]:
    response = await account.rest("GET", ORDERS, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_order_shows_what_a_connector_maps(account: Account) -> None:
    await account.seed(
        {"sku": "MUG", "quantity": 5, "price": "12.50"},
        {"sku": "TEE-S", "quantity": 3, "price": "20.00", "group": "TEE"},
        {"sku": "TEE-M", "quantity": 3, "price": "20.00", "group": "TEE"},
    )
    placed = await account.order(MUG=2, **{"TEE-M": 1})
    (order,) = (await get_orders(account))["orders"]

    assert order["orderId"] == placed["order_id"]
    assert order["orderFulfillmentStatus"] == "NOT_STARTED"
    assert order["cancelStatus"]["cancelState"] == "NONE_REQUESTED"
    assert order["creationDate"] == "2026-05-01T12:00:00.000Z" == order["lastModifiedDate"]
    assert order["pricingSummary"]["total"] == {"value": "45.00", "currency": "USD"}
    mug, tee = order["lineItems"]
    assert (mug["sku"], mug["quantity"], mug["lineItemCost"]["value"]) == ("MUG", 2, "25.00")
    assert "legacyVariationId" not in mug
    listings = await account.control("GET", "/listings")
    assert tee["legacyItemId"] == listings["TEE-M"]["item_id"]
    assert tee["legacyVariationId"] == listings["TEE-M"]["variation_id"]
    assert Decimal(tee["total"]["value"]) == Decimal("20.00")
    ship_to = order["fulfillmentStartInstructions"][0]["shippingStep"]["shipTo"]
    assert ship_to["fullName"] == "Jo Buyer"
    assert ship_to["contactAddress"] == {
        "addressLine1": "1 Main St",
        "city": "Springfield",
        "countryCode": "US",
    }
    assert order["buyer"]["username"] == "jo_buyer"


async def test_lastmodifieddate_selects_orders_changed_since(account: Account) -> None:
    await account.seed({"sku": "A", "quantity": 50})
    old = await account.order(A=1)
    account.clock.advance(3600)
    new = await account.order(A=1)
    account.clock.advance(3600)
    await account.control("POST", "/ship", {"order_id": old["order_id"]}, status=201)

    since = "lastmodifieddate:[2026-05-01T13:30:00.000Z..]"
    found = [o["orderId"] for o in (await get_orders(account, filter=since))["orders"]]
    assert found == [old["order_id"]]  # shipped after the bound; `new` has not changed since

    window = "lastmodifieddate:[2026-05-01T12:30:00.000Z..2026-05-01T13:00:00.000Z]"
    found = [o["orderId"] for o in (await get_orders(account, filter=window))["orders"]]
    assert found == [new["order_id"]]

    both = f"creationdate:[2026-05-01T11:00:00.000Z..2026-05-01T12:30:00Z],{since}"
    found = [o["orderId"] for o in (await get_orders(account, filter=both))["orders"]]
    assert found == [old["order_id"]]  # creationdate wins over lastmodifieddate


async def test_offset_pagination_walks_every_match_once(account: Account) -> None:
    await account.seed({"sku": "A", "quantity": 100})
    placed = []
    for _ in range(7):
        placed.append((await account.order(A=1))["order_id"])
        account.clock.advance(1)
    seen: list[str] = []
    body = await get_orders(account, limit="3")
    while True:
        assert body["total"] == 7 and body["limit"] == 3
        seen.extend(o["orderId"] for o in body["orders"])
        if "next" not in body:
            break
        response = await account.rest("GET", body["next"])
        body = response.json()
    assert seen == placed[::-1]  # newest first, each once
    assert body["offset"] == 6 and "prev" in body


async def test_order_ids_fetch_known_orders(account: Account) -> None:
    await account.seed({"sku": "A", "quantity": 10})
    first, second = (await account.order(A=1))["order_id"], (await account.order(A=1))["order_id"]
    body = await get_orders(account, orderIds=f"{first},nope,{second}")
    assert sorted(o["orderId"] for o in body["orders"]) == sorted([first, second])
    single = await account.rest("GET", f"{ORDERS}/{first}")
    assert single.json()["orderId"] == first
    missing = await account.rest("GET", f"{ORDERS}/00-00000-00000")
    assert missing.status_code == 404 and missing.json()["errors"][0]["errorId"] == 32100


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"filter": "lastmodifieddate:2026-05-01"}, "lastmodifieddate"),
        ({"filter": "lastmodifieddate:[2026-05-01..]"}, "ISO 8601"),
        ({"filter": "buyer:[a..b]"}, "unknown filter"),
        ({"filter": "orderfulfillmentstatus:{SHIPPED}"}, "orderfulfillmentstatus"),
        ({"limit": "201"}, "limit"),
        ({"offset": "-1"}, "offset"),
    ],
)
async def test_bad_parameters_are_refused_naming_them(
    account: Account, params: dict[str, str], named: str
) -> None:
    response = await account.rest("GET", ORDERS, params=params)
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["category"] == "REQUEST" and named in error["message"]


async def test_a_package_is_created_with_tracking_and_moves_the_statuses(account: Account) -> None:
    await account.seed({"sku": "A", "quantity": 10}, {"sku": "B", "quantity": 10})
    placed = await account.order(A=2, B=1)
    order_id = placed["order_id"]
    line_a, line_b = (line["line_item_id"] for line in placed["line_items"])
    body = {
        "lineItems": [{"lineItemId": line_a, "quantity": 2}],
        "shippedDate": "2026-05-01T15:00:00.000Z",
        "shippingCarrierCode": "USPS",
        "trackingNumber": "9400111899560000000001",
    }
    created = await account.rest("POST", f"{ORDERS}/{order_id}/shipping_fulfillment", json=body)
    assert created.status_code == 201
    assert created.headers["location"].startswith(f"http://ebay{ORDERS}/{order_id}/")

    order = (await account.rest("GET", f"{ORDERS}/{order_id}")).json()
    assert order["orderFulfillmentStatus"] == "IN_PROGRESS"
    statuses = {
        line["lineItemId"]: line["lineItemFulfillmentStatus"] for line in order["lineItems"]
    }
    assert statuses == {line_a: "FULFILLED", line_b: "NOT_STARTED"}
    assert order["fulfillmentHrefs"] == [created.headers["location"]]
    package = (await account.rest("GET", created.headers["location"])).json()
    assert package["shipmentTrackingNumber"] == "9400111899560000000001"
    assert package["shippingCarrierCode"] == "USPS"
    assert package["lineItems"] == [{"lineItemId": line_a, "quantity": 2}]


async def test_creating_the_same_package_twice_makes_two(account: Account) -> None:
    """createShippingFulfillment is not idempotent: a blind retry duplicates the package, so a
    caller must read getShippingFulfillments before sending again."""
    await account.seed({"sku": "A", "quantity": 10})
    placed = await account.order(A=1)
    order_id, line = placed["order_id"], placed["line_items"][0]["line_item_id"]
    body = {
        "lineItems": [{"lineItemId": line, "quantity": 1}],
        "shippingCarrierCode": "UPS",
        "trackingNumber": "1Z999AA10123456784",
    }
    path = f"{ORDERS}/{order_id}/shipping_fulfillment"
    for _ in range(2):
        assert (await account.rest("POST", path, json=body)).status_code == 201
    listed = (await account.rest("GET", path)).json()
    assert listed["total"] == 2
    assert {f["shipmentTrackingNumber"] for f in listed["fulfillments"]} == {"1Z999AA10123456784"}
    assert len((await account.control("GET", "/fulfillments"))["fulfillments"]) == 2


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"lineItems": []}, "lineItems"),
        ({"lineItems": [{"lineItemId": "999", "quantity": 1}]}, "lineItemId"),
        ({"trackingNumber": "1Z 999"}, "trackingNumber"),
        ({"shippingCarrierCode": None}, "shippingCarrierCode"),
        ({"shippedDate": "yesterday"}, "shippedDate"),
    ],
)
async def test_a_bad_package_is_refused_and_nothing_is_written(
    account: Account, change: dict[str, Any], named: str
) -> None:
    await account.seed({"sku": "A", "quantity": 10})
    placed = await account.order(A=1)
    body = {
        "lineItems": [{"lineItemId": placed["line_items"][0]["line_item_id"], "quantity": 1}],
        "shippingCarrierCode": "USPS",
        "trackingNumber": "9400111",
        **change,
    }
    path = f"{ORDERS}/{placed['order_id']}/shipping_fulfillment"
    response = await account.rest("POST", path, json=body)
    assert response.status_code == 400
    assert named in response.json()["errors"][0]["message"]
    assert (await account.control("GET", "/fulfillments"))["fulfillments"] == []
