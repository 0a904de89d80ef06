"""A sandbox Shopify store driven in-process through httpx.ASGITransport, with a fake clock and a
recording webhook receiver (an httpx.MockTransport the dispatcher posts to)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest

from sandbox.shopify import ShopifySandbox, ShopOptions, create_app

TOKEN = "shpat_test_token"
SECRET = "test_app_secret"
VERSION = "2026-04"
GRAPHQL = f"/admin/api/{VERSION}/graphql.json"
HOOK_URL = "http://127.0.0.1:9/hooks"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    """Wall and monotonic time that move only when told."""

    def __init__(self) -> None:
        self.wall = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


@dataclass
class Receiver:
    """Records webhook requests; answers them with `statuses` in turn, then 200."""

    requests: list[httpx.Request] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.requests.append(request)
        status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status)

    def topics(self) -> list[str]:
        return [r.headers["X-Shopify-Topic"] for r in self.requests]


@dataclass
class Shop:
    """One sandbox store and an HTTP client on it."""

    http: httpx.AsyncClient
    sandbox: ShopifySandbox
    clock: FakeClock
    receiver: Receiver

    async def gql(
        self, query: str, variables: dict[str, Any] | None = None, **headers: str
    ) -> dict[str, Any]:
        """POST a GraphQL document; the JSON body (any HTTP 200)."""
        response = await self.http.post(
            GRAPHQL,
            json={"query": query, "variables": variables or {}},
            headers={"X-Shopify-Access-Token": TOKEN, **headers},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def control(self, method: str, path: str, body: object = None, status: int = 0) -> Any:
        """Call `/_sandbox{path}`; its JSON, checking the status (any 2xx when 0)."""
        response = await self.http.request(method, f"/_sandbox{path}", json=body)
        if status:
            assert response.status_code == status, response.text
        else:
            assert response.is_success, response.text
        return response.json()

    async def seed(self, **stock: int) -> dict[str, Any]:
        """Products with these SKUs and units at the first location."""
        products = [{"sku": sku, "price": "12.50", "stock": units} for sku, units in stock.items()]
        created: dict[str, Any] = await self.control("POST", "/products", {"products": products})
        return created

    async def order(self, **lines: int) -> str:
        """A buyer orders these SKUs; the order's global id."""
        body = {
            "lines": [{"sku": sku, "quantity": n} for sku, n in lines.items()],
            "buyer": {
                "name": "Jo Buyer",
                "email": "jo@example.com",
                "address": {"address1": "1 Main St", "city": "Springfield", "country_code": "US"},
            },
        }
        placed = await self.control("POST", "/orders", body, status=201)
        order_id: str = placed["order_id"]
        return order_id

    async def subscribe(self, topic: str, uri: str = HOOK_URL) -> dict[str, Any]:
        """webhookSubscriptionCreate with `uri`."""
        body = await self.gql(
            """mutation($topic: WebhookSubscriptionTopic!, $sub: WebhookSubscriptionInput!) {
                 webhookSubscriptionCreate(topic: $topic, webhookSubscription: $sub) {
                   webhookSubscription { id topic uri }
                   userErrors { field message }
                 }
               }""",
            {"topic": topic, "sub": {"uri": uri}},
        )
        created: dict[str, Any] = body["data"]["webhookSubscriptionCreate"]
        return created

    async def settle(self, timeout_s: float = 10.0) -> None:
        """Until every webhook delivery is done (delivered, failed)."""
        with anyio.fail_after(timeout_s):
            await self.sandbox.webhooks.wait_idle()


ShopFactory = Callable[..., Any]


@pytest.fixture
async def make_shop() -> AsyncIterator[ShopFactory]:
    """Build stores: `await make_shop(**ShopOptions fields)`; closed at the end."""
    opened: list[Shop] = []

    async def build(**options: Any) -> Shop:
        clock = FakeClock()
        receiver = Receiver()
        app = create_app(
            ShopOptions(access_token=TOKEN, api_secret=SECRET, **options),
            clock=clock,
            webhook_transport=httpx.MockTransport(receiver.handle),
        )
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop")
        shop = Shop(http, app.state.sandbox, clock, receiver)
        opened.append(shop)
        return shop

    yield build
    for shop in opened:
        await shop.sandbox.aclose()
        await shop.http.aclose()


@pytest.fixture
async def shop(make_shop: ShopFactory) -> Shop:
    """A store named `demo` with default options."""
    built: Shop = await make_shop(shop="demo")
    return built
