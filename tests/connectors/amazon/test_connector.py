"""The connector's protocol methods over the fake: polling, stock patches, reads, shipments."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.amazon import const
from connectors.base import (
    CancelRequest,
    FulfillmentRequest,
    OrderStatus,
    PushOutcome,
    ShipmentLine,
    StockTarget,
)
from connectors.errors import AuthError, NotFoundError, PermanentError, SkipRecordError
from tests.connectors.amazon.fake_amazon import (
    ORDER_ID,
    SELLER,
    US,
    FakeAmazon,
    connector,
    error,
    order,
)

pytestmark = pytest.mark.anyio
SINCE = datetime(2026, 2, 1, 12, 0, 0, tzinfo=UTC)


def shipment(key: str = "ship-1", carrier: str = "UPS") -> FulfillmentRequest:
    return FulfillmentRequest(
        key=key,
        order_external_id=ORDER_ID,
        lines=[ShipmentLine("11111111111111", 2)],
        carrier=carrier,
        tracking_number="1Z999",
        shipped_at=datetime(2026, 2, 2, 9, 0, tzinfo=UTC),
    )


# Orders in -------------------------------------------------------------------------------------


async def test_poll_asks_from_the_checkpoint_minus_amazons_lag_with_what_the_mapper_needs() -> None:
    amazon = FakeAmazon()
    amazon.queue(
        const.SEARCH_ORDERS,
        {"orders": [order("114-0000000-0000002")], "pagination": {"nextToken": "page-2"}},
        {"orders": [order(lastUpdatedTime="2026-02-01T12:10:00Z")]},
    )
    amazon_connector = connector(amazon, marketplace_ids=(US, "A2EUQ1WTGCTBG2"))
    first = await amazon_connector.fetch_orders(SINCE, None)
    assert first.next_cursor == "page-2"
    second = await amazon_connector.fetch_orders(SINCE, first.next_cursor)
    assert second.next_cursor is None
    one, two = (sent.query() for sent in amazon.calls(const.SEARCH_ORDERS))
    assert one == {
        "lastUpdatedAfter": "2026-02-01T11:57:00Z",  # the checkpoint minus 3 minutes
        "marketplaceIds": f"{US},A2EUQ1WTGCTBG2",
        "includedData": "BUYER,RECIPIENT,PROCEEDS,CANCELLATION,FULFILLMENT,PACKAGES",
        "maxResultsPerPage": "100",
    }
    assert two == {**one, "paginationToken": "page-2"}
    assert SINCE - datetime.fromisoformat(one["lastUpdatedAfter"]) >= timedelta(minutes=2)


async def test_poll_pages_come_oldest_first_and_leave_out_malformed_orders(
    caplog: pytest.LogCaptureFixture,
) -> None:
    amazon = FakeAmazon()
    broken = order("114-0000000-0000009", fulfillment={"fulfillmentStatus": "TELEPORTED"})
    amazon.on(
        const.SEARCH_ORDERS,
        {
            "orders": [
                order("114-0000000-0000001", lastUpdatedTime="2026-02-01T12:40:00Z"),
                broken,
                order("114-0000000-0000002", lastUpdatedTime="2026-02-01T12:05:00Z"),
            ]
        },
    )
    page = await connector(amazon).fetch_orders(SINCE, None)
    assert [o.external_id for o in page.orders] == ["114-0000000-0000002", "114-0000000-0000001"]
    assert "114-0000000-0000009" in caplog.text and "TELEPORTED" in caplog.text
    assert "Jane Buyer" not in caplog.text and "abc123@" not in caplog.text


async def test_a_pending_order_has_no_prices_and_still_reserves() -> None:
    amazon = FakeAmazon()
    pending = order(fulfillment={"fulfillmentStatus": "PENDING", "fulfilledBy": "MERCHANT"})
    del pending["proceeds"]
    del pending["orderItems"][0]["product"]["price"]
    amazon.on(const.GET_ORDER, {"order": pending})
    mapped = await connector(amazon).fetch_order(ORDER_ID)
    assert mapped.status is OrderStatus.PENDING
    assert mapped.is_reserving and mapped.total is None and mapped.currency == "USD"
    assert mapped.lines[0].live_quantity == 2 and mapped.lines[0].unit_price is None


async def test_fetch_order_missing_or_malformed() -> None:
    amazon = FakeAmazon()
    amazon.queue(
        const.GET_ORDER,
        error(404, "NotFound", "Order not found"),
        {"order": order(orderItems=[{"orderItemId": "1", "product": {"sellerSku": "X"}}])},
    )
    amazon_connector = connector(amazon)
    with pytest.raises(NotFoundError):
        await amazon_connector.fetch_order("114-0000000-0000404")
    with pytest.raises(SkipRecordError, match="quantityOrdered"):
        await amazon_connector.fetch_order(ORDER_ID)


# Stock out -------------------------------------------------------------------------------------


async def test_small_pushes_patch_each_listing_and_read_each_answer() -> None:
    amazon = FakeAmazon()

    def patch(request: httpx.Request) -> httpx.Response | dict[str, Any]:
        sku = request.url.path.rsplit("/", 1)[1]
        if sku == "INVALID":
            return {
                "sku": sku,
                "status": "INVALID",
                "submissionId": "s",
                "issues": [
                    {
                        "code": "90000900",
                        "message": "The attributes are invalid.",
                        "severity": "ERROR",
                    },
                    {"code": "1", "message": "only a warning", "severity": "WARNING"},
                ],
            }
        if sku == "GONE":
            return error(404, "NOT_FOUND", "SKU not found")
        if sku == "BAD":
            return error(400, "BAD_REQUEST", "Invalid input")
        if sku == "BUSY":
            return error(503, "ServiceUnavailable", "busy")
        return {"sku": sku, "status": "ACCEPTED", "submissionId": "s", "issues": []}

    amazon.on(const.PATCH_LISTING, patch)
    targets = [StockTarget(sku, 3) for sku in ("OK", "INVALID", "GONE", "BAD", "BUSY")]
    results = await connector(amazon, attempts=2).push_stock(targets)
    assert [(r.listing_ref, r.outcome) for r in results] == [
        ("OK", PushOutcome.APPLIED),
        ("INVALID", PushOutcome.REJECTED),
        ("GONE", PushOutcome.REJECTED),
        ("BAD", PushOutcome.REJECTED),
        ("BUSY", PushOutcome.RETRY),
    ]
    assert results[1].error == "90000900: The attributes are invalid."
    assert "SKU not found" in str(results[2].error)
    assert results[3].error == "BAD_REQUEST: Invalid input"
    assert not amazon.calls(const.CREATE_FEED)


async def test_ordinary_patches_leave_an_urgent_one_tokens_to_go_at_once() -> None:
    """A push to a listing's last units does not queue behind a burst of ordinary patches for
    patchListingsItem's tokens (5/s): they leave it URGENT_PATCH_RESERVE of them."""
    amazon = FakeAmazon()
    amazon.on(const.PATCH_LISTING, {"sku": "x", "status": "ACCEPTED", "submissionId": "s"})
    amazon_us = connector(amazon)
    _, burst = const.RATE_LIMITS[const.PATCH_LISTING]
    await amazon_us.push_stock([StockTarget(f"S{n}", 5) for n in range(burst)])
    assert amazon.clock.now > 1000.0  # the ordinary ones waited rather than empty the bucket
    before = amazon.clock.now
    await amazon_us.push_stock([StockTarget("LAST", 0, urgent=True)])
    assert amazon.clock.now == before  # it went at once
    assert len(amazon.calls(const.PATCH_LISTING)) == burst + 1


