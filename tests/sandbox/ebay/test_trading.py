"""The Trading API: XML in eBay's shapes, ReviseInventoryStatus with its 4-item limit and its
per-item outcomes, the daily revision cap, GetOrders, CompleteSale and the listing reads."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.sandbox.ebay.conftest import NS, TRADING_HEADERS, Account

pytestmark = pytest.mark.anyio


def parse(text: str) -> ET.Element:
    return ET.fromstring(text)  # noqa: S314 - our own sandbox's answer


def errors(root: ET.Element) -> list[tuple[str, str, list[str]]]:
    """(code, severity, parameters) of each Errors entry."""
    return [
        (
            e.findtext(f"{NS}ErrorCode") or "",
            e.findtext(f"{NS}SeverityCode") or "",
            [v.text or "" for v in e.iter(f"{NS}Value")],
        )
        for e in root.findall(f"{NS}Errors")
    ]


def statuses(*entries: tuple[str, str, int]) -> str:
    """InventoryStatus containers from (tag, id, quantity)."""
    return "".join(
        f"<InventoryStatus><{tag}>{ref}</{tag}><Quantity>{n}</Quantity></InventoryStatus>"
        for tag, ref, n in entries
    )


async def test_revise_inventory_status_sets_what_buyers_can_buy(account: Account) -> None:
    ids = await account.seed(
        {"sku": "A", "quantity": 5},
        {"sku": "SHIRT-S", "quantity": 1, "group": "SHIRT"},
        {"sku": "SHIRT-M", "quantity": 1, "group": "SHIRT"},
    )
    inner = statuses(("ItemID", ids["A"]["item_id"], 8)) + (
        f"<InventoryStatus><ItemID>{ids['SHIRT-M']['item_id']}</ItemID><SKU>SHIRT-M</SKU>"
        "<Quantity>4</Quantity></InventoryStatus>"
    )
    response = await account.trading("ReviseInventoryStatus", inner)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    root = parse(response.text)
    assert root.tag == f"{NS}ReviseInventoryStatusResponse"
    assert root.findtext(f"{NS}Ack") == "Success"
    assert root.findtext(f"{NS}Timestamp") == "2026-05-01T12:00:00.000Z"
    shown = [
        (s.findtext(f"{NS}ItemID"), s.findtext(f"{NS}SKU"), s.findtext(f"{NS}Quantity"))
        for s in root.findall(f"{NS}InventoryStatus")
    ]
    assert shown == [
        (ids["A"]["item_id"], "A", "8"),
        (ids["SHIRT-M"]["item_id"], "SHIRT-M", "4"),
    ]
    assert len(root.findall(f"{NS}Fees")) == 2
    assert await account.control("GET", "/inventory") == {"A": 8, "SHIRT-M": 4, "SHIRT-S": 1}


async def test_more_than_four_items_fail_the_whole_call(account: Account) -> None:
    await account.seed(*({"sku": f"S{i}", "quantity": 1} for i in range(5)))
    response = await account.trading(
        "ReviseInventoryStatus", statuses(*(("SKU", f"S{i}", 9) for i in range(5)))
    )
    root = parse(response.text)
    assert root.findtext(f"{NS}Ack") == "Failure"
    assert errors(root)[0][1] == "Error"
    assert set((await account.control("GET", "/inventory")).values()) == {1}  # nothing applied


async def test_each_item_is_refused_on_its_own_naming_it(account: Account) -> None:
    ids = await account.seed(
        {"sku": "T", "quantity": 1},
        {"sku": "INV", "quantity": 1, "world": "inventory"},
        {"sku": "SAME", "quantity": 3},
    )
    inner = statuses(
        ("SKU", "T", 2), ("SKU", "INV", 2), ("ItemID", "123456789", 2), ("SKU", "SAME", 3)
    )
    root = parse((await account.trading("ReviseInventoryStatus", inner)).text)
    assert root.findtext(f"{NS}Ack") == "PartialFailure"
    found = errors(root)
    assert ("21919474", "Error", [ids["INV"]["item_id"], "INV"]) in found  # Inventory-API listing
    assert ("17", "Error", ["123456789"]) in found  # unknown item
    assert ("21917091", "Warning", [ids["SAME"]["item_id"], "SAME"]) in found  # redundant
    inventory = await account.control("GET", "/inventory")
    assert inventory == {"INV": 1, "SAME": 3, "T": 2}
    revisions = (await account.control("GET", "/quotas"))["revisions"]
    assert revisions == {ids["T"]["item_id"]: 1}  # the redundant revision is not counted


async def test_a_listing_is_revised_250_times_a_day_then_refused_until_midnight(
    account: Account,
) -> None:
    ids = await account.seed({"sku": "A", "quantity": 0}, {"sku": "B", "quantity": 0})
    item = ids["A"]["item_id"]
    await account.control("POST", "/quotas", {"revisions": {item: 249}})
    token = await account.token()
    ok = parse(
        (
            await account.trading("ReviseInventoryStatus", statuses(("SKU", "A", 1)), token=token)
        ).text
    )
    assert ok.findtext(f"{NS}Ack") == "Success"
    refused = parse(
        (
            await account.trading(
                "ReviseInventoryStatus", statuses(("SKU", "A", 2), ("SKU", "B", 2)), token=token
            )
        ).text
    )
    assert refused.findtext(f"{NS}Ack") == "PartialFailure"
    assert [(code, params) for code, _, params in errors(refused)] == [("21919186", [item, "A"])]
    assert await account.control("GET", "/inventory") == {"A": 1, "B": 2}
    account.clock.advance(12 * 3600)  # past midnight UTC
    again = parse((await account.trading("ReviseInventoryStatus", statuses(("SKU", "A", 2)))).text)
    assert again.findtext(f"{NS}Ack") == "Success"


async def test_a_variation_must_be_named_by_its_sku(account: Account) -> None:
    ids = await account.seed(
        {"sku": "S", "quantity": 1, "group": "G"}, {"sku": "M", "quantity": 1, "group": "G"}
    )
    root = parse(
        (
            await account.trading(
                "ReviseInventoryStatus", statuses(("ItemID", ids["S"]["item_id"], 5))
            )
        ).text
    )
    assert root.findtext(f"{NS}Ack") == "Failure"
    assert await account.control("GET", "/inventory") == {"M": 1, "S": 1}


async def test_a_listing_without_out_of_stock_control_ends_at_zero(account: Account) -> None:
    await account.seed({"sku": "A", "quantity": 2, "out_of_stock_control": False})
    await account.trading("ReviseInventoryStatus", statuses(("SKU", "A", 0)))
    root = parse((await account.trading("ReviseInventoryStatus", statuses(("SKU", "A", 3)))).text)
    assert root.findtext(f"{NS}Ack") == "Failure"
    assert errors(root)[0][0] == "291"
    assert (await account.control("GET", "/listings"))["A"]["ended"] is True


async def test_the_user_token_goes_in_the_iaf_header(account: Account) -> None:
    body = (
        '<?xml version="1.0" encoding="utf-8"?><GetOrdersRequest '
        'xmlns="urn:ebay:apis:eBLBaseComponents"><RequesterCredentials><eBayAuthToken>'
        f"{await account.token()}</eBayAuthToken></RequesterCredentials>"
        "<NumberOfDays>1</NumberOfDays></GetOrdersRequest>"
    )
    headers = {**TRADING_HEADERS, "X-EBAY-API-CALL-NAME": "GetOrders"}
    root = parse((await account.http.post("/ws/api.dll", content=body, headers=headers)).text)
    assert root.findtext(f"{NS}Ack") == "Failure" and errors(root)[0][0] == "931"
    assert (await account.control("GET", "/calls"))["calls"] == {"token": 1}


@pytest.mark.parametrize(
    ("headers", "body", "code"),
    [
        ({"X-EBAY-API-CALL-NAME": "AddItem"}, "<AddItemRequest/>", "2"),
        (
            {"X-EBAY-API-CALL-NAME": "GetOrders", "X-EBAY-API-SITEID": ""},
            "<GetOrdersRequest/>",
            "10009",
        ),
        ({"X-EBAY-API-CALL-NAME": "GetOrders"}, "<GetItemRequest/>", "10009"),
        ({"X-EBAY-API-CALL-NAME": "GetOrders"}, "<GetOrdersRequest>", "10009"),
        (
            {"X-EBAY-API-CALL-NAME": "GetOrders"},
            '<!DOCTYPE x [<!ENTITY a "b">]><GetOrdersRequest>&a;</GetOrdersRequest>',
            "10009",
        ),
    ],
)
async def test_malformed_calls_fail_with_an_error(
    account: Account, headers: dict[str, str], body: str, code: str
) -> None:
    response = await account.http.post(
        "/ws/api.dll",
        content=body,
        headers={**TRADING_HEADERS, "X-EBAY-API-IAF-TOKEN": await account.token(), **headers},
    )
    root = parse(response.text)
    assert root.findtext(f"{NS}Ack") == "Failure" and errors(root)[0][0] == code


async def test_get_orders_pages_through_the_orders_in_xml(account: Account) -> None:
    await account.seed({"sku": "A", "quantity": 10, "price": "4.00"})
    placed = [(await account.order(A=1))["order_id"] for _ in range(3)]
    inner = (
        "<CreateTimeFrom>2026-05-01T00:00:00.000Z</CreateTimeFrom>"
        "<Pagination><EntriesPerPage>2</EntriesPerPage><PageNumber>2</PageNumber></Pagination>"
    )
    root = parse((await account.trading("GetOrders", inner)).text)
    assert root.findtext(f"{NS}Ack") == "Success"
    assert root.findtext(f"{NS}PaginationResult/{NS}TotalNumberOfEntries") == "3"
    assert root.findtext(f"{NS}PaginationResult/{NS}TotalNumberOfPages") == "2"
    assert root.findtext(f"{NS}HasMoreOrders") == "false"
    (order,) = root.findall(f"{NS}OrderArray/{NS}Order")
    assert order.findtext(f"{NS}OrderID") == placed[2]
    assert order.find(f"{NS}Total").attrib == {"currencyID": "USD"}  # type: ignore[union-attr]
    assert order.findtext(f"{NS}Total") == "4.00"
    transaction = order.find(f"{NS}TransactionArray/{NS}Transaction")
    assert transaction is not None
    assert transaction.findtext(f"{NS}Item/{NS}SKU") == "A"
    assert transaction.findtext(f"{NS}QuantityPurchased") == "1"
    assert order.findtext(f"{NS}ShippingAddress/{NS}CityName") == "Springfield"


async def test_complete_sale_ships_the_order_with_tracking(account: Account) -> None:
    await account.seed({"sku": "A", "quantity": 10})
    order_id = (await account.order(A=2))["order_id"]
    inner = (
        f"<OrderID>{order_id}</OrderID><Shipped>true</Shipped><Shipment>"
        "<ShipmentTrackingDetails><ShippingCarrierUsed>USPS</ShippingCarrierUsed>"
        "<ShipmentTrackingNumber>9400111</ShipmentTrackingNumber></ShipmentTrackingDetails>"
        "<ShippedTime>2026-05-01T14:00:00.000Z</ShippedTime></Shipment>"
    )
    for _ in range(2):  # the same tracking again adds nothing
        root = parse((await account.trading("CompleteSale", inner)).text)
        assert root.findtext(f"{NS}Ack") == "Success"
    (package,) = (await account.control("GET", "/fulfillments"))["fulfillments"]
    assert (package["carrier"], package["tracking"], package["source"]) == (
        "USPS",
        "9400111",
        "trading",
    )
    assert package["shipped_date"] == "2026-05-01T14:00:00.000Z"
    order = (await account.rest("GET", f"/sell/fulfillment/v1/order/{order_id}")).json()
    assert order["orderFulfillmentStatus"] == "FULFILLED"
    unknown = parse((await account.trading("CompleteSale", "<OrderID>1-2-3</OrderID>")).text)
    assert unknown.findtext(f"{NS}Ack") == "Failure"


async def test_my_ebay_selling_lists_active_listings_with_variations(account: Account) -> None:
    ids = await account.seed(
        {"sku": "A", "quantity": 4},
        {"sku": "S", "quantity": 2, "group": "G"},
        {"sku": "M", "quantity": 3, "group": "G"},
    )
    await account.order(M=1)
    inner = "<ActiveList><Include>true</Include><Pagination><EntriesPerPage>10</EntriesPerPage></Pagination></ActiveList>"
    root = parse((await account.trading("GetMyeBaySelling", inner)).text)
    items = root.findall(f"{NS}ActiveList/{NS}ItemArray/{NS}Item")
    assert [i.findtext(f"{NS}ItemID") for i in items] == [ids["A"]["item_id"], ids["S"]["item_id"]]
    single, grouped = items
    assert single.findtext(f"{NS}SKU") == "A" and single.findtext(f"{NS}QuantityAvailable") == "4"
    variations = {
        v.findtext(f"{NS}SKU"): (
            v.findtext(f"{NS}Quantity"),
            v.findtext(f"{NS}SellingStatus/{NS}QuantitySold"),
        )
        for v in grouped.findall(f"{NS}Variations/{NS}Variation")
    }
    assert variations == {"S": ("2", "0"), "M": ("3", "1")}  # Quantity counts the sold units
    got = parse((await account.trading("GetItem", f"<ItemID>{ids['A']['item_id']}</ItemID>")).text)
    assert got.findtext(f"{NS}Item/{NS}Quantity") == "4"
