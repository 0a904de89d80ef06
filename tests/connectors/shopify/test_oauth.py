"""The OAuth install's protocol half: the install URL, the callback's checks, the code exchange."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from connectors.errors import AuthError, UncertainOutcomeError
from connectors.shopify import const
from connectors.shopify.oauth import (
    CallbackRefusedError,
    ShopifyApp,
    check_callback,
    exchange_code,
    install_url,
    missing_scopes,
)

pytestmark = pytest.mark.anyio

SECRET = "hush-app-client-secret"
APP = ShopifyApp(client_id="app-client-id-1", client_secret=SECRET, shop="demo.myshopify.com")
REDIRECT = "https://sync.example.com/oauth/shopify/main/callback"
STATE = "nonce-0123456789"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def signed(params: dict[str, str], secret: str = SECRET) -> dict[str, str]:
    """`params` with Shopify's hmac: hex HMAC-SHA256 of the sorted `key=value` pairs joined
    with `&` (shopify.dev, "Verify a request"), computed here independently of the package."""
    message = "&".join(f"{key}={params[key]}" for key in sorted(params))
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return {**params, "hmac": digest}


def callback(**changes: str) -> dict[str, str]:
    params = {
        "code": "0907a61c0c8d55e99db179b68161bc00",
        "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvZGVtbw",
        "shop": "demo.myshopify.com",
        "state": STATE,
        "timestamp": str(int(time.time())),
    }
    params.update(changes)
    return signed(params)


def test_the_install_url_asks_for_the_connector_scopes_and_comes_back_to_the_callback() -> None:
    url = urlsplit(install_url(APP, REDIRECT, state=STATE))
    assert (url.scheme, url.netloc, url.path) == (
        "https",
        "demo.myshopify.com",
        "/admin/oauth/authorize",
    )
    query = {key: values[0] for key, values in parse_qs(url.query).items()}
    assert query == {
        "client_id": "app-client-id-1",
        "scope": ",".join(const.OAUTH_SCOPES),
        "redirect_uri": REDIRECT,
        "state": STATE,
    }
    assert {"write_inventory", "write_orders", "write_merchant_managed_fulfillment_orders"} <= set(
        query["scope"].split(",")
    )


def test_an_api_base_url_override_moves_the_install_url_there() -> None:
    sandbox = ShopifyApp("id", SECRET, "demo.myshopify.com", base_url="http://127.0.0.1:9001/")
    url = urlsplit(install_url(sandbox, REDIRECT, state=STATE))
    assert (url.scheme, url.netloc, url.path) == (
        "http",
        "127.0.0.1:9001",
        "/admin/oauth/authorize",
    )
    assert parse_qs(url.query)["redirect_uri"] == [REDIRECT]
    assert sandbox.admin_root == "http://127.0.0.1:9001"
    assert APP.admin_root == "https://demo.myshopify.com"


def test_a_callback_shopify_signed_for_this_run_gives_its_code() -> None:
    assert check_callback(APP, callback(), state=STATE) == "0907a61c0c8d55e99db179b68161bc00"


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({**callback(), "code": "a-code-someone-swapped-in"}, "HMAC does not match"),
        ({k: v for k, v in callback().items() if k != "hmac"}, "HMAC does not match"),
        (
            signed({k: v for k, v in callback().items() if k != "hmac"}, "another-apps-secret"),
            "HMAC does not match",
        ),
        (callback(timestamp=str(int(time.time()) - 2 * 86400)), "more than a day old"),
        (callback(state="an-earlier-run"), "state does not match"),
        ({k: v for k, v in callback().items() if k != "state"}, "HMAC does not match"),
        (signed({k: v for k, v in callback().items() if k not in ("state", "hmac")}), "state"),
        (callback(shop="other.myshopify.com"), "another shop"),
        (callback(code=""), "no authorization code"),
    ],
)
def test_a_callback_failing_a_check_is_refused_saying_which(
    params: dict[str, str], reason: str
) -> None:
    with pytest.raises(CallbackRefusedError, match=reason) as refused:
        check_callback(APP, params, state=STATE)
    assert SECRET not in str(refused.value)


def test_write_scopes_cover_their_read_scopes() -> None:
    granted = [s for s in const.OAUTH_SCOPES if not s.startswith("read_")]
    granted += ["read_products", "read_locations", "read_fulfillments"]  # no write_ asked
    assert missing_scopes(granted) == []
    assert missing_scopes(["write_orders"], ["read_orders", "read_products"]) == ["read_products"]


async def test_the_exchange_sends_the_app_keys_and_answers_token_and_scopes() -> None:
    seen: list[httpx.Request] = []

    def shop(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"access_token": "shpat_new_token", "scope": "write_orders,read_products"}
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(shop)) as http:
        grant = await exchange_code(http, APP, "the-code", channel="main")
    assert grant.access_token == "shpat_new_token"
    assert grant.scopes == {"write_orders", "read_products"}
    assert "shpat_new_token" not in repr(grant)
    (request,) = seen
    assert str(request.url) == "https://demo.myshopify.com/admin/oauth/access_token"
    assert json.loads(request.content) == {
        "client_id": "app-client-id-1",
        "client_secret": SECRET,
        "code": "the-code",
    }


async def test_a_refused_code_is_an_auth_error_sent_once() -> None:
    calls = 0

    def shop(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(
            400,
            json={
                "error": "invalid_request",
                "error_description": "The authorization code was not found or was already used",
            },
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(shop)) as http:
        with pytest.raises(AuthError, match="already used") as refused:
            await exchange_code(http, APP, "spent", channel="main")
    assert calls == 1
    assert SECRET not in str(refused.value)


async def test_a_failed_connection_is_retried_but_a_lost_answer_is_not() -> None:
    attempts: list[str] = []

    async def no_wait(_: float) -> None:
        return None

    def refuse_then_answer(request: httpx.Request) -> httpx.Response:
        attempts.append("try")
        if len(attempts) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"access_token": "shpat_x", "scope": ""})

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse_then_answer)) as http:
        grant = await exchange_code(http, APP, "c", channel="main", sleep=no_wait)
    assert grant.access_token == "shpat_x" and len(attempts) == 2

    def read_timeout(request: httpx.Request) -> httpx.Response:
        attempts.append("lost")
        raise httpx.ReadTimeout("timed out", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(read_timeout)) as http:
        with pytest.raises(UncertainOutcomeError):
            await exchange_code(http, APP, "c", channel="main", sleep=no_wait)
    assert attempts.count("lost") == 1  # the code may be spent already: not sent again