async def test_patches_are_paced_at_five_a_second() -> None:
    amazon = FakeAmazon()
    amazon.on(const.PATCH_LISTING, {"sku": "x", "status": "ACCEPTED", "submissionId": "s"})
    await connector(amazon).push_stock([StockTarget(f"S{n}", 1) for n in range(40)])
    times = sorted(s.at for s in amazon.calls(const.PATCH_LISTING))
    rate, burst = const.RATE_LIMITS[const.PATCH_LISTING]
    for index, at in enumerate(times):
        assert index + 1 <= burst + rate * (at - times[0]) + 1e-6


async def test_refused_credentials_stop_a_push() -> None:
    amazon = FakeAmazon()
    amazon.on(const.LWA_TOKEN, httpx.Response(400, json={"error": "invalid_grant"}))
    with pytest.raises(AuthError):
        await connector(amazon).push_stock([StockTarget(f"S{n}", 1) for n in range(10)])
    assert len(amazon.calls(const.LWA_TOKEN)) == 1
    assert not amazon.calls(const.PATCH_LISTING)


async def test_read_stock_is_the_merchant_quantity() -> None:
    amazon = FakeAmazon()

    def item(request: httpx.Request) -> httpx.Response | dict[str, Any]:
        sku = request.url.path.rsplit("/", 1)[1]
        assert request.url.params["includedData"] == "fulfillmentAvailability"
        if sku == "GONE":
            return error(404, "NOT_FOUND", "no such SKU")
        if sku == "FBA":
            return {
                "sku": sku,
                "fulfillmentAvailability": [{"fulfillmentChannelCode": "AMAZON_NA"}],
            }
        return {
            "sku": sku,
            "fulfillmentAvailability": [{"fulfillmentChannelCode": "DEFAULT", "quantity": 4}],
        }

    amazon.on(const.GET_LISTING, item)
    shown = await connector(amazon).read_stock(["MINE", "GONE", "FBA"])
    assert shown == {"MINE": 4}


