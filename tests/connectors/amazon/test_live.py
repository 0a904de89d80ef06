"""The connector against the Amazon sandbox on loopback, with ORDER_CHANGE on moto's SQS server.

Real sockets end to end: the sandbox serves LWA, the SP-API and the feed transfers over HTTP and
posts notifications to a queue; the connector and its consumer read them as they would Amazon's.
The sandbox is not Amazon and shares no code with the connector: where both read the models the
same way, this passes; the unit tests pin each reading to Amazon's published examples.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.amazon import (
    AmazonConnector,
    AmazonSettings,
    OrderChangeConsumer,
    SqsSettings,
    const,
)
from connectors.amazon.mapper_notice import JUST_BELOW
from connectors.base import (
    FulfillmentRequest,
    Order,
    OrderStatus,
    PushOutcome,
    ShipmentLine,
    StockTarget,
)
from connectors.errors import AuthError
from connectors.http import RateLimiters
from sandbox.amazon import (
    AmazonOptions,
    SqsSink,
    base_url,
    bind_loopback,
    create_app,
    create_queue,
    serve,
    start_moto,
)

pytestmark = pytest.mark.anyio
SELLER = "A1LIVESELLER"
US = "ATVPDKIKX0DER"
CLIENT_ID = "amzn1.application-oa2-client.live"
CLIENT_SECRET = "live-client-secret"
REFRESH_TOKEN = "Atzr|live-refresh-token"


@pytest.fixture(scope="module")
def sqs_endpoint() -> Iterator[str]:
    server = start_moto()
    try:
        yield server.endpoint_url
    finally:
        server.stop()


@dataclass
class Live:
    connector: AmazonConnector
    consumer: OrderChangeConsumer
    control: httpx.AsyncClient

    async def seed(self, **quantities: int) -> None:
        listings = [{"sku": sku, "quantity": n} for sku, n in quantities.items()]
        answer = await self.control.post("/_sandbox/listings", json={"listings": listings})
        assert answer.status_code == 201, answer.text

    async def place(self, *lines: tuple[str, int], pending: bool = False) -> dict[str, Any]:
        body = {
            "lines": [{"sku": sku, "quantity": n} for sku, n in lines],
            "buyer": {
                "name": "Jane Buyer",
                "email": "jane@example.test",
                "address": {"line1": "1 Main St", "city": "Springfield", "country_code": "US"},
            },
            "pending": pending,
        }
        answer = await self.control.post("/_sandbox/orders", json=body)
        assert answer.status_code == 201, answer.text
        placed: dict[str, Any] = answer.json()
        return placed

    async def sandbox(self, path: str) -> Any:
        answer = await self.control.get(f"/_sandbox/{path}")
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture
async def live(sqs_endpoint: str) -> AsyncIterator[Live]:
    queue_url = await create_queue(sqs_endpoint, f"order-change-{uuid.uuid4().hex[:8]}")
    app = create_app(
        AmazonOptions(
            seller_id=SELLER,
            marketplace_ids=(US,),
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            refresh_token=REFRESH_TOKEN,
            seed=11,
        ),
        sink=SqsSink(sqs_endpoint, queue_url),
    )
    sock = bind_loopback("127.0.0.1", 0)
    ready, stop = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(
        serve(app, sock, on_ready=lambda _url: ready.set(), handle_signals=False, stop=stop)
    )
    await asyncio.wait_for(ready.wait(), timeout=20)
    base = base_url(sock)
    connector = AmazonConnector(
        "amazon-live",
        AmazonSettings(
            seller_id=SELLER,
            region="na",
            marketplace_ids=(US,),
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            refresh_token=REFRESH_TOKEN,
            api_base_url=base,
            lwa_token_url=f"{base}/auth/o2/token",
            feed_threshold=10,
            has_notifications=True,
        ),
        limiters=RateLimiters(const.RATE_LIMITS),  # this test's own buckets
    )
    consumer = OrderChangeConsumer(
        SqsSettings(
            queue_url=queue_url,
            region="us-east-1",
            endpoint_url=sqs_endpoint,
            access_key_id="sandbox",
            secret_access_key="sandbox",
            wait_s=2,
        ),
        channel="amazon-live",
    )
    try:
        async with consumer, httpx.AsyncClient(base_url=base, timeout=30) as control:
            yield Live(connector, consumer, control)
    finally:
        await connector.aclose()
        stop.set()
        await asyncio.wait_for(server, timeout=20)


async def test_orders_arrive_by_sqs_and_by_polling_once_each(live: Live) -> None:
    await live.seed(**{"MUG-RED": 10, "MUG-BLUE": 5})
    placed = [
        await live.place(("MUG-RED", 2)),
        await live.place(("MUG-RED", 1), ("MUG-BLUE", 1)),
        await live.place(("MUG-BLUE", 2), pending=True),
    ]
    wanted = {p["order_id"] for p in placed}
    # SQS: each notification names an order; the order itself comes from getOrder.
    by_sqs: dict[str, Order] = {}
    handled: set[str] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while set(by_sqs) != wanted:
        assert loop.time() < deadline, f"notified so far: {sorted(by_sqs)}"
        batch = await live.consumer.receive()
        for item in batch:
            if item.notice.notification_id in handled:
                continue
            handled.add(item.notice.notification_id)
            by_sqs[item.notice.order_id] = await live.connector.fetch_order(item.notice.order_id)
        await live.consumer.delete(batch)
    # Polling: the same orders, page by page.
    by_poll: dict[str, Order] = {}
    since, cursor = datetime.now(UTC) - timedelta(hours=1), None
    while True:
        page = await live.connector.fetch_orders(since, cursor)
        by_poll.update({order.external_id: order for order in page.orders})
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert wanted <= set(by_poll)
    for order_id, order in by_sqs.items():
        polled = by_poll[order_id]
        assert [(x.sku, x.quantity) for x in order.lines] == [
            (x.sku, x.quantity) for x in polled.lines
        ]
        assert order.is_reserving
    pending = by_sqs[placed[2]["order_id"]]
    assert pending.status is OrderStatus.PENDING and pending.total is None
    assert pending.lines[0].live_quantity == 2  # reserved though Amazon has no price yet
    first = by_sqs[placed[0]["order_id"]]
    assert first.status is OrderStatus.OPEN and first.total is not None
    assert first.ship_to is not None and first.ship_to.city == "Springfield"
    calls = await live.sandbox("calls")
    assert calls["throttled"] == {}  # never over one of the sandbox's buckets


async def test_stock_goes_by_patch_and_in_bulk_by_one_feed(live: Live) -> None:
    await live.seed(**{f"SKU-{n:02d}": 0 for n in range(30)})
    results = await live.connector.push_stock(
        [StockTarget(f"SKU-{n:02d}", n + 1) for n in range(3)]
    )
    assert {r.outcome for r in results} == {PushOutcome.APPLIED}
    inventory = await live.sandbox("inventory")
    assert [inventory[f"SKU-{n:02d}"] for n in range(3)] == [1, 2, 3]
    refused = "The listing is suppressed for a policy issue."
    answer = await live.control.post(
        "/_sandbox/faults", json={"listing_errors": {"SKU-07": refused}}
    )
    assert answer.status_code == 200, answer.text
    results = await live.connector.push_stock(
        [StockTarget(f"SKU-{n:02d}", 100 + n) for n in range(30)]
    )
    outcomes = {r.listing_ref: (r.outcome, r.error) for r in results}
    assert outcomes["SKU-07"][0] is PushOutcome.REJECTED and refused in str(outcomes["SKU-07"][1])
    assert {v[0] for k, v in outcomes.items() if k != "SKU-07"} == {PushOutcome.APPLIED}
    inventory = await live.sandbox("inventory")
    assert all(inventory[f"SKU-{n:02d}"] == 100 + n for n in range(30) if n != 7)
    calls = await live.sandbox("calls")
    assert calls["calls"].get("patchListingsItem") == 3  # the 30 went as one feed
    assert calls["calls"].get("createFeed") == 1
    assert calls["throttled"] == {}


async def test_a_shipment_is_confirmed_once_and_read_back(live: Live) -> None:
    await live.seed(**{"MUG-RED": 10})
    placed = await live.place(("MUG-RED", 2))
    order_id = placed["order_id"]
    (item,) = placed["items"]
    request = FulfillmentRequest(
        key="shipment-1",
        order_external_id=order_id,
        lines=[ShipmentLine(item["order_item_id"], 2)],
        carrier="UPS",
        tracking_number="1Z999AA10123456784",
        shipped_at=datetime.now(UTC) - timedelta(minutes=5),
    )
    reference = await live.connector.push_fulfillment(request)
    (shown,) = (await live.sandbox("fulfillments"))["fulfillments"]
    assert (shown["order_id"], shown["carrier_code"], shown["tracking_number"]) == (
        order_id,
        "UPS",
        "1Z999AA10123456784",
    )
    assert shown["carrier_recognised"]
    order = await live.connector.fetch_order(order_id)
    assert order.status is OrderStatus.SHIPPED
    assert order.lines[0].quantity_shipped == 2
    assert await live.connector.find_fulfillment(request) in {
        reference,
        shown["package_reference_id"],
    }
    assert live.connector.unseen_shipments() == []


async def test_a_revoked_refresh_token_stops_the_channel_without_a_retry_storm(live: Live) -> None:
    await live.connector.check_connection()
    for action in ("revoke", "expire_access_tokens"):
        answer = await live.control.post("/_sandbox/auth", json={"action": action})
        assert answer.status_code == 200, answer.text
    lwa_before = sum((await live.sandbox("calls"))["lwa"].values())
    with pytest.raises(AuthError, match="re-authorise"):
        await live.connector.fetch_orders(datetime.now(UTC), None)
    for _ in range(5):
        with pytest.raises(AuthError):
            await live.connector.push_stock([StockTarget("ANY", 1)])
    lwa_after = sum((await live.sandbox("calls"))["lwa"].values())
    assert lwa_after - lwa_before == 1


async def test_the_order_report_lists_each_order_at_the_version_get_order_reads(
    live: Live,
) -> None:
    await live.seed(**{"MUG-RED": 10, "MUG-BLUE": 5})
    placed = [
        await live.place(("MUG-RED", 2)),
        await live.place(("MUG-RED", 1), ("MUG-BLUE", 1)),
    ]
    since = datetime.now(UTC) - timedelta(minutes=5)
    page = await live.connector.bulk_order_versions(since, None)
    assert page.next_cursor is None
    listed = {version.external_id: version.updated_at for version in page.versions}
    assert set(listed) == {p["order_id"] for p in placed}  # one version per order, two items
    for order_id, version in listed.items():
        read = await live.connector.fetch_order(order_id)
        assert version == read.updated_at - JUST_BELOW  # at or below what the store will hold
    calls = await live.sandbox("calls")
    assert calls["throttled"] == {}
