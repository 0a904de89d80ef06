"""A MockTransport handler that answers the SP-API operations, Login with Amazon and S3 documents.

Requests are routed to an operation name by method and path, as Amazon's models define them;
each operation answers from a function of the request, a fixed answer, or a queue of answers.
Every request is recorded with the fake time it was sent at. A fake clock drives pacing: the
code's sleeps advance it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import httpx

from connectors.amazon import AmazonConnector, AmazonSettings, const
from connectors.http import RateLimiters

Answer = dict[str, Any] | httpx.Response | Exception
BASE_URL = "https://sellingpartnerapi-na.amazon.com"
TOKEN_URL = "https://api.amazon.com/auth/o2/token"
SELLER = "A1SELLERTEST"
US = "ATVPDKIKX0DER"
CLIENT_ID = "amzn1.application-oa2-client.test"
CLIENT_SECRET = "lwa-client-secret-7f3a"
REFRESH_TOKEN = "Atzr|refresh-token-9c41"
ACCESS_TOKEN = "Atza|access-token-51d0"
UPLOAD_URL = "https://tortuga-prod-na.s3.amazonaws.com/doc-upload?X-Amz-Signature=abc123"
ORDER_ID = "114-3941689-8772232"
REPORT_URL = "https://tortuga-prod-na.s3.amazonaws.com/report?X-Amz-Signature=def456"
ORDER_REPORT_URL = "https://tortuga-prod-na.s3.amazonaws.com/order-report?X-Amz-Signature=0a1b"

ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(pattern), name)
    for method, pattern, name in (
        ("POST", r"^/auth/o2/token$", const.LWA_TOKEN),
        ("GET", r"^/orders/2026-01-01/orders$", const.SEARCH_ORDERS),
        ("GET", r"^/orders/2026-01-01/orders/[^/]+$", const.GET_ORDER),
        ("GET", r"^/orders/v0/orders$", const.GET_ORDERS_V0),
        ("GET", r"^/orders/v0/orders/[^/]+/orderItems$", const.GET_ORDER_ITEMS_V0),
        ("POST", r"^/orders/v0/orders/[^/]+/shipmentConfirmation$", const.CONFIRM_SHIPMENT),
        ("PATCH", r"^/listings/2021-08-01/items/[^/]+/[^/]+$", const.PATCH_LISTING),
        ("GET", r"^/listings/2021-08-01/items/[^/]+/[^/]+$", const.GET_LISTING),
        ("GET", r"^/listings/2021-08-01/items/[^/]+$", const.SEARCH_LISTINGS),
        ("POST", r"^/feeds/2021-06-30/documents$", const.CREATE_FEED_DOCUMENT),
        ("GET", r"^/feeds/2021-06-30/documents/[^/]+$", const.GET_FEED_DOCUMENT),
        ("POST", r"^/feeds/2021-06-30/feeds$", const.CREATE_FEED),
        ("GET", r"^/feeds/2021-06-30/feeds/[^/]+$", const.GET_FEED),
        ("PUT", r"^/doc-upload$", const.UPLOAD_FEED_DOCUMENT),
        ("GET", r"^/report$", const.DOWNLOAD_FEED_DOCUMENT),
        ("POST", r"^/reports/2021-06-30/reports$", const.CREATE_REPORT),
        ("GET", r"^/reports/2021-06-30/reports/[^/]+$", const.GET_REPORT),
        ("GET", r"^/reports/2021-06-30/documents/[^/]+$", const.GET_REPORT_DOCUMENT),
        ("GET", r"^/order-report$", const.DOWNLOAD_REPORT_DOCUMENT),
    )
)


class FakeClock:
    """Monotonic time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)


@dataclass(frozen=True)
class Sent:
    """One request the code made, with its operation and fake send time."""

    operation: str
    request: httpx.Request
    at: float

    def json(self) -> Any:
        return json.loads(self.request.content)

    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.request.url.query.decode()).items()}

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.request.content.decode()).items()}