async def test_list_listings_reads_every_page_and_leaves_out_fba() -> None:
    amazon = FakeAmazon()
    amazon.queue(
        const.SEARCH_LISTINGS,
        {
            "numberOfResults": 3,
            "pagination": {"nextToken": "next"},
            "items": [
                {
                    "sku": "MUG-RED",
                    "summaries": [{"marketplaceId": US, "asin": "B000000001"}],
                    "fulfillmentAvailability": [
                        {"fulfillmentChannelCode": "DEFAULT", "quantity": 5}
                    ],
                },
                {
                    "sku": "MUG-FBA",
                    "fulfillmentAvailability": [{"fulfillmentChannelCode": "AMAZON_NA"}],
                },
            ],
        },
        {
            "numberOfResults": 3,
            "items": [
                {
                    "sku": "MUG-BLUE",
                    "fulfillmentAvailability": [{"fulfillmentChannelCode": "DEFAULT"}],
                }
            ],
        },
    )
    listings = await connector(amazon).list_listings()
    assert [(x.listing_ref, x.sku, x.quantity) for x in listings] == [
        ("MUG-RED", "MUG-RED", 5),
        ("MUG-BLUE", "MUG-BLUE", 0),
    ]
    first, second = amazon.calls(const.SEARCH_LISTINGS)
    assert first.request.url.path == f"/listings/2021-08-01/items/{SELLER}"
    assert "pageToken" not in first.query() and second.query()["pageToken"] == "next"


# Status out ------------------------------------------------------------------------------------


async def test_shipment_needs_tracking_and_carrier() -> None:
    amazon = FakeAmazon()
    amazon_connector = connector(amazon)
    no_tracking = FulfillmentRequest(
        key="k",
        order_external_id=ORDER_ID,
        lines=[ShipmentLine("1", 1)],
        carrier="UPS",
        tracking_number=None,
        shipped_at=datetime(2026, 2, 2, tzinfo=UTC),
    )
    with pytest.raises(PermanentError, match="tracking number"):
        await amazon_connector.push_fulfillment(no_tracking)
    assert not amazon.calls(const.CONFIRM_SHIPMENT)


