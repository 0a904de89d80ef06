"""The GraphQL client: request shape, cost-based pacing, THROTTLED and 429, error mapping."""

from __future__ import annotations

import logging

import httpx
import pytest

from connectors.errors import (
    AuthError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
)
from connectors.shopify import const
from connectors.shopify.client import ShopifyClient, raise_for_user_errors
from tests.connectors.shopify.fake_shop import BASE_URL, TOKEN, FakeShop

pytestmark = pytest.mark.anyio

THROTTLED = {
    "errors": [
        {
            "message": "Throttled",
            "extensions": {
                "code": "THROTTLED",
                "documentation": "https://shopify.dev/api/usage/rate-limits",
            },
        }
    ]
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def client(shop: FakeShop, attempts: int = 4) -> ShopifyClient:
    return ShopifyClient(
        channel="shop",
        base_url=BASE_URL,
        token=TOKEN,
        transport=shop.transport(),
        attempts=attempts,
        sleep=shop.clock.sleep,
        clock=shop.clock,
    )


async def test_request_is_a_graphql_post_on_the_pinned_version() -> None:
    shop = FakeShop()
    shop.on(
        const.SHOP.name,
        {"shop": {"name": "Demo", "myshopifyDomain": "demo-shop", "currencyCode": "EUR"}},
    )
    data = await client(shop).execute(const.SHOP)
    assert data["shop"]["name"] == "Demo"
    (request,) = shop.requests
    assert request.method == "POST"
    assert str(request.url) == f"{BASE_URL}/admin/api/2026-04/graphql.json"
    assert request.headers["X-Shopify-Access-Token"] == TOKEN
    (body,) = shop.bodies()
    assert body == {
        "query": const.SHOP.document,
        "operationName": "ChannelSyncShop",
        "variables": {},
    }
    assert const.API_VERSION >= "2026-04"


async def test_waits_for_the_bucket_before_a_query_it_cannot_afford() -> None:
    shop = FakeShop()
    shop.throttle = {"maximumAvailable": 1000.0, "currentlyAvailable": 100.0, "restoreRate": 50.0}
    shop.on(const.SHOP.name, {"shop": {}})
    shop.on(const.STOCK.name, {"nodes": []})
    api = client(shop)
    await api.execute(const.SHOP)  # learns: 100 points left, 50 restored per second
    await api.execute(const.STOCK, {"ids": [], "locationId": "gid://shopify/Location/1"})
    # The stock read asks for 300 points and, being background work, leaves the reserve for
    # stock pushes: it waited (300 + 100 - 100) / 50 = 6 s before going out, rather than being
    # sent to collect a THROTTLED answer.
    assert const.STOCK.is_background and const.BACKGROUND_RESERVE == 100.0
    assert shop.sent_at[1] - shop.sent_at[0] == pytest.approx(6.0)
    assert api.throttle_status is not None and api.throttle_status.restore_rate == 50.0


async def test_no_wait_while_the_bucket_holds_enough() -> None:
    shop = FakeShop()
    shop.on(const.SHOP.name, {"shop": {}})
    api = client(shop)
    for _ in range(5):
        await api.execute(const.SHOP)
    assert shop.clock.sleeps == []


async def test_paces_from_the_cost_shopify_reported_for_that_operation() -> None:
    shop = FakeShop()
    shop.throttle = {"maximumAvailable": 1000.0, "currentlyAvailable": 1000.0, "restoreRate": 50.0}
    shop.requested_cost = 900  # heavier than our estimate of the shop query
    shop.on(const.SHOP.name, {"shop": {}})
    api = client(shop)
    await api.execute(const.SHOP)
    shop.throttle["currentlyAvailable"] = 400.0
    await api.execute(const.SHOP)  # the shop answered 400 left; the next one needs 900
    await api.execute(const.SHOP)
    assert shop.sent_at[2] - shop.sent_at[1] == pytest.approx(10.0)


async def test_throttled_answer_waits_for_the_points_and_retries() -> None:
    shop = FakeShop()
    shop.throttle = {"maximumAvailable": 1000.0, "currentlyAvailable": 52.0, "restoreRate": 50.0}
    shop.requested_cost = 252
    shop.queue(const.ORDER_IDS.name, THROTTLED, {"orders": {"nodes": []}})
    data = await client(shop).execute(const.ORDER_IDS, {"first": 250, "query": "q"})
    assert data == {"orders": {"nodes": []}}
    assert len(shop.requests) == 2
    assert shop.sent_at[1] - shop.sent_at[0] >= 4.0  # (252 - 52) / 50


async def test_throttled_every_time_gives_up_as_rate_limited() -> None:
    shop = FakeShop()
    shop.queue(const.SHOP.name, THROTTLED, THROTTLED)
    with pytest.raises(RateLimitedError) as caught:
        await client(shop, attempts=2).execute(const.SHOP)
    assert "THROTTLED" in str(caught.value)


async def test_http_429_honours_retry_after() -> None:
    shop = FakeShop()
    shop.queue(
        const.SHOP.name,
        httpx.Response(429, headers={"Retry-After": "2.0"}, json={"errors": "Too Many Requests"}),
        {"shop": {}},
    )
    await client(shop).execute(const.SHOP)
    assert len(shop.requests) == 2
    assert shop.sent_at[1] - shop.sent_at[0] >= 2.0


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_credentials_are_an_auth_error_not_retried(status: int) -> None:
    shop = FakeShop()
    shop.on(
        const.SHOP.name,
        httpx.Response(status, json={"errors": "[API] Invalid API key or access token"}),
    )
    with pytest.raises(AuthError):
        await client(shop).execute(const.SHOP)
    assert len(shop.requests) == 1


async def test_access_denied_is_an_auth_error() -> None:
    shop = FakeShop()
    denied = {"message": "Access denied for orders field.", "extensions": {"code": "ACCESS_DENIED"}}
    shop.on(const.ORDER.name, {"errors": [denied], "data": {"order": None}})
    with pytest.raises(AuthError, match="Access denied"):
        await client(shop).execute(const.ORDER, {"id": "gid://shopify/Order/1"})


async def test_a_refused_document_is_permanent_with_shopifys_words() -> None:
    shop = FakeShop()
    error = {
        "message": "Field 'currencyKode' doesn't exist on type 'Shop'",
        "locations": [{"line": 1, "column": 40}],
        "extensions": {"code": "undefinedField", "typeName": "Shop"},
    }
    shop.on(const.SHOP.name, {"errors": [error]})
    with pytest.raises(PermanentError, match="currencyKode") as caught:
        await client(shop).execute(const.SHOP)
    assert caught.value.reason is not None and "doesn't exist" in caught.value.reason
    assert len(shop.requests) == 1


async def test_server_errors_retry_a_read() -> None:
    shop = FakeShop()
    shop.queue(const.SHOP.name, httpx.Response(503), httpx.Response(502), {"shop": {}})
    await client(shop).execute(const.SHOP)
    assert len(shop.requests) == 3


async def test_a_write_that_may_have_landed_is_uncertain_and_not_resent() -> None:
    for failure in (
        httpx.Response(500),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("peer closed"),
    ):
        shop = FakeShop()
        shop.queue(const.FULFILLMENT_CREATE.name, failure, {"fulfillmentCreate": {}})
        with pytest.raises(UncertainOutcomeError):
            await client(shop).execute(const.FULFILLMENT_CREATE, {"fulfillment": {}})
        assert len(shop.requests) == 1, failure


async def test_an_idempotent_write_is_resent_after_an_unclear_outcome() -> None:
    shop = FakeShop()
    shop.queue(const.SET_STOCK.name, httpx.ReadTimeout("timed out"), {"inventorySetQuantities": {}})
    api = client(shop)
    await api.execute(const.SET_STOCK, {"input": {}, "key": "k-1"}, is_resendable=True)
    assert [v["key"] for v in shop.calls(const.SET_STOCK.name)] == ["k-1", "k-1"]


async def test_a_connection_never_made_is_retried_even_for_a_write() -> None:
    shop = FakeShop()
    shop.queue(const.ORDER_CANCEL.name, httpx.ConnectError("refused"), {"orderCancel": {}})
    await client(shop).execute(const.ORDER_CANCEL, {})
    assert len(shop.requests) == 2


async def test_internal_error_on_a_write_is_uncertain() -> None:
    shop = FakeShop()
    internal = {"message": "Internal error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
    shop.on(const.ORDER_CANCEL.name, {"errors": [internal]})
    with pytest.raises(UncertainOutcomeError):
        await client(shop).execute(const.ORDER_CANCEL, {})
    shop = FakeShop()
    shop.queue(const.SHOP.name, {"errors": [internal]}, {"shop": {}})
    await client(shop).execute(const.SHOP)  # a read is simply retried
    assert len(shop.requests) == 2


async def test_an_answer_that_is_not_json_is_retried_for_a_read() -> None:
    shop = FakeShop()
    shop.queue(const.SHOP.name, httpx.Response(200, text="<html>oops</html>"), {"shop": {}})
    await client(shop).execute(const.SHOP)
    assert len(shop.requests) == 2
    shop = FakeShop()
    shop.on(const.SHOP.name, httpx.Response(200, text="<html>oops</html>"))
    with pytest.raises(RetryableError):
        await client(shop, attempts=1).execute(const.SHOP)


def test_user_errors_become_a_permanent_error_with_shopifys_messages() -> None:
    payload = {
        "fulfillment": None,
        "userErrors": [{"field": ["fulfillment"], "message": "Fulfillment order is closed"}],
    }
    with pytest.raises(PermanentError, match="Fulfillment order is closed") as caught:
        raise_for_user_errors(payload, channel="shop", operation="fulfillmentCreate")
    assert caught.value.reason == "Fulfillment order is closed"
    raise_for_user_errors({"userErrors": []}, channel="shop", operation="x")


async def test_the_token_never_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    shop = FakeShop()
    shop.on(
        const.SHOP.name, httpx.Response(401, json={"errors": "Invalid API key or access token"})
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as caught:
        await client(shop).execute(const.SHOP)
    assert TOKEN not in caplog.text and TOKEN not in str(caught.value)
    assert "X-Shopify-Access-Token" in caplog.text or "x-shopify-access-token" in caplog.text
