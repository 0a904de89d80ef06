"""Login with Amazon on loopback: which grants give which tokens, what a missing, expired or
revoked token gets, and that refused calls are not counted as API calls."""

from __future__ import annotations

import pytest

from tests.sandbox.amazon.conftest import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, Seller

pytestmark = pytest.mark.anyio


def _grant(**fields: str) -> dict[str, str]:
    return {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **fields}


async def test_a_refresh_token_grant_gives_an_hour_long_seller_token(seller: Seller) -> None:
    answer = await seller.http.post(
        "/auth/o2/token", data=_grant(grant_type="refresh_token", refresh_token=REFRESH_TOKEN)
    )

    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"].startswith("Atza|")
    seller.token = body["access_token"]
    assert (await seller.search()).status_code == 200


@pytest.mark.parametrize(
    ("fields", "status", "error"),
    [
        ({"grant_type": "refresh_token", "refresh_token": "Atzr|other"}, 400, "invalid_grant"),
        ({"grant_type": "refresh_token"}, 400, "invalid_request"),
        ({"grant_type": "password", "refresh_token": REFRESH_TOKEN}, 400, "unsupported_grant_type"),
        ({"grant_type": "client_credentials", "scope": "profile"}, 400, "invalid_scope"),
        ({"refresh_token": REFRESH_TOKEN}, 400, "invalid_request"),
    ],
)
async def test_lwa_refuses_bad_grants_with_oauth_errors(
    seller: Seller, fields: dict[str, str], status: int, error: str
) -> None:
    answer = await seller.http.post("/auth/o2/token", data=_grant(**fields))

    assert answer.status_code == status
    assert answer.json()["error"] == error
    assert answer.json()["error_description"]


async def test_a_wrong_client_secret_is_invalid_client(seller: Seller) -> None:
    answer = await seller.http.post(
        "/auth/o2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": REFRESH_TOKEN,
            "client_id": CLIENT_ID,
            "client_secret": "wrong",
        },
    )

    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"


async def test_calls_without_a_live_seller_token_are_refused_and_not_counted(
    seller: Seller,
) -> None:
    grantless = await seller.http.post(
        "/auth/o2/token",
        data=_grant(grant_type="client_credentials", scope="sellingpartnerapi::notifications"),
    )
    assert grantless.status_code == 200

    for token in ("", "Atza|made-up", grantless.json()["access_token"]):
        seller.token = token
        answer = await seller.search()
        assert answer.status_code == 403
        assert answer.json()["errors"][0]["code"] == "Unauthorized"

    calls = await seller.control("GET", "/calls")
    assert calls["calls"] == {}
    assert calls["unauthorized"] == {"searchOrders": 3}


async def test_an_access_token_expires_after_an_hour(seller: Seller) -> None:
    seller.clock.advance(3601)

    answer = await seller.search()

    assert answer.status_code == 403
    assert "expired" in answer.json()["errors"][0]["details"]
    await seller.login()
    assert (await seller.search()).status_code == 200


async def test_revoking_the_app_kills_tokens_and_refreshes_until_restored(seller: Seller) -> None:
    await seller.control("POST", "/auth", {"action": "revoke"})

    assert (await seller.search()).status_code == 403
    refresh = await seller.http.post(
        "/auth/o2/token", data=_grant(grant_type="refresh_token", refresh_token=REFRESH_TOKEN)
    )
    assert refresh.status_code == 400
    assert refresh.json()["error"] == "invalid_grant"

    await seller.control("POST", "/auth", {"action": "restore"})
    await seller.login()
    assert (await seller.search()).status_code == 200


async def test_expiring_access_tokens_forces_a_refresh(seller: Seller) -> None:
    await seller.control("POST", "/auth", {"action": "expire_access_tokens"})

    assert (await seller.search()).status_code == 403
    await seller.login()
    assert (await seller.search()).status_code == 200
