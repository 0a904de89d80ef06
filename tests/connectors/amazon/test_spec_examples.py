"""Amazon's own examples (`x-amzn-api-sandbox` in the Orders models) through the connector.

Every 200 example of searchOrders, getOrder (2026-01-01 and v0), getOrders and getOrderItems maps
to canonical orders without error; every 400 example comes back as PermanentError carrying
Amazon's message. The examples are served by the fake exactly as the models give them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from connectors.amazon import AmazonConnector, const, mapper_v0
from connectors.amazon.mapper import buyer_ref, order_from_api
from connectors.base import Order, OrderStatus
from connectors.errors import PermanentError
from tests.connectors.amazon.conftest import orders_model, orders_v0_model, sandbox_examples
from tests.connectors.amazon.fake_amazon import FakeAmazon, connector

pytestmark = pytest.mark.anyio
SINCE = datetime(2024, 12, 20, tzinfo=UTC)


def _buyer_strings(raw: Any) -> set[str]:
    """Names, e-mails, phones and street lines in an example: what must stay in PII fields."""
    found: set[str] = set()
    if isinstance(raw, dict):
        for key, value in raw.items():
            is_personal = key in {"buyerName", "buyerEmail", "name", "phone", "addressLine1"}
            if is_personal and isinstance(value, str) and value:
                found.add(value)
            found |= _buyer_strings(value)
    elif isinstance(raw, list):
        for value in raw:
            found |= _buyer_strings(value)
    return found


def _assert_pii_only_in_pii_fields(order: Order, raw: Any) -> None:
    outside = repr(
        (
            order.external_id,
            order.number,
            order.lines,
            order.shipments,
            order.total,
            order.status,
            [dict(line.extra) for line in order.lines],
        )
    )
    for value in _buyer_strings(raw.get("buyer", {})) | _buyer_strings(raw.get("recipient", {})):
        assert value not in outside


async def test_every_search_orders_200_example_maps() -> None:
    examples = sandbox_examples(orders_model(), "searchOrders", "200")
    assert len(examples) == 3
    for example in examples:
        amazon = FakeAmazon()
        amazon.on(const.SEARCH_ORDERS, example["response"])
        page = await connector(amazon).fetch_orders(SINCE, None)
        raw_orders = example["response"]["orders"]
        assert len(page.orders) == len(raw_orders)  # none left out as malformed
        assert page.next_cursor == example["response"].get("pagination", {}).get("nextToken")
        for order in page.orders:
            raw = next(o for o in raw_orders if o["orderId"] == order.external_id)
            assert order.lines and all(line.sku for line in order.lines)
            assert len(order.lines) == len(raw["orderItems"])
            _assert_pii_only_in_pii_fields(order, raw)


async def test_search_orders_examples_map_to_what_they_say() -> None:
    first, uk, brazil = (
        example["response"]["orders"][0]
        for example in sandbox_examples(orders_model(), "searchOrders", "200")
    )
    fba = order_from_api(first)
    assert fba.is_reserving is False  # fulfilledBy AMAZON: Amazon's stock, not ours
    assert fba.status is OrderStatus.SHIPPED
    assert fba.total is not None and fba.total.amount == Decimal("19940")
    assert fba.currency == "JPY"
    assert {line.sku: line.quantity_shipped for line in fba.lines} == {
        "ECHO-DOT-4-JP-CHARCOAL": 1,
        "FIRE-TV-4K-MAX-JP": 2,
    }
    merchant = order_from_api(uk)
    assert merchant.is_reserving is True
    assert merchant.lines[0].unit_price is not None
    assert merchant.lines[0].unit_price.amount == Decimal("34.99")
    (parcel,) = merchant.shipments
    assert (parcel.external_id, parcel.carrier, parcel.tracking_number) == (
        "UK-PKG-CONSUMER-2024-002",
        "DPD",
        "15501234567890123456",
    )
    assert merchant.ship_to is not None and merchant.ship_to.country_code == "GB"
    assert (
        merchant.buyer_ref
        == buyer_ref("buyer-email@marketplace.amazon.co.uk")
        != "buyer-email@marketplace.amazon.co.uk"
    )
    unshipped = order_from_api(brazil)
    assert unshipped.status is OrderStatus.OPEN
    assert unshipped.lines[0].live_quantity == 1 and unshipped.lines[0].quantity_shipped == 0


async def test_every_get_order_200_example_maps() -> None:
    examples = sandbox_examples(orders_model(), "getOrder", "200")
    assert len(examples) == 3
    for example in examples:
        amazon = FakeAmazon()
        amazon.on(const.GET_ORDER, example["response"])
        order_id = example["request"]["parameters"]["orderId"]["value"]
        order = await connector(amazon).fetch_order(order_id)
        assert order.external_id == order_id
        assert order.lines
        _assert_pii_only_in_pii_fields(order, example["response"]["order"])
        (sent,) = amazon.calls(const.GET_ORDER)
        assert sent.request.url.path == f"/orders/2026-01-01/orders/{order_id}"


def test_every_v0_get_orders_and_get_order_200_example_maps() -> None:
    model = orders_v0_model()
    get_orders = sandbox_examples(model, "getOrders", "200")
    get_order = sandbox_examples(model, "getOrder", "200")
    assert len(get_orders) == 3 and len(get_order) == 2
    mapped = [
        mapper_v0.order_from_v0(raw)
        for example in get_orders
        for raw in example["response"]["payload"]["Orders"]
    ] + [mapper_v0.order_from_v0(example["response"]["payload"]) for example in get_order]
    assert len(mapped) == 6
    pending = next(o for o in mapped if o.external_id == "902-3159896-1390916")
    assert pending.status is OrderStatus.PENDING and pending.total is None
    assert pending.currency == "USD"  # no money yet: the marketplace's currency
    fba = next(o for o in mapped if o.external_id == "921-3175655-0452641")
    assert fba.is_reserving is False  # FulfillmentChannel AFN


def test_every_v0_get_order_items_200_example_maps_with_its_order() -> None:
    model = orders_v0_model()
    orders = {
        example["response"]["payload"]["AmazonOrderId"]: example["response"]["payload"]
        for example in sandbox_examples(model, "getOrder", "200")
    }
    examples = sandbox_examples(model, "getOrderItems", "200")
    assert examples
    for example in examples:
        payload = example["response"]["payload"]
        order = mapper_v0.order_from_v0(orders[payload["AmazonOrderId"]], payload["OrderItems"])
        (line,) = order.lines
        assert (line.sku, line.quantity, line.quantity_shipped) == ("NABetaASINB00551Q3CS", 1, 0)
        assert line.unit_price is not None and line.unit_price.amount == Decimal("10.00")


Call = Callable[[AmazonConnector], Awaitable[object]]


async def _search(c: AmazonConnector) -> object:
    return await c.fetch_orders(SINCE, None)


async def _get_order(c: AmazonConnector) -> object:
    return await c.fetch_order("TEST_CASE_400")


async def _get_orders_v0(c: AmazonConnector) -> object:
    return await c.client.call(
        const.GET_ORDERS_V0,
        lambda apis: apis.orders_v0.get_orders(
            CreatedAfter="TEST_CASE_400", MarketplaceIds="ATVPDKIKX0DER"
        ),
    )


async def _get_order_items_v0(c: AmazonConnector) -> object:
    return await c.client.call(
        const.GET_ORDER_ITEMS_V0, lambda apis: apis.orders_v0.get_order_items("TEST_CASE_400")
    )


@pytest.mark.parametrize(
    ("is_v0", "operation_id", "route", "call"),
    [
        (False, "searchOrders", const.SEARCH_ORDERS, _search),
        (False, "getOrder", const.GET_ORDER, _get_order),
        (True, "getOrders", const.GET_ORDERS_V0, _get_orders_v0),
        (True, "getOrderItems", const.GET_ORDER_ITEMS_V0, _get_order_items_v0),
    ],
)
async def test_every_400_example_is_permanent_with_amazons_message(
    is_v0: bool, operation_id: str, route: str, call: Call
) -> None:
    model = orders_v0_model() if is_v0 else orders_model()
    examples = sandbox_examples(model, operation_id, "400")
    assert examples
    for example in examples:
        amazon = FakeAmazon()
        amazon.on(route, httpx.Response(400, json=example["response"]))
        with pytest.raises(PermanentError) as raised:
            await call(connector(amazon))
        message = example["response"]["errors"][0]["message"]
        assert message in str(raised.value)
        assert message in raised.value.reason
        assert len(amazon.calls(route)) == 1  # a 400 is not retried
