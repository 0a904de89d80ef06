"""The SP-API client: the package's requests through our buckets, retries, errors and token cache."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import httpx
import pytest

from connectors.amazon import const
from connectors.amazon.sdk import token_cache_size
from connectors.errors import (
    AuthError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    UncertainOutcomeError,
)
from connectors.http import RateLimiters
from tests.connectors.amazon.fake_amazon import (
    ACCESS_TOKEN,
    CLIENT_ID,
    CLIENT_SECRET,
    REFRESH_TOKEN,
    FakeAmazon,
    connector,
    error,
)

pytestmark = pytest.mark.anyio
SINCE = datetime(2026, 1, 1, tzinfo=UTC)
EMPTY_PAGE = {"orders": []}
ORDER_ITEM = {
    "orderId": "113-0000001-0000001",
    "createdTime": "2026-01-01T10:00:00Z",
    "lastUpdatedTime": "2026-01-01T10:05:00Z",
    "salesChannel": {"channelName": "AMAZON", "marketplaceId": "ATVPDKIKX0DER"},
    "fulfillment": {"fulfillmentStatus": "UNSHIPPED", "fulfilledBy": "MERCHANT"},
    "orderItems": [
        {"orderItemId": "1", "quantityOrdered": 1, "product": {"sellerSku": "SKU-1"}},
    ],
}


async def test_requests_carry_the_lwa_token_and_the_token_is_fetched_once() -> None:
    amazon = FakeAmazon()
    amazon.on(const.SEARCH_ORDERS, EMPTY_PAGE)
    amazon.on(const.GET_ORDER, {"order": ORDER_ITEM})
    amazon.on(const.PATCH_LISTING, {"sku": "S", "status": "ACCEPTED", "submissionId": "1"})
    amazon_connector = connector(amazon)
    await amazon_connector.fetch_orders(SINCE, None)
    await amazon_connector.fetch_order("113-0000001-0000001")
    await amazon_connector.client.call(
        const.PATCH_LISTING,
        lambda apis: apis.listings.patch_listings_item(
            "SELLER", "S", body={"productType": "PRODUCT", "patches": []}, marketplaceIds="X"
        ),
    )
    (token_call,) = amazon.calls(const.LWA_TOKEN)  # one token for three clients and calls
    assert token_call.form() == {
        "grant_type": "refresh_token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
    }
    assert str(token_call.request.url) == "https://api.amazon.com/auth/o2/token"
    for sent in amazon.sent:
        if sent.operation != const.LWA_TOKEN:
            assert sent.request.headers["x-amz-access-token"] == ACCESS_TOKEN
            assert sent.request.url.host == "sellingpartnerapi-na.amazon.com"
            assert sent.request.headers["user-agent"].startswith("channel-sync/")


async def test_a_loopback_endpoint_gets_its_own_host_header() -> None:
    # The package sets Host to endpoint[8:], which assumes https://: we let httpx set it.
    amazon = FakeAmazon()
    amazon.on(const.SEARCH_ORDERS, EMPTY_PAGE)
    amazon_connector = connector(
        amazon,
        api_base_url="http://127.0.0.1:9002",
        lwa_token_url="http://127.0.0.1:9002/auth/o2/token",
    )
    await amazon_connector.fetch_orders(SINCE, None)
    token_call, search = amazon.sent
    assert str(token_call.request.url) == "http://127.0.0.1:9002/auth/o2/token"
    assert search.request.url.host == "127.0.0.1"
    assert search.request.headers["host"] == "127.0.0.1:9002"


async def test_token_cache_holds_every_configured_seller() -> None:
    amazon = FakeAmazon()
    amazon.on(const.SEARCH_ORDERS, EMPTY_PAGE)
    sellers = [
        connector(amazon, name=f"amazon-{n}", seller_id=f"S{n}", refresh_token=f"Atzr|seller-{n}")
        for n in range(14)
    ]
    assert token_cache_size() >= 14  # the package's default holds 10
    for _ in range(2):
        for seller in sellers:
            await seller.fetch_orders(SINCE, None)
    assert len(amazon.calls(const.LWA_TOKEN)) == 14  # one each, none evicted


async def test_calls_never_exceed_the_operations_rate() -> None:
    amazon = FakeAmazon()
    amazon.on(const.SEARCH_ORDERS, EMPTY_PAGE)
    amazon_connector = connector(amazon)
    for _ in range(24):
        await amazon_connector.fetch_orders(SINCE, None)
    times = [sent.at for sent in amazon.calls(const.SEARCH_ORDERS)]
    rate, burst = const.RATE_LIMITS[const.SEARCH_ORDERS]
    assert times[: int(burst)] == [times[0]] * int(burst)  # the burst goes at once
    for index in range(int(burst), len(times)):
        # Any window holds at most burst + rate * elapsed calls: a token bucket, as Amazon's.
        elapsed = times[index] - times[0]
        assert index + 1 <= burst + rate * elapsed + 1e-6
    assert times[-1] - times[int(burst) - 1] >= (len(times) - burst) / rate - 1e-6


async def test_buckets_are_per_seller_and_shared_by_its_channels() -> None:
    amazon = FakeAmazon()
    amazon.on(const.SEARCH_ORDERS, EMPTY_PAGE)
    limiters = RateLimiters(const.RATE_LIMITS, clock=amazon.clock, sleep=amazon.clock.sleep)
    us = connector(amazon, name="amazon-us", limiters=limiters)
    ca = connector(amazon, name="amazon-ca", limiters=limiters, marketplace_ids=("A2EUQ1WTGCTBG2",))
    other = connector(
        amazon, name="amazon-other", limiters=limiters, seller_id="A2OTHER", refresh_token="Atzr|o"
    )
    for _ in range(10):
        await us.fetch_orders(SINCE, None)
        await ca.fetch_orders(SINCE, None)
    assert amazon.clock.sleeps == []  # 20 calls: the shared burst
    await other.fetch_orders(SINCE, None)
    assert amazon.clock.sleeps == []  # another seller has its own bucket
    await ca.fetch_orders(SINCE, None)
    assert sum(amazon.clock.sleeps) == pytest.approx(1 / 0.0056, rel=0.01)


async def test_throttled_calls_retry_each_on_their_own_counter() -> None:
    # The package's retry decorators share one counter per function: two concurrent calls each
    # throttled twice would exhaust it. Ours counts per call.
    amazon = FakeAmazon()
    throttled = error(429, "QuotaExceeded", "You exceeded your quota for the requested resource.")
    answers = {"A": [throttled, throttled], "B": [throttled, throttled]}

    def get_order(request: httpx.Request) -> httpx.Response | dict[str, object]:
        order_id = request.url.path.rsplit("/", 1)[1]
        if answers[order_id]:
            return answers[order_id].pop(0)
        return {"order": {**ORDER_ITEM, "orderId": order_id}}

    amazon.on(const.GET_ORDER, get_order)
    amazon_connector = connector(amazon, attempts=3)
    a, b = await asyncio.gather(
        amazon_connector.fetch_order("A"), amazon_connector.fetch_order("B")
    )
    assert (a.external_id, b.external_id) == ("A", "B")
    assert len(amazon.calls(const.GET_ORDER)) == 6


async def test_throttling_past_the_attempts_is_rate_limited_error() -> None:
    amazon = FakeAmazon()
    amazon.on(const.GET_ORDER, error(429, "QuotaExceeded", "quota"))
    with pytest.raises(RateLimitedError):
        await connector(amazon, attempts=2).fetch_order("A")
    assert len(amazon.calls(const.GET_ORDER)) == 2


async def test_server_errors_retry_reads_but_not_shipment_confirmations() -> None:
    amazon = FakeAmazon()
    amazon.queue(
        const.GET_ORDER,
        error(503, "ServiceUnavailable", "busy"),
        {"order": ORDER_ITEM},
    )
    amazon.on(const.CONFIRM_SHIPMENT, error(500, "InternalFailure", "oops"))
    amazon_connector = connector(amazon)
    assert (await amazon_connector.fetch_order("113-0000001-0000001")).lines
    with pytest.raises(UncertainOutcomeError):
        await amazon_connector.client.call(
            const.CONFIRM_SHIPMENT,
            lambda apis: apis.orders_v0.confirm_shipment("113-0000001-0000001", marketplaceId="X"),
            is_resendable=False,
        )
    assert len(amazon.calls(const.CONFIRM_SHIPMENT)) == 1  # may have been applied: not resent


async def test_client_errors_are_permanent_or_not_found() -> None:
    amazon = FakeAmazon()
    amazon.queue(
        const.GET_ORDER,
        error(400, "InvalidInput", "Invalid order id format"),
        error(404, "NotFound", "Order not found"),
    )
    amazon_connector = connector(amazon)
    with pytest.raises(PermanentError, match="Invalid order id format"):
        await amazon_connector.fetch_order("bad")
    with pytest.raises(NotFoundError, match="Order not found"):
        await amazon_connector.fetch_order("113-0000001-0000002")
    assert len(amazon.calls(const.GET_ORDER)) == 2


async def test_a_refused_access_token_is_fetched_again_once() -> None:
    amazon = FakeAmazon()
    amazon.queue(
        const.GET_ORDER,
        error(403, "Unauthorized", "The access token you provided has expired."),
        {"order": ORDER_ITEM},
    )
    order = await connector(amazon).fetch_order("113-0000001-0000001")
    assert order.external_id == "113-0000001-0000001"
    assert len(amazon.calls(const.LWA_TOKEN)) == 2


async def test_a_forbidden_role_is_auth_error_after_one_fresh_token() -> None:
    amazon = FakeAmazon()
    amazon.on(
        const.GET_ORDER, error(403, "Unauthorized", "Access to requested resource is denied.")
    )
    with pytest.raises(AuthError, match="denied"):
        await connector(amazon).fetch_order("113-0000001-0000001")
    assert len(amazon.calls(const.GET_ORDER)) == 2
    assert len(amazon.calls(const.LWA_TOKEN)) == 2


async def test_revoked_refresh_token_is_auth_error_without_a_retry_storm() -> None:
    amazon = FakeAmazon()
    amazon.on(
        const.LWA_TOKEN,
        httpx.Response(
            400,
            json={
                "error": "invalid_grant",
                "error_description": "The request has an invalid grant parameter : refresh_token",
            },
        ),
    )
    amazon.on(const.SEARCH_ORDERS, EMPTY_PAGE)
    amazon_connector = connector(amazon)
    with pytest.raises(AuthError) as raised:
        await amazon_connector.fetch_orders(SINCE, None)
    message = str(raised.value)
    assert "refused" in message and "invalid grant parameter" in message
    assert "re-authorise" in message
    # Concurrent work (pushes, polls) fails at once with the same error, without asking again.
    outcomes = await asyncio.gather(
        *(amazon_connector.fetch_order(str(n)) for n in range(10)), return_exceptions=True
    )
    assert all(isinstance(outcome, AuthError) for outcome in outcomes)
    assert len(amazon.calls(const.LWA_TOKEN)) == 1
    assert not amazon.calls(const.SEARCH_ORDERS) and not amazon.calls(const.GET_ORDER)
    # The channel's re-check always asks; and after the hold, calls ask again.
    with pytest.raises(AuthError):
        await amazon_connector.check_connection()
    assert len(amazon.calls(const.LWA_TOKEN)) == 2
    amazon.clock.now += const.AUTH_FAILURE_HOLD_S
    with pytest.raises(AuthError):
        await amazon_connector.fetch_orders(SINCE, None)
    assert len(amazon.calls(const.LWA_TOKEN)) == 3


async def test_missing_refresh_token_is_auth_error_before_any_request() -> None:
    amazon = FakeAmazon()
    amazon_connector = connector(amazon, refresh_token="")
    with pytest.raises(AuthError, match="no refresh token configured"):
        await amazon_connector.check_connection()
    with pytest.raises(AuthError, match="no refresh token configured"):
        await amazon_connector.fetch_orders(SINCE, None)
    assert amazon.sent == []


async def test_wrong_client_secret_is_auth_error() -> None:
    amazon = FakeAmazon()
    amazon.on(
        const.LWA_TOKEN,
        httpx.Response(
            401,
            json={"error": "invalid_client", "error_description": "Client authentication failed"},
        ),
    )
    with pytest.raises(AuthError, match="Client authentication failed"):
        await connector(amazon).check_connection()


async def test_token_endpoint_outage_is_retried() -> None:
    amazon = FakeAmazon()
    amazon.queue(
        const.LWA_TOKEN,
        httpx.Response(503),
        {"access_token": ACCESS_TOKEN, "token_type": "bearer", "expires_in": 3600},
    )
    await connector(amazon).check_connection()
    assert len(amazon.calls(const.LWA_TOKEN)) == 2


async def test_no_secret_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    amazon = FakeAmazon()
    amazon.on(const.SEARCH_ORDERS, EMPTY_PAGE)
    amazon.on(const.GET_ORDER, error(400, "InvalidInput", "Invalid Input"))
    caplog.set_level(logging.DEBUG)
    # The package logs request headers (the access token) at DEBUG on this logger.
    logging.getLogger("sp_api.asyncio.base.client").setLevel(logging.DEBUG)
    try:
        amazon_connector = connector(amazon)
        await amazon_connector.fetch_orders(SINCE, None)
        with pytest.raises(PermanentError):
            await amazon_connector.fetch_order("X")
    finally:
        logging.getLogger("sp_api.asyncio.base.client").setLevel(logging.INFO)
    assert "searchOrders" in caplog.text or "orders/2026-01-01" in caplog.text
    for secret in (ACCESS_TOKEN, REFRESH_TOKEN, CLIENT_SECRET):
        assert secret not in caplog.text
        assert secret not in repr(amazon_connector.settings)


async def test_a_success_status_carrying_errors_is_permanent() -> None:
    amazon = FakeAmazon()
    amazon.on(
        const.GET_ORDER,
        httpx.Response(200, json={"errors": [{"code": "InvalidInput", "message": "odd"}]}),
    )
    with pytest.raises(PermanentError, match="InvalidInput: odd"):
        await connector(amazon).fetch_order("113-0000001-0000001")
    assert len(amazon.calls(const.GET_ORDER)) == 1


async def test_an_answer_that_is_not_json_is_retried_for_a_read() -> None:
    amazon = FakeAmazon()
    amazon.queue(const.GET_ORDER, httpx.Response(200, text="<html>"), {"order": ORDER_ITEM})
    assert (await connector(amazon).fetch_order("113-0000001-0000001")).lines
    assert len(amazon.calls(const.GET_ORDER)) == 2


async def test_a_token_outage_before_a_shipment_confirmation_is_plainly_retried() -> None:
    amazon = FakeAmazon()
    amazon.queue(
        const.LWA_TOKEN,
        httpx.Response(500),
        {"access_token": ACCESS_TOKEN, "token_type": "bearer", "expires_in": 3600},
    )
    amazon.on(const.CONFIRM_SHIPMENT, httpx.Response(204))
    await connector(amazon).client.call(
        const.CONFIRM_SHIPMENT,
        lambda apis: apis.orders_v0.confirm_shipment("113-0000001-0000001", marketplaceId="X"),
        is_resendable=False,
    )
    assert len(amazon.calls(const.CONFIRM_SHIPMENT)) == 1
