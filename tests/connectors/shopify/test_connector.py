"""The Shopify connector against answers shaped like the Admin API's: what it sends for each
protocol method, and what it makes of the answers."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from config._context import LoadContext, load_context
from config.channels import ShopifyChannel
from connectors.base import (
    CancelRequest,
    Connector,
    FulfillmentRequest,
    PushOutcome,
    ShipmentLine,
    StockTarget,
)
from connectors.errors import (
    AuthError,
    NotFoundError,
    PermanentError,
    RetryableError,
    UncertainOutcomeError,
)
from connectors.registry import connector_for
from connectors.shopify import ShopifyConnector, ShopifySettings, const
from tests.connectors.shopify.fake_shop import BASE_URL, TOKEN, FakeShop, page
from tests.connectors.shopify.test_mapper import graphql_order

pytestmark = pytest.mark.anyio
LOCATION = "gid://shopify/Location/77"
OTHER_LOCATION = "gid://shopify/Location/78"
SINCE = datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def connect(shop: FakeShop, **settings: Any) -> ShopifyConnector:
    values: dict[str, Any] = {"location_ids": (LOCATION,), **settings}
    return ShopifyConnector(
        "shopify-main",
        ShopifySettings(base_url=BASE_URL, access_token=TOKEN, **values),
        transport=shop.transport(),
        sleep=shop.clock.sleep,
        clock=shop.clock,
    )


def ref(item: int, location: str = LOCATION) -> str:
    return f"gid://shopify/InventoryItem/{item}|{location}"


def test_it_is_a_connector_with_shopifys_capabilities() -> None:
    connector = connect(FakeShop())
    assert isinstance(connector, Connector)
    caps = connector.capabilities
    assert caps.max_stock_batch == 250
    assert caps.supports_compare_and_swap and caps.supports_webhooks
    assert not caps.idempotent_fulfillment  # Shopify does not dedupe fulfillmentCreate
    assert TOKEN not in repr(connector.settings)


async def test_check_connection_reads_the_shop_and_maps_a_refused_token() -> None:
    shop = FakeShop()
    shop.on(
        const.SHOP.name,
        {
            "shop": {
                "name": "Demo",
                "myshopifyDomain": "demo-shop.myshopify.com",
                "currencyCode": "EUR",
            }
        },
    )
    await connect(shop).check_connection()
    refused = FakeShop()
    refused.on(const.SHOP.name, httpx.Response(401, json={"errors": "Invalid API key"}))
    with pytest.raises(AuthError):
        await connect(refused).check_connection()


# Orders in -----------------------------------------------------------------------------------


def _orders_by_id(nodes: dict[str, dict[str, Any]]) -> Any:
    def answer(variables: dict[str, Any]) -> dict[str, Any]:
        return {"order": nodes.get(variables["id"])}

    return answer


async def test_fetch_orders_reads_a_page_of_ids_then_each_order() -> None:
    shop = FakeShop()
    first = graphql_order(id="gid://shopify/Order/1")
    second = graphql_order(id="gid://shopify/Order/2", updatedAt="2026-03-01T11:00:00Z")
    shop.on(
        const.ORDER_IDS.name,
        {
            "orders": page(
                [
                    {"id": "gid://shopify/Order/1", "updatedAt": first["updatedAt"]},
                    {"id": "gid://shopify/Order/2", "updatedAt": second["updatedAt"]},
                ],
                more=True,
                cursor="c2",
            )
        },
    )
    shop.on(const.ORDER.name, _orders_by_id({first["id"]: first, second["id"]: second}))
    result = await connect(shop).fetch_orders(SINCE, None)
    assert [o.external_id for o in result.orders] == [
        "gid://shopify/Order/1",
        "gid://shopify/Order/2",
    ]
    assert result.next_cursor == "c2"
    (variables,) = shop.calls(const.ORDER_IDS.name)
    assert variables == {
        "first": 250,
        "after": None,
        "query": "updated_at:>='2026-03-01T10:00:00Z'",
    }
    assert "sortKey: UPDATED_AT" in const.ORDER_IDS.document


async def test_order_versions_are_the_ids_page_with_each_change_time() -> None:
    shop = FakeShop()
    shop.on(
        const.ORDER_IDS.name,
        {
            "orders": page(
                [
                    {"id": "gid://shopify/Order/1", "updatedAt": "2026-03-01T11:00:00Z"},
                    {
                        "id": "gid://shopify/Order/2",
                        "updatedAt": "2026-03-01T11:00:00Z",
                        "cancelledAt": "2026-03-01T11:00:00Z",
                    },
                ],
                more=True,
                cursor="c2",
            )
        },
    )
    listed = await connect(shop).fetch_order_versions(SINCE, None)
    assert [(v.external_id, v.updated_at.isoformat()) for v in listed.versions] == [
        ("gid://shopify/Order/1", "2026-03-01T11:00:00+00:00"),
        ("gid://shopify/Order/2", "2026-03-01T11:00:00.999000+00:00"),  # as a full read dates it
    ]
    assert listed.next_cursor == "c2"
    assert shop.calls(const.ORDER.name) == []  # no order read in full


async def test_an_ids_page_with_an_unreadable_time_is_a_retryable_answer() -> None:
    shop = FakeShop()
    shop.on(
        const.ORDER_IDS.name,
        {"orders": page([{"id": "gid://shopify/Order/1", "updatedAt": "yesterday"}])},
    )
    with pytest.raises(RetryableError, match="updatedAt"):
        await connect(shop).fetch_order_versions(SINCE, None)


async def test_the_last_page_has_no_cursor_and_the_cursor_is_passed_on() -> None:
    shop = FakeShop()
    shop.on(const.ORDER_IDS.name, {"orders": page([], more=False, cursor="c9")})
    result = await connect(shop).fetch_orders(SINCE, "c2")
    assert result.orders == () and result.next_cursor is None
    assert shop.calls(const.ORDER_IDS.name)[0]["after"] == "c2"


async def test_a_malformed_order_is_left_out_and_logged_without_buyer_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    shop = FakeShop()
    good = graphql_order(id="gid://shopify/Order/1")
    bad = graphql_order(id="gid://shopify/Order/2", updatedAt="not a time")
    gone = "gid://shopify/Order/3"  # deleted between the page and its details
    shop.on(
        const.ORDER_IDS.name,
        {
            "orders": page(
                [
                    {"id": good["id"], "updatedAt": good["updatedAt"]},
                    {"id": bad["id"], "updatedAt": "2026-03-01T11:00:00Z"},
                    {"id": gone, "updatedAt": "2026-03-01T11:00:00Z"},
                ]
            )
        },
    )
    shop.on(const.ORDER.name, _orders_by_id({good["id"]: good, bad["id"]: bad}))
    with caplog.at_level(logging.WARNING):
        result = await connect(shop).fetch_orders(SINCE, None)
    assert [o.external_id for o in result.orders] == [good["id"]]
    assert "gid://shopify/Order/2" in caplog.text and "updatedAt" in caplog.text
    assert "Ada" not in caplog.text and "Canal" not in caplog.text


async def test_fetch_order_unknown_is_not_found() -> None:
    shop = FakeShop()
    shop.on(const.ORDER.name, {"order": None})
    with pytest.raises(NotFoundError):
        await connect(shop).fetch_order("gid://shopify/Order/404")
    assert shop.calls(const.ORDER.name) == [{"id": "gid://shopify/Order/404"}]
    with pytest.raises(NotFoundError):
        await connect(shop).fetch_order("405")  # a bare number is taken as the order's id
    assert shop.calls(const.ORDER.name)[1] == {"id": "gid://shopify/Order/405"}
    with pytest.raises(NotFoundError):
        await connect(shop).fetch_order("AMZ-111-222")  # not a Shopify id: nothing is asked
    assert len(shop.requests) == 2


def _line(n: int) -> dict[str, Any]:
    return {
        "id": f"gid://shopify/LineItem/{n}",
        "sku": f"SKU-{n}",
        "quantity": 1,
        "currentQuantity": 1,
        "originalUnitPriceSet": {"shopMoney": {"amount": "1.00", "currencyCode": "EUR"}},
        "variant": None,
    }


def _parcel(n: int, lines: list[int], *, more: bool = False) -> dict[str, Any]:
    return {
        "id": f"gid://shopify/Fulfillment/{n}",
        "status": "SUCCESS",
        "createdAt": "2026-03-02T00:00:00Z",
        "trackingInfo": [{"company": "UPS", "number": f"1Z{n}", "url": None}],
        "fulfillmentLineItems": page(
            [{"quantity": 1, "lineItem": {"id": f"gid://shopify/LineItem/{x}"}} for x in lines],
            more=more,
            cursor=f"f{n}" if more else None,
        ),
    }


async def test_a_big_order_is_read_to_the_end() -> None:
    """More lines, fulfilments and fulfilment lines than the first query takes: follow-ups."""
    shop = FakeShop()
    order_id = "gid://shopify/Order/9"
    node = graphql_order(
        id=order_id,
        lineItems=page([_line(1), _line(2)], more=True, cursor="l2"),
        fulfillmentsCount={"count": 2},
        fulfillments=[_parcel(1, [1], more=True)],
        displayFulfillmentStatus="PARTIALLY_FULFILLED",
    )
    shop.on(const.ORDER.name, {"order": node})
    shop.queue(
        const.ORDER_LINES.name,
        {"order": {"lineItems": page([_line(3)], more=True, cursor="l3")}},
        {"order": {"lineItems": page([_line(4)])}},
    )
    shop.on(
        const.ORDER_FULFILLMENT_IDS.name,
        {
            "order": {
                "fulfillments": [
                    {"id": "gid://shopify/Fulfillment/1"},
                    {"id": "gid://shopify/Fulfillment/2"},
                ]
            }
        },
    )

    def fulfillment(variables: dict[str, Any]) -> dict[str, Any]:
        if variables["id"].endswith("/1"):
            assert variables["after"] == "f1"
            return {"fulfillment": _parcel(1, [2])}
        return {"fulfillment": _parcel(2, [3])}

    shop.on(const.FULFILLMENT.name, fulfillment)
    order = await connect(shop).fetch_order(order_id)
    assert [x.sku for x in order.lines] == ["SKU-1", "SKU-2", "SKU-3", "SKU-4"]
    assert [x.quantity_shipped for x in order.lines] == [1, 1, 1, 0]
    assert [(s.external_id, len(s.lines)) for s in order.shipments] == [
        ("gid://shopify/Fulfillment/1", 2),
        ("gid://shopify/Fulfillment/2", 1),
    ]
    assert [v["after"] for v in shop.calls(const.ORDER_LINES.name)] == ["l2", "l3"]


# Stock out -----------------------------------------------------------------------------------


def _set_answer(*errors: dict[str, Any]) -> dict[str, Any]:
    return {
        "inventorySetQuantities": {
            "inventoryAdjustmentGroup": None
            if errors
            else {"id": "gid://shopify/InventoryAdjustmentGroup/1"},
            "userErrors": list(errors),
        }
    }


def _stale(index: int) -> dict[str, Any]:
    return {
        "code": "CHANGE_FROM_QUANTITY_STALE",
        "field": ["input", "quantities", str(index), "changeFromQuantity"],
        "message": "The specified compare quantity does not match the current quantity.",
    }


def _levels(quantities: dict[str, int]) -> Any:
    def answer(variables: dict[str, Any]) -> dict[str, Any]:
        nodes = []
        for item in variables["ids"]:
            key = f"{item}|{variables['locationId']}"
            level = None
            if key in quantities:
                level = {"quantities": [{"name": "available", "quantity": quantities[key]}]}
            nodes.append({"id": item, "inventoryLevel": level})
        return {"nodes": nodes}

    return answer


async def test_push_stock_sets_available_with_compare_and_swap_and_a_key() -> None:
    shop = FakeShop()
    shop.on(const.SET_STOCK.name, _set_answer())
    targets = [StockTarget(ref(1), 5, expected=7), StockTarget(ref(2), 0, expected=None)]
    results = await connect(shop).push_stock(targets)
    assert [(r.listing_ref, r.outcome) for r in results] == [
        (ref(1), PushOutcome.APPLIED),
        (ref(2), PushOutcome.APPLIED),
    ]
    (variables,) = shop.calls(const.SET_STOCK.name)
    uuid.UUID(variables["key"])
    assert variables["input"] == {
        "name": "available",
        "reason": "correction",
        "quantities": [
            {
                "inventoryItemId": "gid://shopify/InventoryItem/1",
                "locationId": LOCATION,
                "quantity": 5,
                "changeFromQuantity": 7,
            },
            # 2026-04 wants the field on every entry: an explicit null opts out of the check.
            {
                "inventoryItemId": "gid://shopify/InventoryItem/2",
                "locationId": LOCATION,
                "quantity": 0,
                "changeFromQuantity": None,
            },
        ],
    }


async def test_a_stale_entry_is_a_conflict_with_what_shopify_holds_and_the_rest_lands() -> None:
    shop = FakeShop()
    shop.queue(const.SET_STOCK.name, _set_answer(_stale(1)), _set_answer())
    shop.on(const.STOCK.name, _levels({ref(2): 3}))
    targets = [StockTarget(ref(1), 5, 6), StockTarget(ref(2), 4, 5), StockTarget(ref(3), 9, 9)]
    results = await connect(shop).push_stock(targets)
    assert [(r.outcome, r.actual) for r in results] == [
        (PushOutcome.APPLIED, None),
        (PushOutcome.CONFLICT, 3),
        (PushOutcome.APPLIED, None),
    ]
    first, second = shop.calls(const.SET_STOCK.name)
    assert [q["inventoryItemId"][-1] for q in second["input"]["quantities"]] == ["1", "3"]
    assert first["key"] != second["key"]


async def test_a_stale_entry_already_at_its_target_counts_as_applied() -> None:
    """A shop that applied the rest of a refused batch after all: the resend finds them stale
    at exactly their target, which is what we wanted. A first-round conflict stays a conflict
    even at its target: Shopify sold units we have not seen, and the engine must know."""
    shop = FakeShop()
    shop.queue(const.SET_STOCK.name, _set_answer(_stale(0)), _set_answer(_stale(0)))
    shop.on(const.STOCK.name, _levels({ref(1): 5, ref(2): 4}))
    results = await connect(shop).push_stock([StockTarget(ref(1), 5, 6), StockTarget(ref(2), 4, 5)])
    assert [(r.outcome, r.actual) for r in results] == [
        (PushOutcome.CONFLICT, 5),
        (PushOutcome.APPLIED, None),
    ]


async def test_a_refused_entry_is_rejected_with_shopifys_reason() -> None:
    shop = FakeShop()
    refused = {
        "code": "ITEM_NOT_STOCKED_AT_LOCATION",
        "field": ["input", "quantities", "0", "locationId"],
        "message": "The item is not stocked at the location.",
    }
    shop.queue(const.SET_STOCK.name, _set_answer(refused), _set_answer())
    results = await connect(shop).push_stock([StockTarget(ref(1), 5, 6), StockTarget(ref(2), 4, 5)])
    assert results[0].outcome is PushOutcome.REJECTED
    assert results[0].error is not None and "not stocked" in results[0].error
    assert results[1].outcome is PushOutcome.APPLIED


async def test_an_error_for_the_whole_call_is_permanent() -> None:
    shop = FakeShop()
    shop.on(
        const.SET_STOCK.name,
        _set_answer(
            {
                "code": "INVALID_REASON",
                "field": ["input", "reason"],
                "message": "The reason is invalid.",
            }
        ),
    )
    with pytest.raises(PermanentError, match="reason is invalid"):
        await connect(shop).push_stock([StockTarget(ref(1), 5, 6)])


async def test_push_stock_limits_and_strangers() -> None:
    shop = FakeShop()
    with pytest.raises(PermanentError, match="250"):
        await connect(shop).push_stock([StockTarget(ref(n), 1) for n in range(251)])
    results = await connect(shop).push_stock([StockTarget("SKU-1", 1)])
    assert results[0].outcome is PushOutcome.REJECTED
    assert shop.requests == []  # nothing sent for a listing that is not Shopify's


async def test_read_stock_groups_by_location_and_leaves_out_unknown_items() -> None:
    shop = FakeShop()
    shop.on(const.STOCK.name, _levels({ref(1): 4, ref(2, OTHER_LOCATION): 0}))
    shown = await connect(shop).read_stock([ref(1), ref(2, OTHER_LOCATION), ref(3), "SKU-9"])
    assert shown == {ref(1): 4, ref(2, OTHER_LOCATION): 0}
    assert sorted(v["locationId"] for v in shop.calls(const.STOCK.name)) == [
        LOCATION,
        OTHER_LOCATION,
    ]


async def test_read_stock_chunks_large_reads() -> None:
    shop = FakeShop()
    shop.on(const.STOCK.name, _levels({}))
    await connect(shop).read_stock([ref(n) for n in range(const.READ_STOCK_BATCH + 1)])
    assert [len(v["ids"]) for v in shop.calls(const.STOCK.name)] == [const.READ_STOCK_BATCH, 1]


def _variant(n: int, sku: str | None, level: int | None, *, tracked: bool = True) -> dict[str, Any]:
    return {
        "id": f"gid://shopify/ProductVariant/{n}",
        "sku": sku,
        "inventoryItem": {
            "id": f"gid://shopify/InventoryItem/{n}",
            "tracked": tracked,
            "inventoryLevel": None
            if level is None
            else {"quantities": [{"name": "available", "quantity": level}]},
        },
    }


async def test_list_listings_binds_variants_at_the_mapped_location() -> None:
    shop = FakeShop()
    shop.queue(
        const.VARIANTS.name,
        {
            "productVariants": page(
                [_variant(1, "MUG", 4), _variant(2, None, 1)], more=True, cursor="v2"
            )
        },
        {
            "productVariants": page(
                [
                    _variant(3, "TEE", None),
                    _variant(4, "CAP", 2, tracked=False),
                    _variant(5, "HAT", 0),
                ]
            )
        },
    )
    listings = await connect(shop).list_listings()
    assert [(x.listing_ref, x.sku, x.quantity) for x in listings] == [
        (ref(1), "MUG", 4),
        (ref(2), None, 1),  # a variant without SKU: reported, never bound
        (ref(5), "HAT", 0),
    ]
    assert listings[0].extra == {
        "variant_id": "gid://shopify/ProductVariant/1",
        "inventory_item_id": "gid://shopify/InventoryItem/1",
        "location_id": LOCATION,
    }
    first, second = shop.calls(const.VARIANTS.name)
    assert (first["after"], second["after"], first["locationId"]) == (None, "v2", LOCATION)


async def test_list_listings_needs_exactly_one_shopify_location() -> None:
    with pytest.raises(PermanentError, match="location_ids"):
        await connect(FakeShop(), location_ids=()).list_listings()
    with pytest.raises(PermanentError, match="more than one"):
        await connect(FakeShop(), location_ids=(LOCATION, OTHER_LOCATION)).list_listings()


# Status out ----------------------------------------------------------------------------------

ORDER_ID = "gid://shopify/Order/5001"


def _fulfillment_orders(*orders: dict[str, Any]) -> dict[str, Any]:
    return {"order": {"id": ORDER_ID, "fulfillmentOrders": {"nodes": list(orders)}}}


def _fo(n: int, status: str, location: str, lines: list[tuple[int, int]]) -> dict[str, Any]:
    return {
        "id": f"gid://shopify/FulfillmentOrder/{n}",
        "status": status,
        "assignedLocation": {"location": {"id": location}},
        "lineItems": {
            "pageInfo": {"hasNextPage": False},
            "nodes": [
                {
                    "id": f"gid://shopify/FulfillmentOrderLineItem/{n}{line}",
                    "remainingQuantity": remaining,
                    "lineItem": {"id": f"gid://shopify/LineItem/{line}"},
                }
                for line, remaining in lines
            ],
        },
    }


def _request(*lines: tuple[int, int], tracking: str | None = "JD0001") -> FulfillmentRequest:
    return FulfillmentRequest(
        key="shipment-41",
        order_external_id=ORDER_ID,
        lines=tuple(ShipmentLine(f"gid://shopify/LineItem/{n}", q) for n, q in lines),
        carrier="DHL",
        tracking_number=tracking,
        shipped_at=datetime(2026, 3, 2, tzinfo=UTC),
        tracking_url="https://track.example/JD0001",
    )


async def test_push_fulfillment_ships_the_lines_on_their_open_fulfilment_order() -> None:
    shop = FakeShop()
    shop.on(
        const.FULFILLMENT_ORDERS.name,
        _fulfillment_orders(
            _fo(1, "CLOSED", LOCATION, [(1, 2)]),
            _fo(2, "OPEN", LOCATION, [(1, 2), (2, 1)]),
        ),
    )
    shop.on(
        const.FULFILLMENT_CREATE.name,
        {
            "fulfillmentCreate": {
                "fulfillment": {"id": "gid://shopify/Fulfillment/88", "status": "SUCCESS"},
                "userErrors": [],
            }
        },
    )
    answer = await connect(shop).push_fulfillment(_request((1, 1)))
    assert answer == "gid://shopify/Fulfillment/88"
    (variables,) = shop.calls(const.FULFILLMENT_CREATE.name)
    assert variables["fulfillment"] == {
        "notifyCustomer": True,
        "lineItemsByFulfillmentOrder": [
            {
                "fulfillmentOrderId": "gid://shopify/FulfillmentOrder/2",
                "fulfillmentOrderLineItems": [
                    {"id": "gid://shopify/FulfillmentOrderLineItem/21", "quantity": 1}
                ],
            }
        ],
        "trackingInfo": {
            "company": "DHL",
            "number": "JD0001",
            "url": "https://track.example/JD0001",
        },
    }


async def test_notify_customer_comes_from_the_channel_file() -> None:
    shop = FakeShop()
    shop.on(const.FULFILLMENT_ORDERS.name, _fulfillment_orders(_fo(2, "OPEN", LOCATION, [(1, 1)])))
    shop.on(
        const.FULFILLMENT_CREATE.name,
        {"fulfillmentCreate": {"fulfillment": {"id": "f"}, "userErrors": []}},
    )
    await connect(shop, notify_customer=False).push_fulfillment(_request((1, 1)))
    assert shop.calls(const.FULFILLMENT_CREATE.name)[0]["fulfillment"]["notifyCustomer"] is False


async def test_push_fulfillment_refusals_are_permanent_and_send_nothing() -> None:
    cases = [
        (_fulfillment_orders(_fo(2, "OPEN", LOCATION, [(1, 1)])), _request((1, 2)), "not open"),
        (_fulfillment_orders(_fo(2, "CLOSED", LOCATION, [(1, 1)])), _request((1, 1)), "not open"),
        (
            _fulfillment_orders(
                _fo(2, "OPEN", LOCATION, [(1, 1)]), _fo(3, "OPEN", OTHER_LOCATION, [(2, 1)])
            ),
            _request((1, 1), (2, 1)),
            "more than one location",
        ),
    ]
    for answer, request, words in cases:
        shop = FakeShop()
        shop.on(const.FULFILLMENT_ORDERS.name, answer)
        with pytest.raises(PermanentError, match=words):
            await connect(shop).push_fulfillment(request)
        assert shop.calls(const.FULFILLMENT_CREATE.name) == []
    shop = FakeShop()
    shop.on(const.FULFILLMENT_ORDERS.name, {"order": None})
    with pytest.raises(NotFoundError):
        await connect(shop).push_fulfillment(_request((1, 1)))


async def test_push_fulfillment_user_errors_and_unclear_outcomes() -> None:
    shop = FakeShop()
    shop.on(const.FULFILLMENT_ORDERS.name, _fulfillment_orders(_fo(2, "OPEN", LOCATION, [(1, 1)])))
    shop.on(
        const.FULFILLMENT_CREATE.name,
        {
            "fulfillmentCreate": {
                "fulfillment": None,
                "userErrors": [
                    {
                        "field": ["fulfillment"],
                        "message": "Invalid fulfillment order line item quantity requested.",
                    }
                ],
            }
        },
    )
    with pytest.raises(PermanentError, match="quantity requested"):
        await connect(shop).push_fulfillment(_request((1, 1)))
    shop = FakeShop()
    shop.on(const.FULFILLMENT_ORDERS.name, _fulfillment_orders(_fo(2, "OPEN", LOCATION, [(1, 1)])))
    shop.on(const.FULFILLMENT_CREATE.name, httpx.Response(502))
    with pytest.raises(UncertainOutcomeError):
        await connect(shop).push_fulfillment(_request((1, 1)))
    assert len(shop.calls(const.FULFILLMENT_CREATE.name)) == 1  # never resent blindly


async def test_find_fulfillment_matches_tracking_and_units() -> None:
    shop = FakeShop()
    node = graphql_order(
        id=ORDER_ID,
        fulfillmentsCount={"count": 2},
        fulfillments=[
            {
                **_parcel(5, [1]),
                "trackingInfo": [{"company": "DHL", "number": "JD0001", "url": None}],
                "status": "CANCELLED",
            },
            {
                **_parcel(6, [1]),
                "trackingInfo": [{"company": "DHL", "number": "JD0001", "url": None}],
                "status": "OPEN",
            },
        ],
    )
    shop.on(const.ORDER.name, {"order": node})
    connector = connect(shop)
    assert await connector.find_fulfillment(_request((1, 1))) == "gid://shopify/Fulfillment/6"
    assert await connector.find_fulfillment(_request((1, 1), tracking="OTHER")) is None
    assert await connector.find_fulfillment(_request((1, 2))) is None


async def test_cancel_order_sends_order_cancel() -> None:
    shop = FakeShop()
    shop.on(
        const.ORDER_CANCEL.name,
        {"orderCancel": {"job": {"id": "gid://shopify/Job/1"}, "orderCancelUserErrors": []}},
    )
    await connect(shop).cancel_order(
        CancelRequest(key="cancel-3", order_external_id=ORDER_ID, reason="oversold")
    )
    (variables,) = shop.calls(const.ORDER_CANCEL.name)
    assert variables == {
        "orderId": ORDER_ID,
        "reason": "INVENTORY",
        "notifyCustomer": True,
        "staffNote": "channel-sync cancel-3",
    }
    await connect(shop).cancel_order(
        CancelRequest(key="c", order_external_id=ORDER_ID, reason="mistake")
    )
    assert shop.calls(const.ORDER_CANCEL.name)[1]["reason"] == "OTHER"


async def test_cancel_order_refusals() -> None:
    shop = FakeShop()
    shop.on(
        const.ORDER_CANCEL.name,
        {
            "orderCancel": {
                "job": None,
                "orderCancelUserErrors": [
                    {
                        "code": "INVALID",
                        "field": ["orderId"],
                        "message": "Cannot cancel a fulfilled order.",
                    }
                ],
            }
        },
    )
    with pytest.raises(PermanentError, match="Cannot cancel a fulfilled order"):
        await connect(shop).cancel_order(CancelRequest(key="c", order_external_id=ORDER_ID))
    partial = CancelRequest(
        key="c", order_external_id=ORDER_ID, lines=(ShipmentLine("gid://shopify/LineItem/1", 1),)
    )
    with pytest.raises(PermanentError, match="whole orders"):
        await connect(shop).cancel_order(partial)
    assert len(shop.calls(const.ORDER_CANCEL.name)) == 1


# Webhook subscriptions -----------------------------------------------------------------------

HOOK_URL = "https://sync.example.com/webhooks/shopify-main"


async def test_ensure_webhooks_creates_only_what_is_missing() -> None:
    shop = FakeShop()
    existing = [
        {"id": "gid://shopify/WebhookSubscription/1", "topic": "ORDERS_CREATE", "uri": HOOK_URL},
        {
            "id": "gid://shopify/WebhookSubscription/2",
            "topic": "ORDERS_UPDATED",
            "uri": "https://elsewhere.example/hook",
        },
    ]
    shop.queue(
        const.WEBHOOKS.name,
        {"webhookSubscriptions": page(existing[:1], more=True, cursor="w1")},
        {"webhookSubscriptions": page(existing[1:])},
    )

    def create(variables: dict[str, Any]) -> dict[str, Any]:
        existing.append(
            {"id": "x", "topic": variables["topic"], "uri": variables["subscription"]["uri"]}
        )
        return {
            "webhookSubscriptionCreate": {"webhookSubscription": existing[-1], "userErrors": []}
        }

    shop.on(const.WEBHOOK_CREATE.name, create)
    connector = connect(shop, webhook_url=HOOK_URL)
    created = await connector.ensure_webhooks()
    assert created == [t for t in const.WEBHOOK_TOPICS if t != "ORDERS_CREATE"]
    assert all(
        v["subscription"] == {"uri": HOOK_URL, "format": "JSON"}
        for v in shop.calls(const.WEBHOOK_CREATE.name)
    )
    shop.on(const.WEBHOOKS.name, lambda _v: {"webhookSubscriptions": page(existing)})
    assert await connector.ensure_webhooks() == []  # a second start creates nothing


async def test_ensure_webhooks_without_a_url_does_nothing() -> None:
    shop = FakeShop()
    assert await connect(shop).ensure_webhooks() == []
    assert shop.requests == []


async def test_ensure_webhooks_refusal_is_permanent() -> None:
    shop = FakeShop()
    shop.on(const.WEBHOOKS.name, {"webhookSubscriptions": page([])})
    shop.on(
        const.WEBHOOK_CREATE.name,
        {
            "webhookSubscriptionCreate": {
                "webhookSubscription": None,
                "userErrors": [
                    {
                        "field": ["webhookSubscription", "callbackUrl"],
                        "message": "Address for this topic has already been taken",
                    }
                ],
            }
        },
    )
    with pytest.raises(PermanentError, match="already been taken"):
        await connect(shop, webhook_url=HOOK_URL).ensure_webhooks()


# Wiring ----------------------------------------------------------------------------------------


def test_the_registry_builds_it_from_a_channel_file(tmp_path: Path) -> None:
    data = {
        "kind": "shopify",
        "name": "shopify-main",
        "shop": "demo-shop.myshopify.com",
        "access_token": "env:SHOP_TOKEN",
        "webhook_secrets": ["env:SHOP_HOOK"],
        "locations": ["main", "annex"],
        "location_ids": {"main": LOCATION, "annex": LOCATION, "unused": OTHER_LOCATION},
        "notify_customer": False,
        "webhook_url": HOOK_URL,
    }
    env = {"SHOP_TOKEN": TOKEN, "SHOP_HOOK": "hook"}
    with load_context(LoadContext(base_dir=tmp_path, env=env)):
        channel = ShopifyChannel.model_validate(data)
        sandbox = ShopifyChannel.model_validate({**data, "api_base_url": "http://127.0.0.1:9001"})
    factory = connector_for("shopify")
    assert factory is not None
    connector = factory(channel)
    assert isinstance(connector, ShopifyConnector)
    assert connector.settings.base_url == "https://demo-shop.myshopify.com"
    assert connector.settings.location_ids == (LOCATION,)
    assert connector.settings.notify_customer is False
    assert connector.settings.webhook_url == HOOK_URL
    assert factory(sandbox).settings.base_url.startswith("http://127.0.0.1:9001")


def test_the_channel_file_refuses_unknown_keys(tmp_path: Path) -> None:
    from pydantic import ValidationError

    data = {
        "kind": "shopify",
        "shop": "demo-shop.myshopify.com",
        "name": "s",
        "access_token": "env:SHOP_TOKEN",
        "webhook_secrets": ["env:SHOP_HOOK"],
        "notify_custmer": False,
    }
    with load_context(LoadContext(base_dir=tmp_path, env={"SHOP_TOKEN": "t", "SHOP_HOOK": "h"})):
        with pytest.raises(ValidationError, match="notify_custmer"):
            ShopifyChannel.model_validate(data)
        assert (
            ShopifyChannel.model_validate(
                {k: v for k, v in data.items() if k != "notify_custmer"}
            ).notify_customer
            is True
        )
