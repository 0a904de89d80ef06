"""The control API: seeding listings of both worlds, buyers' orders lowering stock, the seller's
Seller Hub actions, and refusals that name what is wrong and change nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox.ebay.conftest import Account

pytestmark = pytest.mark.anyio


async def test_listings_of_both_worlds_get_their_ids(account: Account) -> None:
    ids = await account.seed(
        {"sku": "T", "quantity": 2},
        {"sku": "I", "quantity": 3, "world": "inventory"},
        {"sku": "V1", "quantity": 1, "group": "V"},
        {"sku": "V2", "quantity": 1, "group": "V"},
    )
    assert ids["T"]["world"] == "trading" and ids["T"]["offer_id"] is None
    assert ids["I"]["world"] == "inventory" and ids["I"]["offer_id"]
    assert ids["V1"]["item_id"] == ids["V2"]["item_id"]
    assert ids["V1"]["variation_id"] != ids["V2"]["variation_id"]
    listings = await account.control("GET", "/listings")
    assert listings["T"]["quantity"] == 2 and listings["T"]["revisions_today"] == 0
    assert await account.control("GET", "/inventory") == {"I": 3, "T": 2, "V1": 1, "V2": 1}


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ({"listings": [{"sku": "A", "quantity": -1}]}, 422, "listings.0.quantity"),
        ({"listings": [{"sku": "A", "quantity": 1, "colour": "red"}]}, 422, "colour"),
        ({"listings": [{"sku": "A", "quantity": 1, "world": "amazon"}]}, 422, "world"),
        ({"listings": [{"sku": "A", "quantity": 1}, {"sku": "A", "quantity": 2}]}, 409, "A"),
        (
            {"listings": [{"sku": "A", "quantity": 1, "world": "inventory", "group": "G"}]},
            409,
            "variations",
        ),
    ],
)
async def test_bad_listings_are_refused_whole(
    account: Account, body: dict[str, Any], status: int, named: str
) -> None:
    response = await account.http.post("/_sandbox/listings", json=body)
    assert response.status_code == status
    assert named in response.json()["error"]
    assert await account.control("GET", "/listings") == {}


async def test_an_order_lowers_stock_all_or_nothing(account: Account) -> None:
    await account.seed({"sku": "A", "quantity": 3}, {"sku": "B", "quantity": 1})
    placed = await account.order(A=2)
    assert placed["order_id"].count("-") == 2
    assert await account.control("GET", "/inventory") == {"A": 1, "B": 1}
    response = await account.http.post(
        "/_sandbox/orders",
        json={"lines": [{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": 2}]},
    )
    assert response.status_code == 409 and "'B'" in response.json()["error"]
    missing = await account.http.post(
        "/_sandbox/orders", json={"lines": [{"sku": "Z", "quantity": 1}]}
    )
    assert missing.status_code == 404
    assert await account.control("GET", "/inventory") == {"A": 1, "B": 1}


async def test_the_same_username_is_the_same_buyer(account: Account) -> None:
    await account.seed({"sku": "A", "quantity": 5})
    first = await account.order(A=1)
    second = await account.order(A=1)
    anonymous = await account.order({}, A=1)
    assert first["buyer_user_id"] == second["buyer_user_id"] != anonymous["buyer_user_id"]


async def test_seller_hub_sets_ships_and_cancels(account: Account) -> None:
    ids = await account.seed({"sku": "A", "quantity": 5})
    assert await account.control("POST", "/inventory", {"A": 9}) == {"A": 9}
    assert (await account.control("GET", "/quotas"))["revisions"] == {ids["A"]["item_id"]: 1}
    kept = await account.order(A=2)
    dropped = await account.order(A=3)
    await account.control("POST", "/cancel", {"order_id": dropped["order_id"]})
    assert await account.control("GET", "/inventory") == {"A": 7}
    await account.control(
        "POST", "/ship", {"order_id": kept["order_id"], "carrier": "UPS", "tracking": "1Z9"}
    )
    (package,) = (await account.control("GET", "/fulfillments"))["fulfillments"]
    assert package["lines"] == [
        {"line_item_id": kept["line_items"][0]["line_item_id"], "sku": "A", "quantity": 2}
    ]
    assert package["source"] == "seller_hub"
    again = await account.http.post("/_sandbox/ship", json={"order_id": kept["order_id"]})
    assert again.status_code == 409
    shipped_cancel = await account.http.post(
        "/_sandbox/cancel", json={"order_id": kept["order_id"]}
    )
    assert shipped_cancel.status_code == 409
    order = (await account.rest("GET", f"/sell/fulfillment/v1/order/{dropped['order_id']}")).json()
    assert order["cancelStatus"]["cancelState"] == "CANCELED"


async def test_control_calls_are_not_api_calls(account: Account) -> None:
    await account.seed({"sku": "A", "quantity": 5})
    await account.order(A=1)
    await account.control("GET", "/inventory")
    assert await account.control("GET", "/calls") == {
        "calls": {},
        "throttled": {},
        "faulted": {},
        "unauthorized": {},
    }
    account_info = await account.control("GET", "/account")
    assert account_info["trading_url"] == "http://ebay/ws/api.dll"
    assert account_info["marketplace_id"] == "EBAY_US"
