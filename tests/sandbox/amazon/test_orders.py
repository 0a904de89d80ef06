"""The Orders API as a poller uses it: buyers' orders appear with the state the mapper needs,
searchOrders' window and filter rules, pagination to the end without skipping, the order data
lag, getOrder, and the v0 calls."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox.amazon.conftest import US, Seller, SellerFactory

pytestmark = pytest.mark.anyio

ALL = "BUYER,RECIPIENT,PROCEEDS,FULFILLMENT,PACKAGES,CANCELLATION"


async def _all_pages(seller: Seller, **params: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    token = None
    while True:
        query = dict(params, **({"paginationToken": token} if token else {}))
        answer = await seller.search(**query)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        pages.append([order["orderId"] for order in body["orders"]])
        token = body.get("pagination", {}).get("nextToken")
        if token is None:
            return pages


async def test_a_buyer_order_lowers_stock_and_shows_what_the_mapper_needs(seller: Seller) -> None:
    await seller.list(A=5, B=2)

    placed = await seller.order(A=2, B=1)

    assert await seller.control("GET", "/inventory") == {"A": 3, "B": 1}
    answer = await seller.search(includedData=ALL)
    assert answer.headers["x-amzn-RateLimit-Limit"] == "0.0056"
    (order,) = answer.json()["orders"]
    assert order["orderId"] == placed["order_id"]
    assert order["salesChannel"]["marketplaceId"] == US
    assert order["fulfillment"]["fulfillmentStatus"] == "UNSHIPPED"
    assert order["fulfillment"]["fulfilledBy"] == "MERCHANT"
    assert order["proceeds"]["grandTotal"] == {"amount": "37.50", "currencyCode": "USD"}
    assert order["buyer"]["buyerName"] == "Jo Buyer"
    assert order["recipient"]["deliveryAddress"]["postalCode"] == "98101"
    lines = {item["product"]["sellerSku"]: item for item in order["orderItems"]}
    assert lines["A"]["quantityOrdered"] == 2
    assert lines["A"]["product"]["price"]["unitPrice"] == {"amount": "12.50", "currencyCode": "USD"}
    assert lines["A"]["fulfillment"] == {"quantityFulfilled": 0, "quantityUnfulfilled": 2}


async def test_included_data_decides_which_sections_come(seller: Seller) -> None:
    await seller.list(A=5)
    await seller.order(A=1)

    (bare,) = (await seller.search()).json()["orders"]

    assert {"buyer", "recipient", "proceeds", "fulfillment", "packages"}.isdisjoint(bare)
    assert bare["orderItems"][0]["product"]["sellerSku"] == "A"


async def test_a_pending_order_has_no_prices_and_commits_stock_when_paid(seller: Seller) -> None:
    await seller.list(A=5)
    placed = await seller.order(pending=True, A=2)

    assert await seller.control("GET", "/inventory") == {"A": 5}
    (order,) = (await seller.search(includedData=ALL)).json()["orders"]
    assert order["fulfillment"]["fulfillmentStatus"] == "PENDING"
    assert "proceeds" not in order
    assert "price" not in order["orderItems"][0]["product"]

    await seller.control("POST", "/payment", {"order_id": placed["order_id"]})

    assert await seller.control("GET", "/inventory") == {"A": 3}
    (paid,) = (await seller.search(includedData="FULFILLMENT,PROCEEDS")).json()["orders"]
    assert paid["fulfillment"]["fulfillmentStatus"] == "UNSHIPPED"
    assert paid["lastUpdatedTime"] > order["lastUpdatedTime"]
    assert paid["proceeds"]["grandTotal"]["amount"] == "25.00"


@pytest.mark.parametrize(
    ("params", "named"),
    [
        (
            {"createdAfter": "2020-01-01T00:00:00Z", "lastUpdatedAfter": "2020-01-01T00:00:00Z"},
            "exactly one",
        ),
        (
            {"createdAfter": "2020-01-01T00:00:00Z", "lastUpdatedBefore": "2020-02-01T00:00:00Z"},
            "lastUpdatedBefore",
        ),
        ({"lastUpdatedBefore": "2020-02-01T00:00:00Z"}, "exactly one"),
        ({"createdAfter": "yesterday"}, "createdAfter"),
        (
            {"createdAfter": "2026-05-01T11:00:00Z", "createdBefore": "2026-05-01T11:59:00Z"},
            "two minutes",
        ),
        (
            {"createdAfter": "2026-05-01T11:00:00Z", "createdBefore": "2026-05-01T10:00:00Z"},
            "after createdAfter",
        ),
        ({"createdAfter": "2020-01-01T00:00:00Z", "maxResultsPerPage": "101"}, "maxResultsPerPage"),
        (
            {"createdAfter": "2020-01-01T00:00:00Z", "fulfillmentStatuses": "LOST"},
            "fulfillmentStatuses",
        ),
        (
            {"createdAfter": "2020-01-01T00:00:00Z", "marketplaceIds": "A1PA6795UKMFR9"},
            "A1PA6795UKMFR9",
        ),
    ],
)
async def test_search_windows_and_filters_are_checked(
    seller: Seller, params: dict[str, str], named: str
) -> None:
    answer = await seller.api("GET", "/orders/2026-01-01/orders", params=params)

    assert answer.status_code == 400, answer.text
    error = answer.json()["errors"][0]
    assert error["code"] == "InvalidInput"
    assert named in error["message"]


async def test_filters_select_by_status_fulfiller_and_time(seller: Seller) -> None:
    await seller.list(A=10)
    await seller.control(
        "POST",
        "/listings",
        {"listings": [{"sku": "F", "quantity": 9, "fulfillment_channel": "AMAZON_NA"}]},
    )
    first = await seller.order(A=1)
    seller.clock.advance(600)
    later = await seller.order(A=1)
    fba = await seller.order(F=1)
    await seller.control("POST", "/cancel", {"order_id": first["order_id"]})

    cancelled = (await seller.search(fulfillmentStatuses="CANCELLED")).json()["orders"]
    by_amazon = (await seller.search(fulfilledBy="AMAZON")).json()["orders"]
    created_late = (await seller.search(createdAfter="2026-05-01T12:05:00Z")).json()["orders"]

    assert [o["orderId"] for o in cancelled] == [first["order_id"]]
    assert [o["orderId"] for o in by_amazon] == [fba["order_id"]]
    assert {o["orderId"] for o in created_late} == {later["order_id"], fba["order_id"]}
    assert await seller.control("GET", "/inventory") == {"A": 9, "F": 8}


async def test_pagination_reaches_the_end_with_each_order_once(seller: Seller) -> None:
    await seller.list(A=100)
    placed = []
    for _ in range(7):
        placed.append((await seller.order(A=1))["order_id"])
        seller.clock.advance(1)

    pages = await _all_pages(seller, maxResultsPerPage="3")

    assert [len(page) for page in pages] == [3, 3, 1]
    assert [order_id for page in pages for order_id in page] == placed


async def test_an_order_updated_between_pages_is_seen_again_never_skipped(seller: Seller) -> None:
    await seller.list(A=100)
    placed = []
    for _ in range(4):
        placed.append((await seller.order(A=1))["order_id"])
        seller.clock.advance(1)
    first = (await seller.search(maxResultsPerPage="2")).json()
    token = first["pagination"]["nextToken"]

    await seller.control("POST", "/cancel", {"order_id": placed[0]})
    rest = (await seller.search(maxResultsPerPage="2", paginationToken=token)).json()
    seen = [o["orderId"] for o in first["orders"]]
    while True:
        seen += [o["orderId"] for o in rest["orders"]]
        if "pagination" not in rest:
            break
        rest = (await seller.search(paginationToken=rest["pagination"]["nextToken"])).json()

    assert set(seen) == set(placed)
    assert seen.count(placed[0]) == 2


async def test_a_pagination_token_is_bound_to_its_filters_and_to_a_day(seller: Seller) -> None:
    await seller.list(A=10)
    for _ in range(3):
        await seller.order(A=1)
    token = (await seller.search(maxResultsPerPage="1")).json()["pagination"]["nextToken"]

    other = await seller.search(paginationToken=token, fulfillmentStatuses="SHIPPED")
    forged = await seller.search(paginationToken=token[:-2] + "xy")
    resized = await seller.search(
        paginationToken=token, maxResultsPerPage="5", includedData="BUYER"
    )
    seller.clock.advance(24 * 3600 + 1)
    await seller.login()
    expired = await seller.search(paginationToken=token)

    assert other.status_code == 400
    assert "other filters" in other.json()["errors"][0]["message"]
    assert forged.status_code == 400
    assert resized.status_code == 200
    assert len(resized.json()["orders"]) == 2
    assert expired.status_code == 400
    assert "expired" in expired.json()["errors"][0]["message"]


async def test_the_order_data_lag_hides_recent_changes_from_search(seller: Seller) -> None:
    await seller.list(A=10)
    await seller.control("POST", "/faults", {"search_lag_s": 120})
    placed = await seller.order(A=1)

    assert (await seller.search()).json()["orders"] == []
    seller.clock.advance(121)
    assert [o["orderId"] for o in (await seller.search()).json()["orders"]] == [placed["order_id"]]
    assert (
        await seller.api("GET", f"/orders/2026-01-01/orders/{placed['order_id']}")
    ).status_code == 200


async def test_get_order_answers_one_order_or_404(seller: Seller) -> None:
    await seller.list(A=10)
    placed = await seller.order(A=3)

    found = await seller.api(
        "GET",
        f"/orders/2026-01-01/orders/{placed['order_id']}",
        params={"includedData": "FULFILLMENT"},
    )
    missing = await seller.api("GET", "/orders/2026-01-01/orders/113-0000000-0000000")

    assert found.status_code == 200
    order = found.json()["order"]
    assert order["orderId"] == placed["order_id"]
    assert order["orderItems"][0]["orderItemId"] == placed["items"][0]["order_item_id"]
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "NotFound"


async def test_v0_get_orders_and_order_items(make_seller: SellerFactory) -> None:
    seller: Seller = await make_seller(marketplace_ids=("ATVPDKIKX0DER", "A2EUQ1WTGCTBG2"))
    await seller.list(A=10)
    us = await seller.order(A=2)
    await seller.control(
        "POST",
        "/orders",
        {"lines": [{"sku": "A", "quantity": 1}], "marketplace_id": "A2EUQ1WTGCTBG2"},
        status=201,
    )

    listed = await seller.api(
        "GET",
        "/orders/v0/orders",
        params={"CreatedAfter": "2020-01-01T00:00:00Z", "MarketplaceIds": US},
    )
    items = await seller.api("GET", f"/orders/v0/orders/{us['order_id']}/orderItems")
    no_market = await seller.api(
        "GET", "/orders/v0/orders", params={"CreatedAfter": "2020-01-01T00:00:00Z"}
    )

    assert listed.status_code == 200
    (order,) = listed.json()["payload"]["Orders"]
    assert order["AmazonOrderId"] == us["order_id"]
    assert order["OrderStatus"] == "Unshipped"
    assert order["OrderTotal"] == {"CurrencyCode": "USD", "Amount": "25.00"}
    (item,) = items.json()["payload"]["OrderItems"]
    assert (item["SellerSKU"], item["QuantityOrdered"], item["QuantityShipped"]) == ("A", 2, 0)
    assert no_market.status_code == 400
