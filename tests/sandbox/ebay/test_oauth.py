"""The identity service as eBay runs it: client authentication, the three grants, token expiry
and a seller withdrawing consent."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from sandbox.ebay.const import API_SCOPE
from tests.sandbox.ebay.conftest import REFRESH_TOKEN, Account, basic

pytestmark = pytest.mark.anyio
TOKEN_URL = "/identity/v1/oauth2/token"
ORDERS = "/sell/fulfillment/v1/order"


async def test_a_refresh_token_buys_a_user_token_that_the_sell_apis_take(account: Account) -> None:
    response = await account.http.post(
        TOKEN_URL,
        data={"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN},
        headers={"Authorization": basic()},
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "User Access Token" and body["expires_in"] == 7200
    assert (await account.rest("GET", ORDERS, token=body["access_token"])).status_code == 200


async def test_the_client_must_authenticate_with_its_id_and_secret(account: Account) -> None:
    for header in (basic(secret="wrong"), "Bearer nope", ""):
        response = await account.http.post(
            TOKEN_URL,
            data={"grant_type": "client_credentials"},
            headers={"Authorization": header},
        )
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
    assert (await account.control("GET", "/calls"))["unauthorized"] == {"token": 3}


async def test_bad_grants_are_refused_with_oauth_errors(account: Account) -> None:
    cases = [
        ({"grant_type": "refresh_token", "refresh_token": "not-issued"}, "invalid_grant"),
        ({"grant_type": "password", "username": "x"}, "unsupported_grant_type"),
        (
            {
                "grant_type": "refresh_token",
                "refresh_token": REFRESH_TOKEN,
                "scope": "https://api.ebay.com/oauth/api_scope/sell.finances",
            },
            "invalid_scope",
        ),
    ]
    for form, error in cases:
        response = await account.http.post(TOKEN_URL, data=form, headers={"Authorization": basic()})
        assert response.status_code == 400, form
        assert response.json()["error"] == error


async def test_an_application_token_reads_public_keys_but_not_orders(account: Account) -> None:
    app_token = await account.token("client_credentials", scope=API_SCOPE)
    kid = account.sandbox.keys.current_kid
    key = await account.rest("GET", f"/commerce/notification/v1/public_key/{kid}", token=app_token)
    assert key.status_code == 200
    refused = await account.rest("GET", ORDERS, token=app_token)
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["errorId"] == 1100
    user_token = await account.token()
    by_user = await account.rest(
        "GET", f"/commerce/notification/v1/public_key/{kid}", token=user_token
    )
    assert by_user.status_code == 403


async def test_an_access_token_expires_after_its_lifetime(account: Account) -> None:
    token = await account.token()
    account.clock.advance(7199)
    assert (await account.rest("GET", ORDERS, token=token)).status_code == 200
    account.clock.advance(2)
    expired = await account.rest("GET", ORDERS, token=token)
    assert expired.status_code == 401
    assert expired.json()["errors"][0] == {
        "errorId": 1001,
        "domain": "OAuth",
        "category": "REQUEST",
        "message": "Invalid access token. Check the value of the Authorization HTTP request header.",
    }
    assert (await account.rest("GET", ORDERS)).status_code == 200  # a renewed one works


async def test_revoked_consent_refuses_the_refresh_token_and_its_access_tokens(
    account: Account,
) -> None:
    token = await account.token()
    await account.control("POST", "/revoke-consent")
    refreshed = await account.http.post(
        TOKEN_URL,
        data={"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN},
        headers={"Authorization": basic()},
    )
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    assert (await account.rest("GET", ORDERS, token=token)).status_code == 401
    trading = await account.trading("GetOrders", "<NumberOfDays>1</NumberOfDays>", token=token)
    assert (
        "<Ack>Failure</Ack>" in trading.text and "<ErrorCode>21916984</ErrorCode>" in trading.text
    )

    fresh = (await account.control("POST", "/grants", status=201))["refresh_token"]
    assert await account.token(refresh_token=fresh)


async def test_consent_then_code_exchange_gives_a_new_refresh_token(account: Account) -> None:
    ru_name = account.sandbox.tokens.ru_name
    consent = await account.http.get(
        "/oauth2/authorize",
        params={
            "client_id": account.sandbox.tokens.client_id,
            "response_type": "code",
            "redirect_uri": ru_name,
            "scope": f"{API_SCOPE} {API_SCOPE}/sell.fulfillment",
            "state": "xyz",
        },
    )
    assert consent.status_code == 302
    back = urlsplit(consent.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == ru_name
    query = parse_qs(back.query)
    assert query["state"] == ["xyz"]
    form = {"grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": ru_name}
    exchanged = await account.http.post(TOKEN_URL, data=form, headers={"Authorization": basic()})
    assert exchanged.status_code == 200
    body = exchanged.json()
    assert body["refresh_token"] != REFRESH_TOKEN and body["refresh_token_expires_in"] > 0
    assert await account.token(refresh_token=body["refresh_token"])
    again = await account.http.post(TOKEN_URL, data=form, headers={"Authorization": basic()})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"  # single use
