"""The shared HTTP layer: client factory and redacted logging, status classification, send()."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from importlib.metadata import version

import httpx
import pytest

from connectors.errors import (
    AuthError,
    ConnectorError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
)
from connectors.http import (
    MASK,
    TokenBucket,
    make_client,
    parse_retry_after,
    raise_for_status,
    redact_headers,
    send,
)

pytestmark = pytest.mark.anyio

BASE = "https://shop.test"
SECRETS = {
    "Authorization": "Bearer secret-bearer-111",
    "X-Shopify-Access-Token": "shpat_secret222",
    "x-amz-access-token": "Atza|secret333",
    "X-EBAY-API-IAF-TOKEN": "v^1.1#secret444",
    "Cookie": "session=secret555",
}


def http_date(when: datetime) -> str:
    return format_datetime(when.astimezone(UTC), usegmt=True)


def response(
    status: int, *, headers: dict[str, str] | None = None, json: object = None, text: str = ""
) -> httpx.Response:
    request = httpx.Request("POST", f"{BASE}/admin/api/graphql.json", headers=SECRETS)
    if json is not None:
        return httpx.Response(status, headers=headers, json=json, request=request)
    return httpx.Response(status, headers=headers, text=text, request=request)


# ---- make_client ------------------------------------------------------------------------------


async def test_make_client_sets_timeouts_user_agent_and_no_redirects() -> None:
    async with make_client(base_url=BASE, channel="shopify-main") as client:
        assert client.timeout == httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)
        assert client.headers["User-Agent"] == f"channel-sync/{version('channel-sync')}"
        assert client.base_url.host == "shop.test"
        assert client.follow_redirects is False


async def test_make_client_takes_a_plain_timeout_and_extra_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async with make_client(
        base_url=BASE,
        channel="ebay-uk",
        timeout=2.5,
        headers={"X-EBAY-C-MARKETPLACE-ID": "EBAY_GB"},
        transport=httpx.MockTransport(handler),
    ) as client:
        assert client.timeout == httpx.Timeout(2.5)
        await client.get("/sell/fulfillment/v1/order")
    assert seen[0].url == httpx.URL(f"{BASE}/sell/fulfillment/v1/order")
    assert seen[0].headers["X-EBAY-C-MARKETPLACE-ID"] == "EBAY_GB"
    assert seen[0].headers["User-Agent"].startswith("channel-sync/")


def test_redact_headers_masks_credentials_whatever_their_case() -> None:
    headers = {**SECRETS, "authorization": "Basic abc", "Content-Type": "application/json"}
    redacted = redact_headers(headers)
    assert redacted["Content-Type"] == "application/json"
    assert all(redacted[name] == MASK for name in headers if name != "Content-Type")
    assert redact_headers(httpx.Headers({"Set-Cookie": "a=b", "Accept": "*/*"})) == {
        "set-cookie": MASK,
        "accept": "*/*",
    }


async def test_debug_log_shows_the_exchange_but_no_secret_and_no_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="connectors.http")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"Set-Cookie": "session=secret666", "X-Request-Id": "req-1"},
            json={"shippingAddress": "BUYER-ADDRESS"},
        )

    async with make_client(
        base_url=BASE, channel="shopify-main", transport=httpx.MockTransport(handler)
    ) as client:
        await client.post(
            "/orders",
            params={"access_token": "secret777", "X-Amz-Signature": "secret888", "limit": "50"},
            headers=SECRETS,
            json={"name": "BUYER-NAME"},
        )

    assert "shopify-main request POST https://shop.test/orders?" in caplog.text
    assert "shopify-main response POST" in caplog.text
    assert "-> 200" in caplog.text
    assert "'x-request-id': 'req-1'" in caplog.text
    assert "limit=50" in caplog.text
    assert MASK in caplog.text
    for leaked in (*SECRETS.values(), "secret666", "secret777", "secret888", "BUYER"):
        assert leaked not in caplog.text
    assert all(record.levelno == logging.DEBUG for record in caplog.records)


async def test_nothing_is_logged_above_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="connectors.http")
    transport = httpx.MockTransport(lambda request: httpx.Response(500))
    async with make_client(base_url=BASE, channel="c", transport=transport) as client:
        await client.get("/")
    assert caplog.records == []


# ---- raise_for_status -------------------------------------------------------------------------

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "headers", "expected", "retry_after"),
    [
        (200, {}, None, None),
        (201, {}, None, None),
        (204, {}, None, None),
        (401, {}, AuthError, None),
        (403, {}, AuthError, None),
        (404, {}, NotFoundError, None),
        (400, {}, PermanentError, None),
        (409, {}, PermanentError, None),
        (422, {}, PermanentError, None),
        (418, {}, PermanentError, None),
        (302, {"Location": "https://elsewhere.test/"}, PermanentError, None),
        (429, {}, RateLimitedError, None),
        (429, {"Retry-After": "12"}, RateLimitedError, 12.0),
        (429, {"Retry-After": "2.0"}, RateLimitedError, 2.0),
        (429, {"Retry-After": "soon"}, RateLimitedError, None),
        (
            429,
            {"Retry-After": http_date(NOW + timedelta(seconds=90)), "Date": http_date(NOW)},
            RateLimitedError,
            90.0,
        ),
        (
            429,
            {"Retry-After": http_date(NOW - timedelta(seconds=5)), "Date": http_date(NOW)},
            RateLimitedError,
            0.0,
        ),
        (500, {}, RetryableError, None),
        (502, {}, RetryableError, None),
        (503, {}, RetryableError, None),
        (503, {"Retry-After": "30"}, RetryableError, 30.0),
    ],
)
def test_classification(
    status: int,
    headers: dict[str, str],
    expected: type[ConnectorError] | None,
    retry_after: float | None,
) -> None:
    answer = response(status, headers=headers)
    if expected is None:
        raise_for_status(answer, channel="shopify-main", operation="orders")
        return
    with pytest.raises(ConnectorError) as raised:
        raise_for_status(answer, channel="shopify-main", operation="orders")
    error = raised.value
    assert type(error) is expected
    assert (error.channel, error.operation) == ("shopify-main", "orders")
    assert str(error).startswith(f"shopify-main:orders: HTTP {status}")
    if isinstance(error, RetryableError):
        assert error.retry_after == retry_after


def test_an_http_date_retry_after_without_a_date_header_counts_from_our_clock() -> None:
    later = datetime.now(UTC) + timedelta(seconds=120)
    with pytest.raises(RateLimitedError) as raised:
        raise_for_status(
            response(429, headers={"Retry-After": http_date(later)}), channel="c", operation="o"
        )
    assert raised.value.retry_after == pytest.approx(120.0, abs=2.0)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        (" 120 ", 120.0),
        ("-3", 0.0),
        ("inf", None),
        ("nan", None),
        ("Fri, 01 May 2026 12:01:00 GMT", 60.0),
        ("Friday, 01-May-26 12:01:00 GMT", 60.0),  # the obsolete RFC 850 form
        ("Fri, 01 May 2026 11:00:00 GMT", 0.0),
        ("Fri, 01 May 2026 12:00:30 -0000", 30.0),
        ("not a date", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        # Shopify GraphQL
        (
            {"errors": [{"message": "Field 'x' doesn't exist", "locations": [{"line": 1}]}]},
            "Field 'x' doesn't exist",
        ),
        # Amazon SP-API
        (
            {"errors": [{"code": "InvalidInput", "message": "Invalid SKU", "details": ""}]},
            "InvalidInput: Invalid SKU",
        ),
        # eBay REST
        (
            {"errors": [{"errorId": 32100, "message": "Invalid order ID"}, {"message": "2nd"}]},
            "Invalid order ID; 2nd",
        ),
        # Shopify REST
        (
            {"errors": {"title": ["can't be blank"], "sku": "taken"}},
            "title: can't be blank; sku: taken",
        ),
        ({"errors": "Not acceptable"}, "Not acceptable"),
        # Login with Amazon / eBay identity (OAuth)
        (
            {"error": "invalid_grant", "error_description": "The refresh token is invalid"},
            "The refresh token is invalid",
        ),
        ({"error": "invalid_client"}, "invalid_client"),
        ({"message": "  Bad\n  request  "}, "Bad request"),
        ({"unexpected": "shape"}, None),
        (["a", "list"], None),
    ],
)
def test_permanent_errors_keep_the_channels_reason(body: object, reason: str | None) -> None:
    with pytest.raises(PermanentError) as raised:
        raise_for_status(response(400, json=body), channel="amazon-us", operation="patch")
    assert raised.value.reason == (reason or "HTTP 400")
    assert str(raised.value) == f"amazon-us:patch: HTTP 400{': ' + reason if reason else ''}"


def test_a_long_reason_is_cut_to_300_characters() -> None:
    with pytest.raises(PermanentError) as raised:
        raise_for_status(response(422, json={"message": "x" * 1000}), channel="c", operation="o")
    assert len(raised.value.reason) == 300
    assert raised.value.reason.endswith("…")


@pytest.mark.parametrize("text", ["<html><body>Bad Gateway</body></html>", "", "\xff\xfe"])
def test_a_body_that_is_not_json_gives_no_reason(text: str) -> None:
    with pytest.raises(PermanentError) as raised:
        raise_for_status(response(400, text=text), channel="c", operation="o")
    assert raised.value.reason == "HTTP 400"


def test_errors_never_carry_the_request_headers() -> None:
    for status in (400, 401, 404, 429, 500):
        with pytest.raises(ConnectorError) as raised:
            raise_for_status(
                response(status, json={"errors": [{"message": "nope"}]}), channel="c", operation="o"
            )
        shown = f"{raised.value} {getattr(raised.value, 'reason', '')} {raised.value!r}"
        assert not any(secret in shown for secret in SECRETS.values())


# ---- send ---------------------------------------------------------------------------------------


def raising(error: Exception) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (httpx.ConnectError("refused"), RetryableError),
        (httpx.ConnectTimeout("slow dns"), RetryableError),
        (httpx.PoolTimeout("pool full"), RetryableError),
        (httpx.ReadTimeout("no answer"), UncertainOutcomeError),
        (httpx.WriteTimeout("stalled"), UncertainOutcomeError),
        (httpx.RemoteProtocolError("peer closed"), UncertainOutcomeError),
        (httpx.ReadError("reset"), UncertainOutcomeError),
        (httpx.WriteError("broken pipe"), UncertainOutcomeError),
        (httpx.UnsupportedProtocol("ftp"), PermanentError),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value.__name__,
)
async def test_transport_errors_say_whether_the_request_may_have_been_applied(
    error: Exception, expected: type[ConnectorError]
) -> None:
    async with make_client(base_url=BASE, channel="ebay-uk", transport=raising(error)) as client:
        with pytest.raises(ConnectorError) as raised:
            await send(
                client,
                "POST",
                "/order/1/shipping_fulfillment?access_token=secret999",
                channel="ebay-uk",
                operation="createShippingFulfillment",
                limiter=None,
            )
    assert type(raised.value) is expected
    assert raised.value.__cause__ is error
    assert str(raised.value) == f"ebay-uk:createShippingFulfillment: {type(error).__name__}"


async def test_send_builds_the_request_from_method_url_and_arguments() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": {"ok": True}})

    async with make_client(
        base_url=BASE, channel="shopify-main", transport=httpx.MockTransport(handler)
    ) as client:
        answer = await send(
            client,
            "POST",
            "/admin/api/2026-04/graphql.json",
            channel="shopify-main",
            operation="graphql",
            limiter=None,
            params={"a": "1", "b": [2, 3]},
            headers={"X-Test": "yes"},
            json={"query": "{ shop { name } }"},
        )
    assert answer.json() == {"data": {"ok": True}}
    assert seen[0].method == "POST"
    assert seen[0].url == httpx.URL(f"{BASE}/admin/api/2026-04/graphql.json?a=1&b=2&b=3")
    assert seen[0].headers["X-Test"] == "yes"
    assert seen[0].content == b'{"query":"{ shop { name } }"}'


async def test_send_takes_a_built_request_and_its_tokens_from_the_limiter() -> None:
    clock = [0.0]
    bucket = TokenBucket(1.0, 10.0, clock=lambda: clock[0])
    transport = httpx.MockTransport(lambda request: httpx.Response(204))
    async with make_client(base_url=BASE, channel="c", transport=transport) as client:
        request = client.build_request("DELETE", "/things/1")
        answer = await send(client, request, channel="c", operation="o", limiter=bucket, tokens=4)
    assert answer.status_code == 204
    assert bucket.available == pytest.approx(6.0)


async def test_send_refuses_a_mixed_call() -> None:
    async with make_client(base_url=BASE, channel="c") as client:
        request = client.build_request("GET", "/")
        with pytest.raises(TypeError):
            await send(client, request, "/other", channel="c", operation="o", limiter=None)
        with pytest.raises(TypeError):
            await send(client, "GET", channel="c", operation="o", limiter=None)


async def test_send_raises_the_classified_error() -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(404, json={"errors": [{"message": "Order not found"}]})
    )
    async with make_client(base_url=BASE, channel="amazon-us", transport=transport) as client:
        with pytest.raises(NotFoundError, match="amazon-us:getOrder: HTTP 404: Order not found"):
            await send(
                client, "GET", "/orders/1", channel="amazon-us", operation="getOrder", limiter=None
            )


@pytest.mark.parametrize(("headers", "penalty"), [({"Retry-After": "10"}, 10.0), ({}, 0.0)])
async def test_a_429_penalizes_the_limiter(headers: dict[str, str], penalty: float) -> None:
    now = [100.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds
        await asyncio.sleep(0)

    bucket = TokenBucket(0.5, 20.0, clock=lambda: now[0], sleep=sleep)
    transport = httpx.MockTransport(lambda request: httpx.Response(429, headers=headers))
    async with make_client(base_url=BASE, channel="amazon-us", transport=transport) as client:
        with pytest.raises(RateLimitedError) as raised:
            await send(
                client, "GET", "/o", channel="amazon-us", operation="getOrder", limiter=bucket
            )
    assert raised.value.retry_after == (penalty or None)
    assert bucket.available == 0.0
    # Nothing before the Retry-After; without one, the emptied bucket paces the next call.
    assert await bucket.acquire() == pytest.approx(max(penalty, 1 / 0.5))
