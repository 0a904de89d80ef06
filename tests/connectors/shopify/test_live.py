"""The connector against the Shopify sandbox, in process: every document it sends passes the
sandbox's schema check, and the two agree on what an order, a stock set and a webhook are.

The sandbox is not Shopify, and shares no code with the connector: where both read the API the
same way, this passes; the unit tests pin each reading to Shopify's documented shapes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.base import FulfillmentRequest, OrderStatus, PushOutcome, ShipmentLine, StockTarget
from connectors.shopify import ShopifyConnector, ShopifySettings, mapper, verify_webhook
from sandbox.shopify.app import ShopOptions, create_app
from tests.support.specs import specs_dir

pytestmark = pytest.mark.anyio
TOKEN = "shpat_live_test_01"
SECRET = "live-app-secret"
HOOK_URL = "https://sync.test/webhooks/shopify-live"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Hooks:
    """Webhook deliveries the sandbox made, as our receiver would get them."""

    received: list[httpx.Request] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append(request)
        self.arrived.set()
        return httpx.Response(200)


@dataclass
class Live:
    connector: ShopifyConnector
    control: httpx.AsyncClient
    hooks: Hooks
    location: str


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    specs_dir("shopify", "dev-mcp", "data")  # the sandbox validates against the schema there
    hooks = Hooks()
    app = create_app(
        ShopOptions(shop="live", access_token=TOKEN, api_secret=SECRET),
        webhook_transport=httpx.MockTransport(hooks),
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as control:
            shop = (await control.get("/_sandbox/shop")).json()
            assert shop["schema_validation"] is True
            (location,) = shop["locations"].values()
            products = [{"sku": "MUG", "stock": 10, "price": "9.50"}, {"sku": "TEE", "stock": 3}]
            created = await control.post("/_sandbox/products", json={"products": products})
            assert created.status_code == 201
            connector = ShopifyConnector(
                "shopify-live",
                ShopifySettings(
                    base_url="http://sandbox",
                    access_token=TOKEN,
                    location_ids=(location,),
                    webhook_url=HOOK_URL,
                ),
                transport=transport,
            )
            yield Live(connector, control, hooks, location)
            await connector.aclose()


async def _calls(live: Live) -> dict[str, Any]:
    answer: dict[str, Any] = (await live.control.get("/_sandbox/calls")).json()
    return answer


async def test_orders_stock_and_shipments_round_trip(live: Live) -> None:
    connector = live.connector
    await connector.check_connection()
    listings = {x.sku: x for x in await connector.list_listings()}
    assert {sku: x.quantity for sku, x in listings.items()} == {"MUG": 10, "TEE": 3}

    placed = await live.control.post(
        "/_sandbox/orders", json={"lines": [{"sku": "MUG", "quantity": 2}]}
    )
    order_id = placed.json()["order_id"]
    page = await connector.fetch_orders(datetime.now(UTC) - timedelta(hours=1), None)
    (order,) = page.orders
    assert order.external_id == order_id and order.status is OrderStatus.OPEN
    assert [(x.sku, x.quantity) for x in order.lines] == [("MUG", 2)]
    mug = listings["MUG"].listing_ref
    assert await connector.read_stock([mug]) == {mug: 8}

    # A buyer takes one more between our read and our set: Shopify refuses the stale set.
    race = await live.control.post(
        "/_sandbox/sell-before-next-set", json={"sku": "MUG", "quantity": 1}
    )
    assert race.status_code == 202
    (result,) = await connector.push_stock([StockTarget(mug, 6, expected=8)])
    assert (result.outcome, result.actual) == (PushOutcome.CONFLICT, 7)
    (result,) = await connector.push_stock([StockTarget(mug, 5, expected=7)])
    assert result.outcome is PushOutcome.APPLIED
    assert (await live.control.get("/_sandbox/inventory")).json()["MUG"] == 5

    request = FulfillmentRequest(
        key="shipment-1",
        order_external_id=order_id,
        lines=(ShipmentLine(order.lines[0].external_line_id, 2),),
        carrier="UPS",
        tracking_number="1Z999",
        shipped_at=datetime.now(UTC),
    )
    fulfillment_id = await connector.push_fulfillment(request)
    assert await connector.find_fulfillment(request) == fulfillment_id
    shipped = await connector.fetch_order(order_id)
    assert shipped.status is OrderStatus.SHIPPED
    assert [s.external_id for s in shipped.shipments] == [fulfillment_id]
    assert (await _calls(live))["throttled"] == {}


async def test_webhooks_are_subscribed_once_and_verify(live: Live) -> None:
    connector = live.connector
    created = await connector.ensure_webhooks()
    assert "ORDERS_CREATE" in created
    assert await connector.ensure_webhooks() == []
    placed = await live.control.post(
        "/_sandbox/orders", json={"lines": [{"sku": "TEE", "quantity": 1}]}
    )
    await asyncio.wait_for(live.hooks.arrived.wait(), timeout=10)
    delivery = live.hooks.received[0]
    assert str(delivery.url) == HOOK_URL
    verified = verify_webhook(
        delivery.headers, delivery.content, [SECRET], shop_domain="live.myshopify.com"
    )
    assert verified.topic == "orders/create"
    from_webhook = mapper.order_from_webhook(json.loads(delivery.content))
    from_poll = await connector.fetch_order(placed.json()["order_id"])
    assert from_webhook.external_id == from_poll.external_id

    def figures(lines: Any) -> list[tuple[Any, ...]]:
        return [
            (x.external_line_id, x.sku, x.quantity, x.quantity_cancelled, x.unit_price)
            for x in lines
        ]

    assert figures(from_webhook.lines) == figures(from_poll.lines)
    # The webhook's line has the variant; only the poll reads its inventory item too.
    assert from_webhook.lines[0].extra["variant_id"] == from_poll.lines[0].extra["variant_id"]
    assert from_webhook.total == from_poll.total and from_webhook.currency == from_poll.currency
