"""patchListingsItem as the stock push uses it: ACCEPTED changes apply (at once or later), what
Amazon refuses comes back INVALID with issues and changes nothing, and getListingsItem reads the
quantity back."""

from __future__ import annotations

import pytest

from tests.sandbox.amazon.conftest import SELLER, US, Seller, availability

pytestmark = pytest.mark.anyio


async def test_an_accepted_patch_sets_the_merchant_quantity(seller: Seller) -> None:
    await seller.list(A=5)

    answer = await seller.patch("A", availability(17))

    assert answer.status_code == 200
    assert answer.headers["x-amzn-RateLimit-Limit"] == "5"
    body = answer.json()
    assert (body["sku"], body["status"], body["issues"]) == ("A", "ACCEPTED", [])
    assert await seller.control("GET", "/inventory") == {"A": 17}
    read = await seller.api(
        "GET",
        f"/listings/2021-08-01/items/{SELLER}/A",
        params={"marketplaceIds": US, "includedData": "summaries,fulfillmentAvailability"},
    )
    assert read.json()["fulfillmentAvailability"] == [
        {"fulfillmentChannelCode": "DEFAULT", "quantity": 17}
    ]


async def test_accepted_is_not_applied_until_amazon_gets_to_it(seller: Seller) -> None:
    await seller.list(A=5)
    await seller.control("POST", "/faults", {"patch_apply_delay_s": 30})

    assert (await seller.patch("A", availability(1))).json()["status"] == "ACCEPTED"
    assert (await seller.patch("A", availability(2))).json()["status"] == "ACCEPTED"

    assert await seller.control("GET", "/inventory") == {"A": 5}
    seller.clock.advance(30)
    assert await seller.control("GET", "/inventory") == {"A": 2}


@pytest.mark.parametrize(
    ("sku", "value", "code"),
    [
        ("NOPE", availability(3), "4000001"),
        ("F", availability(3), "4000002"),
        ("A", availability(3, "AMAZON_NA"), "4000002"),
        ("A", availability(-1), "4000003"),
        ("A", [{"fulfillment_channel_code": "DEFAULT", "quantity": "3"}], "4000003"),
        ("BROKEN", availability(3), "4000004"),
    ],
)
async def test_refused_updates_are_invalid_with_the_reason(
    seller: Seller, sku: str, value: object, code: str
) -> None:
    await seller.list(A=5, BROKEN=5)
    await seller.control(
        "POST",
        "/listings",
        {"listings": [{"sku": "F", "quantity": 7, "fulfillment_channel": "AMAZON_NA"}]},
    )
    await seller.control(
        "POST", "/faults", {"listing_errors": {"BROKEN": "This listing is suppressed."}}
    )

    answer = await seller.patch(sku, value)

    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "INVALID"
    assert [issue["code"] for issue in body["issues"]] == [code]
    assert body["issues"][0]["severity"] == "ERROR"
    assert await seller.control("GET", "/inventory") == {"A": 5, "BROKEN": 5, "F": 7}


async def test_a_validation_preview_changes_nothing(seller: Seller) -> None:
    await seller.list(A=5)

    answer = await seller.patch("A", availability(9), mode="VALIDATION_PREVIEW")

    assert answer.json()["status"] == "VALID"
    assert await seller.control("GET", "/inventory") == {"A": 5}


async def test_another_seller_id_and_a_missing_marketplace_are_refused(seller: Seller) -> None:
    await seller.list(A=5)
    body = {
        "productType": "PRODUCT",
        "patches": [
            {
                "op": "replace",
                "path": "/attributes/fulfillment_availability",
                "value": availability(1),
            }
        ],
    }

    other = await seller.api(
        "PATCH", "/listings/2021-08-01/items/A2OTHER/A", params={"marketplaceIds": US}, json=body
    )
    no_market = await seller.api("PATCH", f"/listings/2021-08-01/items/{SELLER}/A", json=body)
    no_type = await seller.api(
        "PATCH",
        f"/listings/2021-08-01/items/{SELLER}/A",
        params={"marketplaceIds": US},
        json={"patches": body["patches"]},
    )

    assert other.status_code == 403
    assert no_market.status_code == 400
    assert "marketplaceIds" in no_market.json()["errors"][0]["message"]
    assert no_type.status_code == 400
    assert "productType" in no_type.json()["errors"][0]["message"]
    assert await seller.control("GET", "/inventory") == {"A": 5}
