"""Orders in and status out over the Sell Fulfillment API: what the connector asks for, how it
pages to the end, and how it creates a package once and finds it again."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from connectors.base import (
    CancelRequest,
    Connector,
    FulfillmentRequest,
    OrderStatus,
    ShipmentLine,
)
from connectors.errors import (
    NotFoundError,
    PermanentError,
    SkipRecordError,
    UncertainOutcomeError,
)
from tests.connectors.ebay.fake_ebay import FakeClock, FakeEbay, connect, json_of
from tests.connectors.ebay.test_mapper import ORDER_ID, ebay_order, fulfillment

pytestmark = pytest.mark.anyio
ORDERS = "/sell/fulfillment/v1/order"
SINCE = datetime(2026, 3, 4, 18, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _page(
    orders: list[dict[str, Any]], total: int, offset: int, limit: int = 200
) -> dict[str, Any]:
    body: dict[str, Any] = {"orders": orders, "total": total, "limit": limit, "offset": offset}
    if offset + limit < total:
        body["next"] = f"https://api.ebay.test{ORDERS}?limit={limit}&offset={offset + limit}"
    return body


def test_it_is_a_connector_with_ebays_capabilities() -> None:
    connector = connect(FakeEbay())
    assert isinstance(connector, Connector)
    assert connector.capabilities.max_stock_batch == 4  # ReviseInventoryStatus takes 4
    assert connector.capabilities.supports_webhooks
    assert not connector.capabilities.idempotent_fulfillment
    assert not connector.capabilities.supports_compare_and_swap
    inventory = connect(FakeEbay(), stock_api="inventory")
    assert inventory.capabilities.max_stock_batch == 25
    assert "PRD-secret" not in repr(connector.settings)
    assert "refresh-token" not in repr(connector.settings)


async def test_a_poll_filters_on_last_modified_less_an_overlap_and_pages_to_the_end() -> None:
    ebay = FakeEbay()
    first = [ebay_order(orderId=f"12-0000-{n:04d}") for n in range(200)]
    second = [ebay_order(orderId="12-0000-9999")]
    ebay.queue("GET", ORDERS, _page(first, 201, 0), _page(second, 201, 200))
    connector = connect(ebay)
    page = await connector.fetch_orders(SINCE, None)
    assert len(page.orders) == 200 and page.next_cursor == "200"
    last = await connector.fetch_orders(SINCE, page.next_cursor)
    assert [o.external_id for o in last.orders] == ["12-0000-9999"] and last.next_cursor is None
    asks = ebay.calls("GET", ORDERS)
    params = [dict(r.url.params) for r in asks]
    assert params[0] == {
        "filter": "lastmodifieddate:[2026-03-04T17:58:00.123Z..]",  # 2 minutes' overlap
        "limit": "200",
        "offset": "0",
    }
    assert params[1]["offset"] == "200" and params[1]["filter"] == params[0]["filter"]
    # eBay wants the filter's brackets percent-encoded.
    assert b"%5B" in asks[0].url.query and b"[" not in asks[0].url.query
    await connector.aclose()


async def test_an_empty_poll_has_no_next_page() -> None:
    ebay = FakeEbay()
    ebay.on("GET", ORDERS, {"total": 0, "limit": 200, "offset": 0})
    connector = connect(ebay)
    page = await connector.fetch_orders(SINCE, None)
    assert page.orders == () and page.next_cursor is None
    with pytest.raises(PermanentError):
        await connector.fetch_orders(SINCE, "not-an-offset")
    await connector.aclose()


async def test_orders_with_parcels_get_them_read_and_a_malformed_one_is_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ebay = FakeEbay()
    shipped = ebay_order(
        orderId="12-0000-0001",
        orderFulfillmentStatus="FULFILLED",
        fulfillmentHrefs=["https://api.ebay.test/x"],
    )
    broken = ebay_order(orderId="12-0000-0002")
    del broken["lastModifiedDate"]
    ebay.on("GET", ORDERS, _page([shipped, broken, ebay_order()], 3, 0))
    parcels_path = f"{ORDERS}/12-0000-0001/shipping_fulfillment"
    ebay.on("GET", parcels_path, {"fulfillments": [fulfillment({"10058123456701": 2})], "total": 1})
    connector = connect(ebay)
    page = await connector.fetch_orders(SINCE, None)
    assert [o.external_id for o in page.orders] == ["12-0000-0001", ORDER_ID]
    assert page.orders[0].status is OrderStatus.SHIPPED
    assert [s.tracking_number for s in page.orders[0].shipments] == ["9400111899223197428490"]
    assert len(ebay.calls("GET", parcels_path)) == 1  # only the order that has parcels
    assert "12-0000-0002" in caplog.text and "lastModifiedDate" in caplog.text
    assert "Jane" not in caplog.text and "Hamilton" not in caplog.text
    await connector.aclose()


async def test_fetch_order_reads_one_order_or_says_there_is_none() -> None:
    ebay = FakeEbay()
    ebay.on("GET", f"{ORDERS}/{ORDER_ID}", ebay_order())
    ebay.on(
        "GET",
        f"{ORDERS}/12-404",
        httpx.Response(404, json={"errors": [{"errorId": 32100, "message": "Invalid order ID"}]}),
    )
    broken = ebay_order(orderId="12-bad")
    broken["pricingSummary"] = {}
    ebay.on("GET", f"{ORDERS}/12-bad", broken)
    connector = connect(ebay)
    order = await connector.fetch_order(ORDER_ID)
    assert order.external_id == ORDER_ID
    with pytest.raises(NotFoundError):
        await connector.fetch_order("12-404")
    with pytest.raises(NotFoundError):
        await connector.fetch_order("../admin")
    with pytest.raises(SkipRecordError, match="missing field 'total'"):
        await connector.fetch_order("12-bad")
    await connector.aclose()


async def test_versions_read_no_parcels_and_a_listed_order_reads_only_its_parcels(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ebay = FakeEbay()
    shipped = ebay_order(
        orderId="12-0000-0001",
        orderFulfillmentStatus="FULFILLED",
        fulfillmentHrefs=["https://api.ebay.test/x"],
        lastModifiedDate="2026-03-04T18:05:00.250Z",
    )
    broken = ebay_order(orderId="12-0000-0002")
    del broken["lastModifiedDate"]
    ebay.on("GET", ORDERS, _page([shipped, broken, ebay_order()], 3, 0))
    parcels_path = f"{ORDERS}/12-0000-0001/shipping_fulfillment"
    ebay.on("GET", parcels_path, {"fulfillments": [fulfillment({"10058123456701": 2})], "total": 1})
    newer = dict(shipped, lastModifiedDate="2026-03-04T18:06:00.000Z")
    ebay.on("GET", f"{ORDERS}/12-0000-0001", newer)
    connector = connect(ebay)

    listed = await connector.fetch_order_versions(SINCE, None)
    assert [(v.external_id, v.updated_at) for v in listed.versions] == [
        ("12-0000-0001", datetime(2026, 3, 4, 18, 5, 0, 250000, tzinfo=UTC)),
        (ORDER_ID, listed.versions[1].updated_at),
    ]
    assert listed.next_cursor is None
    assert ebay.calls("GET", parcels_path) == []  # a version costs no parcel read
    assert "12-0000-0002" in caplog.text and "lastModifiedDate" in caplog.text

    order = await connector.fetch_listed_order(listed.versions[0])
    assert order.status is OrderStatus.SHIPPED
    assert [s.tracking_number for s in order.shipments] == ["9400111899223197428490"]
    assert order.updated_at == listed.versions[0].updated_at
    assert len(ebay.calls("GET", parcels_path)) == 1
    assert ebay.calls("GET", f"{ORDERS}/12-0000-0001") == []  # the page held the order

    # Held no more (read once), or listed at another version: read afresh with getOrder.
    again = await connector.fetch_listed_order(listed.versions[0])
    assert again.updated_at == datetime(2026, 3, 4, 18, 6, tzinfo=UTC)
    assert len(ebay.calls("GET", f"{ORDERS}/12-0000-0001")) == 1
    await connector.aclose()


def _request(lines: tuple[ShipmentLine, ...], **changes: Any) -> FulfillmentRequest:
    values: dict[str, Any] = {
        "key": "shipment-7",
        "order_external_id": ORDER_ID,
        "lines": lines,
        "carrier": "ups",
        "tracking_number": "1Z999AA10123456784",
        "shipped_at": datetime(2026, 3, 5, 15, 30, tzinfo=UTC),
        **changes,
    }
    return FulfillmentRequest(**values)


async def test_a_shipment_becomes_one_shipping_fulfillment_with_carrier_and_tracking() -> None:
    ebay = FakeEbay()
    path = f"{ORDERS}/{ORDER_ID}/shipping_fulfillment"
    ebay.on(
        "POST",
        path,
        httpx.Response(
            201, headers={"Location": f"https://api.ebay.test{path}/1Z999AA10123456784"}
        ),
    )
    connector = connect(ebay)
    created = await connector.push_fulfillment(
        _request((ShipmentLine("10058123456701", 2), ShipmentLine("10058123456702", 1)))
    )
    assert created == "1Z999AA10123456784"
    (call,) = ebay.calls("POST", path)
    assert json_of(call) == {
        "lineItems": [
            {"lineItemId": "10058123456701", "quantity": 2},
            {"lineItemId": "10058123456702", "quantity": 1},
        ],
        "shippedDate": "2026-03-05T15:30:00.000Z",
        "shippingCarrierCode": "UPS",
        "trackingNumber": "1Z999AA10123456784",
    }
    await connector.aclose()


async def test_a_shipment_without_lines_ships_every_line_not_yet_shipped() -> None:
    ebay = FakeEbay()
    raw = ebay_order()
    raw["lineItems"][0]["lineItemFulfillmentStatus"] = "FULFILLED"
    ebay.on("GET", f"{ORDERS}/{ORDER_ID}", raw)
    path = f"{ORDERS}/{ORDER_ID}/shipping_fulfillment"
    ebay.on("POST", path, httpx.Response(201, headers={"Location": f"{path}/F-1"}))
    connector = connect(ebay)
    assert await connector.push_fulfillment(_request(())) == "F-1"
    body = json_of(ebay.calls("POST", path)[0])
    assert body["lineItems"] == [
        {"lineItemId": "10058123456702", "quantity": 1},
        {"lineItemId": "10058123456703", "quantity": 1},
    ]
    await connector.aclose()


async def test_an_unclear_failure_is_not_resent_and_the_package_is_found_afterwards() -> None:
    ebay, clock = FakeEbay(), FakeClock()
    path = f"{ORDERS}/{ORDER_ID}/shipping_fulfillment"
    ebay.queue("POST", path, httpx.Response(500, json={"errors": [{"message": "System error"}]}))
    connector = connect(ebay, clock=clock)
    request = _request((ShipmentLine("10058123456701", 2),))
    with pytest.raises(UncertainOutcomeError):
        await connector.push_fulfillment(request)
    assert len(ebay.calls("POST", path)) == 1  # eBay may have created it: never sent twice

    ebay.on(
        "GET",
        path,
        {
            "fulfillments": [
                fulfillment({"10058123456702": 1}, tracking="OTHER"),
                fulfillment({"10058123456701": 2}, tracking="1Z999AA10123456784"),
            ],
            "total": 2,
        },
    )
    assert await connector.find_fulfillment(request) == "1Z999AA10123456784"
    other = _request((ShipmentLine("10058123456701", 1),))
    assert await connector.find_fulfillment(other) is None
    await connector.aclose()


async def test_a_refused_shipment_is_permanent_with_ebays_reason() -> None:
    ebay = FakeEbay()
    path = f"{ORDERS}/{ORDER_ID}/shipping_fulfillment"
    ebay.on(
        "POST",
        path,
        httpx.Response(
            400,
            json={"errors": [{"errorId": 32400, "message": "Invalid shipping carrier code"}]},
        ),
    )
    connector = connect(ebay)
    with pytest.raises(PermanentError, match="Invalid shipping carrier code"):
        await connector.push_fulfillment(_request((ShipmentLine("10058123456701", 2),)))
    await connector.aclose()


async def test_cancel_is_refused_with_what_to_do_instead() -> None:
    connector = connect(FakeEbay())
    with pytest.raises(PermanentError, match="Seller Hub"):
        await connector.cancel_order(CancelRequest(key="c-1", order_external_id=ORDER_ID))
    await connector.aclose()


async def test_no_buyer_data_in_debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ebay = FakeEbay()
    ebay.on("GET", f"{ORDERS}/{ORDER_ID}", ebay_order())
    connector = connect(ebay)
    await connector.fetch_order(ORDER_ID)
    assert "Jane" not in caplog.text and "user-token-1" not in caplog.text
    await connector.aclose()


async def test_a_package_created_without_a_location_is_read_back_for_its_id() -> None:
    ebay = FakeEbay()
    path = f"{ORDERS}/{ORDER_ID}/shipping_fulfillment"
    ebay.on("POST", path, httpx.Response(201, json={}))
    ebay.on(
        "GET",
        path,
        {"fulfillments": [fulfillment({"10058123456701": 2}, tracking="1Z999AA10123456784")]},
    )
    connector = connect(ebay)
    request = _request((ShipmentLine("10058123456701", 2),))
    assert await connector.push_fulfillment(request) == "1Z999AA10123456784"
    assert len(ebay.calls("POST", path)) == 1
    await connector.aclose()
