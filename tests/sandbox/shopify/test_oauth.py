"""The sandbox store's OAuth install: the authorize redirect Shopify signs, the one-time code
exchange, and a reinstall's new token."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.sandbox.shopify.conftest import GRAPHQL, SECRET, TOKEN, Shop

pytestmark = pytest.mark.anyio
REDIRECT = "http://127.0.0.1:8080/oauth/shopify/main/callback"
TOKEN_PATH = "/admin/oauth/access_token"


async def authorize(shop: Shop, **changes: str) -> dict[str, str]:
    """Follow the install URL; the callback's query (the response must redirect)."""
    client_id = (await shop.control("GET", "/oauth"))["client_id"]
    query = {
        "client_id": client_id,
        "scope": "read_orders,write_inventory",
        "redirect_uri": REDIRECT,
        "state": "s-1",
    } | changes
    response = await shop.http.get("/admin/oauth/authorize", params=query)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def test_the_callback_is_signed_with_the_app_secret(shop: Shop) -> None:
    params = await authorize(shop)
    assert set(params) == {"code", "hmac", "host", "shop", "state", "timestamp"}
    assert params["shop"] == "demo.myshopify.com" and params["state"] == "s-1"
    assert params["timestamp"] == str(int(shop.clock.now().timestamp()))
    message = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "hmac")
    expected = hmac.new(SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    assert params["hmac"] == expected


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"client_id": "another-app"}, "api_key is invalid"),
        ({"scope": "read_orders,read_everything"}, "invalid_scope"),
        ({"scope": ""}, "invalid_scope"),
        ({"redirect_uri": "/relative"}, "redirect_uri"),
    ],
)
async def test_a_bad_install_request_is_refused_on_the_page(
    shop: Shop, changes: dict[str, str], error: str
) -> None:
    client_id = (await shop.control("GET", "/oauth"))["client_id"]
    query = {"client_id": client_id, "scope": "read_orders", "redirect_uri": REDIRECT} | changes
    response = await shop.http.get("/admin/oauth/authorize", params=query)
    assert response.status_code == 400
    assert error in response.text


async def test_only_allowed_redirects_once_some_are_listed(shop: Shop) -> None:
    await shop.control("POST", "/oauth", {"redirect_uris": ["https://sync.example.com/cb"]})
    client_id = (await shop.control("GET", "/oauth"))["client_id"]
    query = {"client_id": client_id, "scope": "read_orders", "redirect_uri": REDIRECT}
    response = await shop.http.get("/admin/oauth/authorize", params=query)
    assert response.status_code == 400 and "not whitelisted" in response.text


async def test_a_code_works_once_within_its_life_and_only_with_the_app_keys(shop: Shop) -> None:
    client_id = (await shop.control("GET", "/oauth"))["client_id"]
    code = (await authorize(shop))["code"]
    keys = {"client_id": client_id, "client_secret": SECRET}
    wrong = await shop.http.post(TOKEN_PATH, json=keys | {"client_secret": "x", "code": code})
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_client"
    first = await shop.http.post(TOKEN_PATH, data=keys | {"code": code})  # form, as urllib sends
    assert first.status_code == 200, first.text
    assert first.json()["access_token"] == TOKEN  # installed already: its one offline token
    again = await shop.http.post(TOKEN_PATH, json=keys | {"code": code})
    assert again.status_code == 400 and "already used" in again.json()["error_description"]
    late = (await authorize(shop))["code"]
    shop.clock.advance(601)
    expired = await shop.http.post(TOKEN_PATH, json=keys | {"code": late})
    assert expired.status_code == 400


async def test_installing_again_after_an_uninstall_gives_a_new_token(shop: Shop) -> None:
    client_id = (await shop.control("GET", "/oauth"))["client_id"]
    await shop.control("POST", "/uninstall")
    code = (await authorize(shop, scope="write_orders"))["code"]
    answer = await shop.http.post(
        TOKEN_PATH, json={"client_id": client_id, "client_secret": SECRET, "code": code}
    )
    body = answer.json()
    assert body["scope"] == "write_orders" and body["access_token"] != TOKEN
    query = {"query": "{ shop { name } }"}
    new = await shop.http.post(
        GRAPHQL, json=query, headers={"X-Shopify-Access-Token": body["access_token"]}
    )
    old = await shop.http.post(GRAPHQL, json=query, headers={"X-Shopify-Access-Token": TOKEN})
    assert (new.status_code, old.status_code) == (200, 401)
    assert (await shop.control("GET", "/oauth"))["installed"] is True
