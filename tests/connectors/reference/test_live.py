"""The reference connector against the real sandbox server on loopback (uvicorn in a thread)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from connectors.base import (
    CancelRequest,
    Capabilities,
    FulfillmentRequest,
    OrderStatus,
    PushOutcome,
    ShipmentLine,
    StockTarget,
)
from connectors.errors import AuthError, NotFoundError, PermanentError, UncertainOutcomeError
from connectors.reference import ReferenceConnector, ReferenceSettings
from sandbox.reference import ChannelOptions, create_app
from tests.support.reference import ThreadedSandbox

pytestmark = pytest.mark.anyio
TOKEN = "live-test-token"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
SHIPPED_AT = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedSandbox]:
    app = create_app(
        [
            ChannelOptions("shop", compare_and_swap=True, max_stock_batch=10),
            ChannelOptions("dedupe", idempotent=True),
        ],
        token=TOKEN,
    )
    with ThreadedSandbox(app) as running:
        yield running


class Channel:
    """The sandbox control API of one channel, and a connector to it."""

    def __init__(self, server: ThreadedSandbox, name: str, connector: ReferenceConnector) -> None:
        self.url = f"{server.url}/{name}"
        self.connector = connector
        self.http = httpx.AsyncClient(base_url=f"{self.url}/_sandbox", timeout=10)

    async def control(self, path: str, body: object = None) -> Any:
        method = "GET" if body is None else "POST"
        response = await self.http.request(method, path, json=body)
        assert response.is_success, response.text
        return response.json()


def connector_for(
    server: ThreadedSandbox, name: str, *, token: str = TOKEN, **caps: Any
) -> ReferenceConnector:
    return ReferenceConnector(
        name,
        ReferenceSettings(
            f"{server.url}/{name}", token, Capabilities(**caps), timeout_s=1.0, page_size=2
        ),
        attempts=2,
    )


@pytest.fixture
async def shop(server: ThreadedSandbox) -> AsyncIterator[Channel]:
    connector = connector_for(
        server, "shop", max_stock_batch=10, supports_compare_and_swap=True, max_in_flight=2
    )
    channel = Channel(server, "shop", connector)
    await channel.control("/faults", {})
    yield channel
    await connector.aclose()
    await channel.http.aclose()


def shipment(order_id: str, key: str, tracking: str = "1Z-LIVE") -> FulfillmentRequest:
    return FulfillmentRequest(
        key=key,
        order_external_id=order_id,
        lines=[ShipmentLine(f"{order_id}-1", 1)],
        carrier="UPS",
        tracking_number=tracking,
        shipped_at=SHIPPED_AT,
    )


async def test_place_fetch_push_with_conflict_fulfil_with_a_lost_answer_then_find_it(
    shop: Channel,
) -> None:
    connector = shop.connector
    await connector.check_connection()
    await shop.control("/stock", {"LIVE-A": 10, "LIVE-B": 3})
    body = {"lines": [{"sku": "LIVE-A", "quantity": 2}], "buyer": {"name": "Kim Buyer"}}
    order_id = (await shop.control("/orders", body))["order_id"]

    page = await connector.fetch_orders(EPOCH, None)
    orders = list(page.orders)
    while page.next_cursor is not None:
        page = await connector.fetch_orders(EPOCH, page.next_cursor)
        orders += page.orders
    (order,) = [o for o in orders if o.external_id == order_id]
    assert order.status is OrderStatus.OPEN
    assert [(line.sku, line.quantity) for line in order.lines] == [("LIVE-A", 2)]
    assert order.ship_to is not None and order.ship_to.name == "Kim Buyer"
    assert (await connector.fetch_order(order_id)) == order

    # We believe L-LIVE-A still shows 10; the buyer took 2, so compare-and-swap says 8.
    results = await connector.push_stock(
        [StockTarget("L-LIVE-A", 9, expected=10), StockTarget("L-LIVE-B", 1, expected=3)]
    )
    assert [(r.outcome, r.actual) for r in results] == [
        (PushOutcome.CONFLICT, 8),
        (PushOutcome.APPLIED, None),
    ]
    (retried,) = await connector.push_stock([StockTarget("L-LIVE-A", 7, expected=8)])
    assert retried.outcome is PushOutcome.APPLIED
    inventory = await shop.control("/inventory")
    assert (inventory["LIVE-A"], inventory["LIVE-B"]) == (7, 1)
    assert await connector.read_stock(["L-LIVE-A", "L-NOPE"]) == {"L-LIVE-A": 7}
    listings = {x.listing_ref: x for x in await connector.list_listings()}
    assert (listings["L-LIVE-A"].sku, listings["L-LIVE-A"].quantity) == ("LIVE-A", 7)

    await shop.control("/faults", {"next": {"create_fulfillment": ["fail_after"]}})
    request = shipment(order_id, key="ship-live-1")
    with pytest.raises(UncertainOutcomeError):
        await connector.push_fulfillment(request)
    found = await connector.find_fulfillment(request)

    received = [
        f
        for f in (await shop.control("/fulfillments"))["fulfillments"]
        if f["order_id"] == order_id
    ]
    assert [f["id"] for f in received] == [found]
    assert received[0]["tracking_number"] == "1Z-LIVE"
    refreshed = await connector.fetch_order(order_id)
    assert refreshed.status is OrderStatus.PARTIALLY_SHIPPED
    assert [s.external_id for s in refreshed.shipments] == [found]
    assert refreshed.updated_at > order.updated_at


async def test_an_answer_held_past_the_timeout_is_uncertain_and_the_write_applied(
    shop: Channel,
) -> None:
    await shop.control("/stock", {"SLOW-A": 5})
    order_id = (await shop.control("/orders", {"lines": [{"sku": "SLOW-A", "quantity": 1}]}))[
        "order_id"
    ]
    await shop.control(
        "/faults",
        {"next": {"cancel_order": ["fail_after"]}, "lost_answer": "timeout", "timeout_delay_s": 5},
    )
    with pytest.raises(UncertainOutcomeError):
        await shop.connector.cancel_order(CancelRequest("cancel-slow", order_id))
    assert (await shop.connector.fetch_order(order_id)).status is OrderStatus.CANCELLED


async def test_refusals_unknown_orders_and_a_wrong_token_map_to_their_errors(
    shop: Channel, server: ThreadedSandbox
) -> None:
    await shop.control("/stock", {"REF-A": 5})
    order_id = (await shop.control("/orders", {"lines": [{"sku": "REF-A", "quantity": 1}]}))[
        "order_id"
    ]
    await shop.control("/faults", {"refuse": {order_id: "address under review"}})
    with pytest.raises(PermanentError) as refused:
        await shop.connector.push_fulfillment(shipment(order_id, key="ship-refused"))
    assert refused.value.reason == "address under review"
    with pytest.raises(NotFoundError):
        await shop.connector.fetch_order("O-NOPE")

    intruder = connector_for(server, "shop", token="wrong-token")
    try:
        with pytest.raises(AuthError):
            await intruder.check_connection()
    finally:
        await intruder.aclose()


async def test_an_idempotent_channel_keeps_one_fulfilment_when_the_answer_is_lost(
    server: ThreadedSandbox,
) -> None:
    connector = connector_for(server, "dedupe", idempotent_fulfillment=True)
    channel = Channel(server, "dedupe", connector)
    try:
        await channel.control("/stock", {"D-A": 3})
        order_id = (await channel.control("/orders", {"lines": [{"sku": "D-A", "quantity": 2}]}))[
            "order_id"
        ]
        await channel.control("/faults", {"next": {"create_fulfillment": ["fail_after"]}})

        fulfilment_id = await connector.push_fulfillment(shipment(order_id, key="ship-dd-1"))

        received = (await channel.control("/fulfillments"))["fulfillments"]
        assert [f["id"] for f in received if f["order_id"] == order_id] == [fulfilment_id]
        assert (await channel.control("/calls"))["calls"]["create_fulfillment"] == 2
    finally:
        await connector.aclose()
        await channel.http.aclose()
