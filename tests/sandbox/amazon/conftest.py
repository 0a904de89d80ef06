"""A sandbox Amazon seller account driven in-process through httpx.ASGITransport, with a fake
clock and notifications collected in memory; and validators built straight from Amazon's files
in ../shared/specs (not from the sandbox's own loader), to check what the sandbox answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import anyio
import httpx
import pytest
from jsonschema import Draft4Validator, Draft7Validator

from sandbox.amazon import AmazonOptions, AmazonSandbox, MemorySink, create_app
from tests.support.specs import specs_dir

CLIENT_ID = "amzn1.application-oa2-client.test"
CLIENT_SECRET = "test-client-secret"
REFRESH_TOKEN = "Atzr|test-refresh-token"
SELLER = "A1SANDBOXSELLER"
US = "ATVPDKIKX0DER"
LONG_AGO = "2020-01-01T00:00:00Z"
AVAILABILITY = "/attributes/fulfillment_availability"
MODELS = {
    "orders": "models/orders-api-model/orders_2026-01-01.json",
    "ordersV0": "models/orders-api-model/ordersV0.json",
    "listings": "models/listings-items-api-model/listingsItems_2021-08-01.json",
    "feeds": "models/feeds-api-model/feeds_2021-06-30.json",
    "reports": "models/reports-api-model/reports_2021-06-30.json",
}


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


def amazon_file(relative: str) -> Any:
    """One of Amazon's files under ../shared/specs/amazon/selling-partner-api-models."""
    root = specs_dir("amazon", "selling-partner-api-models")
    return json.loads((root / relative).read_text("utf-8"))


@cache
def _model(name: str) -> Any:
    return amazon_file(MODELS[name])


def model_problems(model: str, definition: str, instance: object) -> list[str]:
    """What is wrong with `instance` as `#/definitions/<definition>` of a model."""
    spec = _model(model)
    validator = Draft4Validator(
        {"$ref": f"#/definitions/{definition}", "definitions": spec["definitions"]}
    )
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]


def schema_problems(relative: str, instance: object) -> list[str]:
    """What is wrong with `instance` by one of Amazon's JSON schemas."""
    validator = Draft7Validator(amazon_file(relative))
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]


def availability(quantity: int, code: str = "DEFAULT") -> list[dict[str, Any]]:
    """A fulfillment_availability value."""
    return [{"fulfillment_channel_code": code, "quantity": quantity}]


@dataclass
class Seller:
    """One sandbox account, an HTTP client on it and an access token."""

    http: httpx.AsyncClient
    sandbox: AmazonSandbox
    clock: FakeClock
    sink: MemorySink
    token: str = ""

    async def login(self) -> str:
        """A fresh seller access token (kept for `api`)."""
        response = await self.http.post(
            "/auth/o2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": REFRESH_TOKEN,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
        )
        assert response.status_code == 200, response.text
        self.token = response.json()["access_token"]
        return self.token

    async def api(
        self, method: str, path: str, *, params: Any = None, json: Any = None
    ) -> httpx.Response:
        """An SP-API call with the access token."""
        return await self.http.request(
            method, path, params=params, json=json, headers={"x-amz-access-token": self.token}
        )

    async def control(self, method: str, path: str, body: object = None, status: int = 0) -> Any:
        """Call `/_sandbox{path}`; its JSON, checking the status (any 2xx when 0)."""
        response = await self.http.request(method, f"/_sandbox{path}", json=body)
        if status:
            assert response.status_code == status, response.text
        else:
            assert response.is_success, response.text
        return response.json()

    async def list(self, **stock: int) -> None:
        """Merchant-fulfilled listings with these SKUs and quantities (price 12.50)."""
        listings = [{"sku": sku, "quantity": n, "price": "12.50"} for sku, n in stock.items()]
        await self.control("POST", "/listings", {"listings": listings}, status=201)

    async def order(self, pending: bool = False, **lines: int) -> dict[str, Any]:
        """A buyer orders these SKUs; the control API's answer."""
        body = {
            "lines": [{"sku": sku, "quantity": n} for sku, n in lines.items()],
            "buyer": {
                "name": "Jo Buyer",
                "email": "jo@example.com",
                "address": {
                    "line1": "1 Main St",
                    "city": "Seattle",
                    "postal_code": "98101",
                    "country_code": "US",
                },
            },
            "pending": pending,
        }
        placed: dict[str, Any] = await self.control("POST", "/orders", body, status=201)
        return placed

    async def search(self, **params: Any) -> httpx.Response:
        """searchOrders (lastUpdatedAfter long ago unless a window is given)."""
        if "createdAfter" not in params and "lastUpdatedAfter" not in params:
            params["lastUpdatedAfter"] = LONG_AGO
        return await self.api("GET", "/orders/2026-01-01/orders", params=params)

    async def patch(self, sku: str, value: Any, **params: str) -> httpx.Response:
        """patchListingsItem replacing fulfillment_availability."""
        return await self.api(
            "PATCH",
            f"/listings/2021-08-01/items/{SELLER}/{sku}",
            params={"marketplaceIds": US, **params},
            json={
                "productType": "PRODUCT",
                "patches": [{"op": "replace", "path": AVAILABILITY, "value": value}],
            },
        )

    async def settle(self, timeout_s: float = 10.0) -> None:
        """Until every notification send is done."""
        with anyio.fail_after(timeout_s):
            await self.sandbox.notifier.wait_idle()


SellerFactory = Callable[..., Any]


@pytest.fixture
async def make_seller() -> AsyncIterator[SellerFactory]:
    """Build accounts: `await make_seller(**AmazonOptions fields)`, logged in; closed at the end."""
    opened: list[Seller] = []

    async def build(**options: Any) -> Seller:
        clock = FakeClock()
        sink = MemorySink()
        app = create_app(
            AmazonOptions(
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                refresh_token=REFRESH_TOKEN,
                seller_id=SELLER,
                **options,
            ),
            clock=clock,
            sink=sink,
        )
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://amazon")
        seller = Seller(http, app.state.sandbox, clock, sink)
        opened.append(seller)
        await seller.login()
        return seller

    yield build
    for seller in opened:
        await seller.sandbox.aclose()
        await seller.http.aclose()


@pytest.fixture
async def seller(make_seller: SellerFactory) -> Seller:
    """An account on the US marketplace with default options."""
    built: Seller = await make_seller()
    return built
