"""The Inventory API: bulkUpdatePriceQuantity answers per entry and never touches a Trading
listing; the reads a connector binds listings with."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox.ebay.conftest import Account

pytestmark = pytest.mark.anyio
BULK = "/sell/inventory/v1/bulk_update_price_quantity"


async def bulk(account: Account, *requests: dict[str, Any]) -> Any:
    response = await account.rest("POST", BULK, json={"requests": list(requests)})
    return response


async def test_each_entry_is_applied_or_refused_on_its_own(account: Account) -> None:
    ids = await account.seed(
        {"sku": "INV-A", "quantity": 1, "world": "inventory"},
        {"sku": "INV-B", "quantity": 1, "world": "inventory"},
        {"sku": "TRADE", "quantity": 1},
    )
    offer_b = ids["INV-B"]["offer_id"]
    response = await bulk(
        account,
        {"sku": "INV-A", "shipToLocationAvailability": {"quantity": 7}},
        {
            "sku": "INV-B",
            "shipToLocationAvailability": {"quantity": 4},
            "offers": [{"offerId": offer_b, "availableQuantity": 4}],
        },
        {"sku": "TRADE", "shipToLocationAvailability": {"quantity": 9}},
        {"sku": "GHOST", "shipToLocationAvailability": {"quantity": 9}},
    )
    assert response.status_code == 200
    answers = response.json()["responses"]
    assert [(a["sku"], a.get("offerId"), a["statusCode"]) for a in answers] == [
        ("INV-A", None, 200),
        ("INV-B", offer_b, 200),
        ("TRADE", None, 400),
        ("GHOST", None, 404),
    ]
    assert "Trading API" in answers[2]["errors"][0]["message"]
    assert await account.control("GET", "/inventory") == {
        "INV-A": 7,
        "INV-B": 4,
        "TRADE": 1,  # Inventory-API calls cannot revise a Trading listing
    }


async def test_a_batch_past_the_maximum_is_refused_whole(make_account: Any) -> None:
    account = await make_account(bulk_update_max=2)
    await account.seed(*({"sku": f"I{i}", "quantity": 0, "world": "inventory"} for i in range(3)))
    requests = [{"sku": f"I{i}", "shipToLocationAvailability": {"quantity": 5}} for i in range(3)]
    response = await bulk(account, *requests)
    assert response.status_code == 400
    assert "1 to 2" in response.json()["errors"][0]["message"]
    assert set((await account.control("GET", "/inventory")).values()) == {0}


@pytest.mark.parametrize(
    "request_body",
    [
        {"sku": "I", "shipToLocationAvailability": {"quantity": -1}},
        {"sku": "I", "shipToLocationAvailability": {"quantity": "3"}},
        {"sku": "I", "offers": [{"availableQuantity": 3}]},
        {"sku": "I"},
        {"shipToLocationAvailability": {"quantity": 3}},
    ],
)
async def test_a_malformed_entry_refuses_the_call(
    account: Account, request_body: dict[str, Any]
) -> None:
    await account.seed({"sku": "I", "quantity": 1, "world": "inventory"})
    response = await bulk(
        account, {"sku": "I", "shipToLocationAvailability": {"quantity": 2}}, request_body
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["domain"] == "API_INVENTORY"
    assert await account.control("GET", "/inventory") == {"I": 1}


async def test_the_daily_revision_cap_applies_to_inventory_listings(account: Account) -> None:
    ids = await account.seed({"sku": "I", "quantity": 1, "world": "inventory"})
    await account.control("POST", "/quotas", {"revisions": {ids["I"]["item_id"]: 250}})
    (answer,) = (
        await bulk(account, {"sku": "I", "shipToLocationAvailability": {"quantity": 3}})
    ).json()["responses"]
    assert answer["statusCode"] == 400
    assert await account.control("GET", "/inventory") == {"I": 1}


async def test_the_reads_a_connector_binds_listings_with(account: Account) -> None:
    ids = await account.seed(
        {"sku": "I1", "quantity": 3, "world": "inventory", "price": "5.00"},
        {"sku": "I2", "quantity": 4, "world": "inventory"},
        {"sku": "T", "quantity": 9},
    )
    items = (
        await account.rest("GET", "/sell/inventory/v1/inventory_item", params={"limit": "1"})
    ).json()
    assert items["total"] == 2 and items["size"] == 1 and "next" in items
    assert items["inventoryItems"][0]["sku"] == "I1"
    assert items["inventoryItems"][0]["availability"] == {
        "shipToLocationAvailability": {"quantity": 3}
    }

    offers = (await account.rest("GET", "/sell/inventory/v1/offer", params={"sku": "I1"})).json()
    (offer,) = offers["offers"]
    assert offer["offerId"] == ids["I1"]["offer_id"]
    assert offer["listing"]["listingId"] == ids["I1"]["item_id"]
    assert offer["availableQuantity"] == 3
    assert offer["pricingSummary"]["price"] == {"value": "5.00", "currency": "USD"}
    assert (
        await account.rest("GET", "/sell/inventory/v1/offer", params={"sku": "T"})
    ).status_code == 404

    got = await account.rest(
        "POST",
        "/sell/inventory/v1/bulk_get_inventory_item",
        json={"requests": [{"sku": "I2"}, {"sku": "T"}]},
    )
    first, second = got.json()["responses"]
    assert first["statusCode"] == 200
    assert first["inventoryItem"]["availability"]["shipToLocationAvailability"]["quantity"] == 4
    assert second["statusCode"] == 404