async def test_the_same_shipment_gets_the_same_package_reference() -> None:
    amazon = FakeAmazon()
    amazon.on(const.CONFIRM_SHIPMENT, httpx.Response(204))
    amazon_connector = connector(amazon)
    assert await amazon_connector.push_fulfillment(shipment("a")) == (
        await amazon_connector.push_fulfillment(shipment("a"))
    )
    assert await amazon_connector.push_fulfillment(shipment("b")) != (
        await amazon_connector.push_fulfillment(shipment("a"))
    )


async def test_with_several_marketplaces_the_order_says_which() -> None:
    amazon = FakeAmazon()
    canada = order(salesChannel={"channelName": "AMAZON", "marketplaceId": "A2EUQ1WTGCTBG2"})
    amazon.on(const.GET_ORDER, {"order": canada})
    amazon.on(const.CONFIRM_SHIPMENT, httpx.Response(204))
    await connector(amazon, marketplace_ids=(US, "A2EUQ1WTGCTBG2")).push_fulfillment(shipment())
    (sent,) = amazon.calls(const.CONFIRM_SHIPMENT)
    assert sent.json()["marketplaceId"] == "A2EUQ1WTGCTBG2"


async def test_find_fulfillment_by_reference_or_tracking_and_units() -> None:
    amazon = FakeAmazon()
    amazon_connector = connector(amazon)
    amazon.on(const.CONFIRM_SHIPMENT, httpx.Response(204))
    reference = await amazon_connector.push_fulfillment(shipment())
    package = {
        "packageReferenceId": reference,
        "packageStatus": {"status": "SHIPPED"},
        "carrier": "UPS",
        "trackingNumber": "1Z999",
        "shipTime": "2026-02-02T09:00:00Z",
        "packageItems": [{"orderItemId": "11111111111111", "quantity": 2}],
    }
    amazon.queue(
        const.GET_ORDER,
        {"order": order(packages=[package])},
        {"order": order(packages=[{**package, "packageReferenceId": "AMZ-1"}])},
        {"order": order(packages=[])},
    )
    assert await amazon_connector.find_fulfillment(shipment()) == reference
    assert await amazon_connector.find_fulfillment(shipment()) == "AMZ-1"
    assert await amazon_connector.find_fulfillment(shipment()) is None


async def test_a_confirmed_shipment_amazon_does_not_show_is_alerted_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    amazon = FakeAmazon()
    now = [datetime(2026, 2, 2, 9, 0, tzinfo=UTC)]
    amazon_connector = connector(amazon, now=lambda: now[0])
    amazon.on(const.CONFIRM_SHIPMENT, httpx.Response(204))
    await amazon_connector.push_fulfillment(shipment())
    amazon.on(const.SEARCH_ORDERS, {"orders": [order()]})  # still UNSHIPPED
    await amazon_connector.fetch_orders(SINCE, None)
    assert amazon_connector.unseen_shipments() == []  # within the grace period
    now[0] += const.CONFIRM_VISIBLE_GRACE
    caplog.set_level(logging.WARNING)
    for _ in range(3):
        await amazon_connector.fetch_orders(SINCE, None)
    (unseen,) = amazon_connector.unseen_shipments()
    assert unseen.order_id == ORDER_ID
    assert caplog.text.count("still shows shipment") == 1
    shipped = order(fulfillment={"fulfillmentStatus": "SHIPPED", "fulfilledBy": "MERCHANT"})
    shipped["orderItems"][0]["fulfillment"] = {"quantityFulfilled": 2, "quantityUnfulfilled": 0}
    amazon.on(const.GET_ORDER, {"order": shipped})
    await amazon_connector.fetch_order(ORDER_ID)
    assert amazon_connector.unseen_shipments() == []


async def test_cancel_is_not_offered_by_the_api() -> None:
    amazon = FakeAmazon()
    with pytest.raises(PermanentError, match="Seller Central"):
        await connector(amazon).cancel_order(CancelRequest(key="c", order_external_id=ORDER_ID))
    assert amazon.sent == []
