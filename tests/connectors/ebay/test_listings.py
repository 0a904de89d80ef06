"""Listings for binding: both worlds, each listing once, in the world that can revise it; and
what eBay shows for some of them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.connectors.ebay.fake_ebay import FakeEbay, FakeTrading, connect, json_of, trading_answer

pytestmark = pytest.mark.anyio
ITEMS = "/sell/inventory/v1/inventory_item"
OFFERS = "/sell/inventory/v1/offer"
BULK_GET = "/sell/inventory/v1/bulk_get_inventory_item"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _item(item_id: str, sku: str | None, quantity: int, sold: int, control: str = "true") -> str:
    label = f"<SKU>{sku}</SKU>" if sku else ""
    return (
        f"<Item><ItemID>{item_id}</ItemID>{label}<Quantity>{quantity}</Quantity>"
        f"<OutOfStockControl>{control}</OutOfStockControl>"
        f"<SellingStatus><QuantitySold>{sold}</QuantitySold></SellingStatus></Item>"
    )


def _varied(item_id: str, variations: list[tuple[str, int, int]]) -> str:
    inner = "".join(
        f"<Variation><SKU>{sku}</SKU><Quantity>{q}</Quantity>"
        f"<SellingStatus><QuantitySold>{s}</QuantitySold></SellingStatus></Variation>"
        for sku, q, s in variations
    )
    return f"<Item><ItemID>{item_id}</ItemID><Variations>{inner}</Variations></Item>"


def _selling_page(items: str, pages: int) -> bytes:
    return trading_answer(
        "GetMyeBaySelling",
        f"<ActiveList><ItemArray>{items}</ItemArray><PaginationResult>"
        f"<TotalNumberOfPages>{pages}</TotalNumberOfPages></PaginationResult></ActiveList>",
    )


def _offers(request: httpx.Request) -> dict[str, Any] | httpx.Response:
    sku = request.url.params["sku"]
    if sku == "BOWL":
        return httpx.Response(404, json={"errors": [{"errorId": 25713, "message": "no offer"}]})
    return {
        "offers": [
            {
                "offerId": "5005317010",
                "sku": sku,
                "marketplaceId": "EBAY_US",
                "status": "PUBLISHED",
                "availableQuantity": 7,
                "listing": {"listingId": "110557777777", "listingStatus": "ACTIVE"},
            },
            {
                "offerId": "5005317011",
                "sku": sku,
                "marketplaceId": "EBAY_GB",
                "status": "PUBLISHED",
            },
        ],
        "total": 2,
    }


async def test_listings_of_both_worlds_each_once_with_their_world() -> None:
    ebay, trading = FakeEbay(), FakeTrading()
    ebay.on(
        "GET",
        ITEMS,
        {
            "inventoryItems": [
                {"sku": "MUG-RED", "availability": {"shipToLocationAvailability": {"quantity": 7}}},
                {"sku": "BOWL", "availability": {"shipToLocationAvailability": {"quantity": 0}}},
            ],
            "total": 2,
        },
    )
    ebay.on("GET", OFFERS, _offers)
    trading.queue(
        "GetMyeBaySelling",
        _selling_page(
            _item("110551234567", "LAMP", 10, 3) + _item("110557777777", "MUG-RED", 7, 0), 2
        ),
        _selling_page(
            _varied("110559876543", [("TEE-M", 5, 1), ("TEE-L", 2, 2)])
            + _item("110550000009", None, 1, 0, control="false"),
            2,
        ),
    )
    connector = connect(ebay, trading)
    listings = {x.listing_ref: x for x in await connector.list_listings()}
    assert {ref: (x.sku, x.quantity) for ref, x in listings.items()} == {
        "inventory:MUG-RED": ("MUG-RED", 7),
        "inventory:BOWL": ("BOWL", 0),
        "trading:110551234567": ("LAMP", 7),  # Quantity 10 minus 3 sold
        "trading:110559876543:TEE-M": ("TEE-M", 4),
        "trading:110559876543:TEE-L": ("TEE-L", 0),
        "trading:110550000009": (None, 1),
    }  # the Inventory-API listing 110557777777 is not listed again as a Trading one
    assert listings["inventory:MUG-RED"].extra["offer_ids"] == ["5005317010"]  # EBAY_US only
    assert listings["inventory:BOWL"].extra["offer_ids"] == []
    assert listings["trading:110559876543:TEE-M"].extra["stock_api"] == "trading"
    # A listing that ends at 0 (out-of-stock control off) is said in the channel's status.
    assert connector.status().to_json()["listings_ending_at_zero"] == ["trading:110550000009"]
    pages = [root.findtext(".//{*}PageNumber") for root in trading.of("GetMyeBaySelling")]
    assert pages == ["1", "2"]
    offers_asked = [dict(r.url.params) for r in ebay.calls("GET", OFFERS)]
    assert offers_asked[0] == {"sku": "MUG-RED", "marketplace_id": "EBAY_US"}
    await connector.aclose()


async def test_read_stock_asks_each_world_for_its_listings() -> None:
    ebay, trading = FakeEbay(), FakeTrading()
    ebay.on(
        "POST",
        BULK_GET,
        {
            "responses": [
                {
                    "statusCode": 200,
                    "sku": "MUG-RED",
                    "inventoryItem": {
                        "sku": "MUG-RED",
                        "availability": {"shipToLocationAvailability": {"quantity": 6}},
                    },
                },
                {"statusCode": 404, "sku": "GONE", "errors": [{"errorId": 25702}]},
            ]
        },
    )
    trading.queue(
        "GetMyeBaySelling",
        _selling_page(_item("110551234567", "LAMP", 10, 3), 3),
        _selling_page(_varied("110559876543", [("TEE-M", 5, 1)]), 3),
        _selling_page("", 3),
    )
    connector = connect(ebay, trading)
    shown = await connector.read_stock(
        ["inventory:MUG-RED", "inventory:GONE", "trading:110559876543:TEE-M", "trading:1105512345"]
    )
    assert shown == {"inventory:MUG-RED": 6, "trading:110559876543:TEE-M": 4}
    (bulk,) = ebay.calls("POST", BULK_GET)
    assert json_of(bulk) == {"requests": [{"sku": "GONE"}, {"sku": "MUG-RED"}]}
    assert len(trading.of("GetMyeBaySelling")) == 3  # an unknown item keeps it reading to the end
    await connector.aclose()
