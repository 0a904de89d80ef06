"""OAuth: the seller's user token is renewed from the refresh token before it expires, once for
concurrent callers; a refused refresh token is an AuthError; a token eBay refuses early is
renewed once; the consent steps build eBay's URL and read its answer."""

from __future__ import annotations

import asyncio
import base64
import logging
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from connectors.ebay import const
from connectors.ebay.auth import OAuthApp, consent_url, exchange_code
from connectors.errors import AuthError
from tests.connectors.ebay.fake_ebay import (
    CLIENT_ID,
    CLIENT_SECRET,
    IDENTITY_URL,
    REFRESH_TOKEN,
    TOKEN_PATH,
    FakeClock,
    FakeEbay,
    connect,
)

pytestmark = pytest.mark.anyio
ORDERS = "/sell/fulfillment/v1/order"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode())


async def test_the_user_token_comes_from_the_refresh_token_and_is_renewed_before_expiry() -> None:
    ebay, clock = FakeEbay(), FakeClock()
    ebay.on("GET", ORDERS, {"orders": [], "total": 0})
    connector = connect(ebay, clock=clock)
    await connector.check_connection()
    (grant,) = ebay.calls("POST", TOKEN_PATH)
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert grant.headers["Authorization"] == f"Basic {basic}"
    form = _form(grant)
    assert form["grant_type"] == ["refresh_token"] and form["refresh_token"] == [REFRESH_TOKEN]
    assert set(form["scope"][0].split()) == set(const.USER_SCOPES)
    (call,) = ebay.calls("GET", ORDERS)
    assert call.headers["Authorization"] == "Bearer user-token-1"
    assert call.headers["X-EBAY-C-MARKETPLACE-ID"] == "EBAY_US"

    clock.advance(7200 - const.TOKEN_RENEW_MARGIN_S - 1)  # still good for the margin
    await connector.check_connection()
    assert len(ebay.calls("POST", TOKEN_PATH)) == 1
    clock.advance(2)  # inside the margin: renewed before eBay would refuse it
    await connector.check_connection()
    assert len(ebay.calls("POST", TOKEN_PATH)) == 2
    assert ebay.calls("GET", ORDERS)[-1].headers["Authorization"] == "Bearer user-token-2"
    await connector.aclose()


async def test_concurrent_calls_share_one_renewal() -> None:
    ebay = FakeEbay()
    ebay.on("GET", ORDERS, {"orders": [], "total": 0})
    connector = connect(ebay)
    await asyncio.gather(*(connector.check_connection() for _ in range(5)))
    assert len(ebay.calls("POST", TOKEN_PATH)) == 1
    await connector.aclose()


async def test_a_refused_refresh_token_is_an_auth_error_without_the_token_in_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    ebay = FakeEbay()
    ebay.on(
        "POST",
        TOKEN_PATH,
        httpx.Response(
            400,
            json={
                "error": "invalid_grant",
                "error_description": "the provided authorization refresh token is invalid or "
                "was issued to another client",
            },
        ),
    )
    connector = connect(ebay)
    with pytest.raises(AuthError, match="refresh token is invalid") as caught:
        await connector.check_connection()
    assert REFRESH_TOKEN not in str(caught.value) and CLIENT_SECRET not in str(caught.value)
    assert len(ebay.calls("POST", TOKEN_PATH)) == 1  # not retried: no retry fixes it
    assert ebay.api_calls() == []
    assert REFRESH_TOKEN not in caplog.text and CLIENT_SECRET not in caplog.text
    await connector.aclose()


async def test_wrong_application_keys_are_an_auth_error() -> None:
    ebay = FakeEbay()
    ebay.on("POST", TOKEN_PATH, httpx.Response(401, json={"error": "invalid_client"}))
    connector = connect(ebay)
    with pytest.raises(AuthError):
        await connector.check_connection()
    await connector.aclose()


async def test_a_token_endpoint_outage_is_retried() -> None:
    ebay, clock = FakeEbay(), FakeClock()
    ebay.queue(
        "POST",
        TOKEN_PATH,
        httpx.Response(503),
        httpx.Response(200, json={"access_token": "user-token-x", "expires_in": 7200}),
    )
    ebay.on("GET", ORDERS, {"orders": [], "total": 0})
    connector = connect(ebay, clock=clock)
    await connector.check_connection()
    assert ebay.calls("GET", ORDERS)[0].headers["Authorization"] == "Bearer user-token-x"
    assert len(clock.sleeps) == 1
    await connector.aclose()


async def test_a_token_refused_early_is_renewed_once_then_is_an_auth_error() -> None:
    ebay = FakeEbay()
    ebay.queue("GET", ORDERS, httpx.Response(401), {"orders": [], "total": 0})
    connector = connect(ebay)
    await connector.check_connection()
    tokens = [r.headers["Authorization"] for r in ebay.calls("GET", ORDERS)]
    assert tokens == ["Bearer user-token-1", "Bearer user-token-2"]

    refusing = FakeEbay()
    refusing.on("GET", ORDERS, httpx.Response(401, json={"errors": [{"message": "expired"}]}))
    connector = connect(refusing)
    with pytest.raises(AuthError):
        await connector.check_connection()
    assert len(refusing.calls("GET", ORDERS)) == 2
    await connector.aclose()


def test_the_consent_url_asks_for_the_connector_scopes() -> None:
    url = consent_url(CLIENT_ID, "Example-RuName-1", state="s-123")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == const.CONSENT_URL
    query = parse_qs(parts.query)
    assert query["client_id"] == [CLIENT_ID] and query["redirect_uri"] == ["Example-RuName-1"]
    assert query["response_type"] == ["code"] and query["state"] == ["s-123"]
    assert query["scope"][0].split() == list(const.USER_SCOPES)


async def test_the_code_exchange_answers_the_refresh_token() -> None:
    def grant(request: httpx.Request) -> httpx.Response:
        form = _form(request)
        assert form == {
            "grant_type": ["authorization_code"],
            "code": ["v^1.1#code"],
            "redirect_uri": ["Example-RuName-1"],
        }
        return httpx.Response(
            200,
            json={
                "access_token": "user-token-a",
                "expires_in": 7200,
                "refresh_token": "v^1.1#refresh-new",
                "refresh_token_expires_in": 47304000,
            },
        )

    app = OAuthApp(CLIENT_ID, CLIENT_SECRET, IDENTITY_URL)
    assert CLIENT_SECRET not in repr(app)
    async with httpx.AsyncClient(transport=httpx.MockTransport(grant)) as http:
        answer = await exchange_code(
            http, app, "v^1.1#code", "Example-RuName-1", channel="ebay-main"
        )
    assert answer.refresh_token == "v^1.1#refresh-new"
    assert answer.refresh_token_expires_in_s == 47304000
    assert "refresh-new" not in repr(answer)