def _route(request: httpx.Request) -> str:
    path = request.url.raw_path.decode().split("?")[0]
    for method, pattern, name in ROUTES:
        if request.method == method and pattern.match(path):
            return name
    raise AssertionError(f"no route for {request.method} {path}")


class FakeAmazon:
    """Answers by operation name; LWA hands out ACCESS_TOKEN unless told otherwise."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.handlers: dict[str, Callable[[httpx.Request], Answer] | list[Answer]] = {}
        self.sent: list[Sent] = []
        self.on(
            const.LWA_TOKEN,
            {"access_token": ACCESS_TOKEN, "token_type": "bearer", "expires_in": 3600},
        )

    def on(self, name: str, answer: Callable[[httpx.Request], Answer] | Answer) -> None:
        """Answer `name` with `answer` (a function of the request, or a fixed answer)."""
        self.handlers[name] = answer if callable(answer) else (lambda _r: answer)  # type: ignore[misc,return-value]

    def queue(self, name: str, *answers: Answer) -> None:
        """Answer `name` with these, one per call, in order."""
        self.handlers[name] = list(answers)

    def calls(self, name: str) -> list[Sent]:
        """Every request of operation `name`, in order."""
        return [sent for sent in self.sent if sent.operation == name]

    def handle(self, request: httpx.Request) -> httpx.Response:
        name = _route(request)
        self.sent.append(Sent(name, request, self.clock.now))
        handler = self.handlers.get(name)
        if handler is None:
            raise AssertionError(f"unexpected {name}")
        if isinstance(handler, list):
            if not handler:
                raise AssertionError(f"{name} called more often than answers were queued")
            answer = handler.pop(0)
        else:
            answer = handler(request)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, json=answer)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


def error(status: int, code: str, message: str) -> httpx.Response:
    """An SP-API error answer."""
    return httpx.Response(status, json={"errors": [{"code": code, "message": message}]})


def settings(**overrides: Any) -> AmazonSettings:
    values: dict[str, Any] = {
        "seller_id": SELLER,
        "region": "na",
        "marketplace_ids": (US,),
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
    }
    values.update(overrides)
    return AmazonSettings(**values)


def connector(amazon: FakeAmazon, name: str = "amazon-us", **overrides: Any) -> AmazonConnector:
    """A connector on the fake, with its own buckets on the fake clock."""
    limiters = RateLimiters(const.RATE_LIMITS, clock=amazon.clock, sleep=amazon.clock.sleep)
    options = {
        key: overrides.pop(key)
        for key in ("attempts", "feed_deadline_s", "now", "limiters")
        if key in overrides
    }
    options.setdefault("limiters", limiters)
    return AmazonConnector(
        name,
        settings(**overrides),
        transport=amazon.transport(),
        sleep=amazon.clock.sleep,
        clock=amazon.clock,
        **options,
    )


def order(order_id: str = ORDER_ID, **changes: Any) -> dict[str, Any]:
    """An Orders API 2026-01-01 order of one unshipped merchant-fulfilled line, changed as asked."""
    raw: dict[str, Any] = {
        "orderId": order_id,
        "createdTime": "2026-02-01T11:00:00Z",
        "lastUpdatedTime": "2026-02-01T12:30:00Z",
        "salesChannel": {"channelName": "AMAZON", "marketplaceId": US},
        "buyer": {"buyerName": "Jane Buyer", "buyerEmail": "abc123@marketplace.amazon.com"},
        "fulfillment": {"fulfillmentStatus": "UNSHIPPED", "fulfilledBy": "MERCHANT"},
        "proceeds": {"grandTotal": {"amount": "30.00", "currencyCode": "USD"}},
        "orderItems": [
            {
                "orderItemId": "11111111111111",
                "quantityOrdered": 2,
                "product": {
                    "asin": "B000000001",
                    "sellerSku": "MUG-RED",
                    "price": {"unitPrice": {"amount": "15.00", "currencyCode": "USD"}},
                },
                "fulfillment": {"quantityFulfilled": 0, "quantityUnfulfilled": 2},
            }
        ],
    }
    raw.update(changes)
    return raw
