"""searchListingsItems, which the connector's reconcile reads to bind listings: every listing of
the seller, a page at a time, in the shape of Amazon's model."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox.amazon.conftest import SELLER, US, Seller, model_problems

pytestmark = pytest.mark.anyio


async def test_search_pages_through_every_listing_with_its_quantity(seller: Seller) -> None:
    await seller.list(**{f"SKU-{n:02d}": n for n in range(25)})
    seen: dict[str, Any] = {}
    token: str | None = None
    pages = 0
    while True:
        params = {
            "marketplaceIds": US,
            "includedData": "summaries,fulfillmentAvailability",
            "pageSize": "10",
        }
        if token:
            params["pageToken"] = token
        answer = await seller.api("GET", f"/listings/2021-08-01/items/{SELLER}", params=params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert model_problems("listings", "ItemSearchResults", body) == []
        assert body["numberOfResults"] == 25
        pages += 1
        for item in body["items"]:
            seen[item["sku"]] = item["fulfillmentAvailability"][0]["quantity"]
        token = (body.get("pagination") or {}).get("nextToken")
        if token is None:
            break
    assert pages == 3
    assert seen == {f"SKU-{n:02d}": n for n in range(25)}


async def test_search_refuses_a_page_bigger_than_amazons(seller: Seller) -> None:
    answer = await seller.api(
        "GET",
        f"/listings/2021-08-01/items/{SELLER}",
        params={"marketplaceIds": US, "pageSize": "21"},
    )
    assert answer.status_code == 400, answer.text
