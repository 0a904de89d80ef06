"""The connector against the eBay sandbox served on a loopback socket: OAuth, orders by
notification hint and by poll, stock in both worlds (the Trading calls through ebaysdk over real
HTTP), a shipment created once and found again, and an account deletion that names the buyer of
the orders it polled.

The sandbox is not eBay and shares no code with the connector: where both read eBay's API the
same way this passes; the unit tests pin each reading to eBay's documented shapes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.base import FulfillmentRequest, OrderStatus, PushOutcome, ShipmentLine, StockTarget
from connectors.ebay import (
    EbayConnector,
    EbaySettings,
    Notification,
    account_deletion,
    order_hint,
)
from sandbox.ebay import EbayOptions, bind_loopback, create_app, serve

pytestmark = pytest.mark.anyio
CLIENT_ID = "Sandbox-chsync-SBX-live01"
CLIENT_SECRET = "SBX-live-client-secret"
REFRESH_TOKEN = "v^1.1#i^1#r^1#live-refresh-token"
VERIFICATION_TOKEN = "live-verification-token-0123456789abcdef"
HOOK_URL = "https://sync.test/webhooks/ebay-live"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Receiver:
    """Our notification endpoint as eBay reaches it: the challenge answered by the connector,
    each POST verified by it."""

    connector: EbayConnector | None = None
    verified: list[Notification] = field(default_factory=list)
    refused: int = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        assert self.connector is not None
        if request.method == "GET":
            code = request.url.params["challenge_code"]
            return httpx.Response(
                200, json={"challengeResponse": self.connector.challenge_response(code)}
            )
        try:
            notification = await self.connector.verify_notification(
                request.headers, request.content
            )
        except ValueError:
            self.refused += 1
            return httpx.Response(412)
        self.verified.append(notification)
        return httpx.Response(204)


@dataclass
class Live:
    connector: EbayConnector
    control: httpx.AsyncClient
    receiver: Receiver

    async def post(self, path: str, body: object, status: int = 201) -> Any:
        response = await self.control.post(f"/_sandbox{path}", json=body)
        assert response.status_code == status, response.text
        return response.json()

    async def get(self, path: str) -> Any:
        response = await self.control.get(f"/_sandbox{path}")
        assert response.status_code == 200, response.text
        return response.json()


async def _until(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], within_s: float
) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        done = check()
        if not isinstance(done, bool):
            done = await done
        if done:
            return
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    receiver = Receiver()
    app = create_app(
        EbayOptions(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN),
        notify_transport=httpx.MockTransport(receiver.handle),
    )
    sock = bind_loopback("127.0.0.1", 0)
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(
        serve(app, sock, on_ready=ready.set_result, handle_signals=False, stop=stop)
    )
    try:
        url = await asyncio.wait_for(ready, timeout=10)
        connector = EbayConnector(
            "ebay-live",
            EbaySettings(
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                refresh_token=REFRESH_TOKEN,
                verification_token=VERIFICATION_TOKEN,
                notification_endpoint_url=HOOK_URL,
                api_base_url=url,
                trading_api_url=f"{url}/ws/api.dll",
                identity_url=f"{url}/identity/v1/oauth2/token",
            ),
        )
        receiver.connector = connector
        async with httpx.AsyncClient(base_url=url) as control:
            yield Live(connector, control, receiver)
        await connector.aclose()
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(server, timeout=10)
        sock.close()


async def test_orders_stock_shipments_and_deletion_round_trip(live: Live) -> None:
    connector = live.connector
    await connector.check_connection()
    await live.post(
        "/listings",
        {
            "listings": [
                {"sku": "MUG", "quantity": 10, "price": "9.50"},
                {"sku": "SHIRT-S", "quantity": 3, "group": "SHIRT"},
                {"sku": "SHIRT-M", "quantity": 4, "group": "SHIRT"},
                {"sku": "TEE", "quantity": 5, "world": "inventory"},
            ]
        },
    )
    listings = {x.sku: x for x in await connector.list_listings()}
    assert {sku: (x.extra["stock_api"], x.quantity) for sku, x in listings.items()} == {
        "MUG": ("trading", 10),
        "SHIRT-S": ("trading", 3),
        "SHIRT-M": ("trading", 4),
        "TEE": ("inventory", 5),
    }

    # eBay checks our endpoint with the connector's challenge answer before it pushes anything.
    subscribed = await live.post(
        "/notifications",
        {"endpoint": HOOK_URL, "verification_token": VERIFICATION_TOKEN},
        status=200,
    )
    assert subscribed["endpoint"]["verified"] is True, subscribed
    placed = await live.post(
        "/orders",
        {
            "lines": [{"sku": "MUG", "quantity": 2}, {"sku": "TEE", "quantity": 1}],
            "buyer": {"username": "live_buyer", "name": "Live Buyer"},
        },
    )
    order_id = placed["order_id"]
    await _until(lambda: len(live.receiver.verified) >= 2, within_s=10)
    hints = {order_hint(n) for n in live.receiver.verified}
    assert hints == {order_id} and live.receiver.refused == 0
    by_hint = await connector.fetch_order(order_id)
    assert {(x.sku, x.quantity) for x in by_hint.lines} == {("MUG", 2), ("TEE", 1)}
    assert by_hint.status is OrderStatus.OPEN and by_hint.buyer_ref is not None

    page = await connector.fetch_orders(datetime.now(UTC) - timedelta(hours=1), None)
    assert [o.external_id for o in page.orders] == [order_id] and page.next_cursor is None
    assert page.orders[0].lines == by_hint.lines

    refs = {sku: x.listing_ref for sku, x in listings.items()}
    targets = [
        StockTarget(refs["MUG"], 6),
        StockTarget(refs["SHIRT-S"], 1),
        StockTarget(refs["SHIRT-M"], 0),
        StockTarget(refs["TEE"], 2, extra=listings["TEE"].extra),
    ]
    results = await connector.push_stock(targets)
    assert [r.outcome for r in results] == [PushOutcome.APPLIED] * 4, results
    inventory = await live.get("/inventory")
    assert {sku: inventory[sku] for sku in refs} == {"MUG": 6, "SHIRT-S": 1, "SHIRT-M": 0, "TEE": 2}
    assert await connector.read_stock(list(refs.values())) == {
        refs["MUG"]: 6,
        refs["SHIRT-S"]: 1,
        refs["SHIRT-M"]: 0,
        refs["TEE"]: 2,
    }
    calls = (await live.get("/calls"))["calls"]
    assert calls["ReviseInventoryStatus"] == 1 and calls["bulkUpdatePriceQuantity"] == 1

    lines = tuple(ShipmentLine(x.external_line_id, x.quantity) for x in by_hint.lines)
    request = FulfillmentRequest(
        key="shipment-1",
        order_external_id=order_id,
        lines=lines,
        carrier="UPS",
        tracking_number="1Z999AA10123456784",
        shipped_at=datetime.now(UTC),
    )
    created = await connector.push_fulfillment(request)
    assert await connector.find_fulfillment(request) == created
    (package,) = (await live.get("/fulfillments"))["fulfillments"]
    assert (package["fulfillment_id"], package["carrier"], package["tracking"]) == (
        created,
        "UPS",
        "1Z999AA10123456784",
    )
    shipped = await connector.fetch_order(order_id)
    assert shipped.status is OrderStatus.SHIPPED
    assert [s.external_id for s in shipped.shipments] == [created]

    await live.post("/account-deletion", {"user_id": placed["buyer_user_id"]}, status=200)
    await _until(
        lambda: any(n.topic == "MARKETPLACE_ACCOUNT_DELETION" for n in live.receiver.verified),
        within_s=10,
    )
    (deletion_notice,) = [
        n for n in live.receiver.verified if n.topic == "MARKETPLACE_ACCOUNT_DELETION"
    ]
    deletion = account_deletion(deletion_notice)
    assert deletion is not None and by_hint.buyer_ref in deletion.buyer_refs
