"""eBay's order JSON to canonical orders: statuses, money, lines by SKU, parcels, ship-to, and
the buyer never stored by username."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from connectors.base import InvalidValueError, Money, OrderStatus
from connectors.ebay import buyer_ref, order_from_ebay
from connectors.ebay.mapper import matching_fulfillment

ORDER_ID = "12-11487-31055"


def ebay_order(**overrides: Any) -> dict[str, Any]:
    """An order as getOrder answers it (field names and shapes from eBay's Order type)."""
    order: dict[str, Any] = {
        "orderId": ORDER_ID,
        "legacyOrderId": "110551234567-2894561234017",
        "creationDate": "2026-03-04T18:01:02.345Z",
        "lastModifiedDate": "2026-03-04T18:05:06.789Z",
        "orderFulfillmentStatus": "NOT_STARTED",
        "orderPaymentStatus": "PAID",
        "sellerId": "demo_seller",
        "buyer": {
            "username": "jane_buyer_77",
            "taxAddress": {"postalCode": "95125", "countryCode": "US"},
        },
        "pricingSummary": {
            "priceSubtotal": {"value": "30.00", "currency": "USD"},
            "deliveryCost": {"value": "4.99", "currency": "USD"},
            "total": {"value": "34.99", "currency": "USD"},
        },
        "cancelStatus": {"cancelState": "NONE_REQUESTED", "cancelRequests": []},
        "paymentSummary": {"totalDueSeller": {"value": "30.12", "currency": "USD"}},
        "fulfillmentStartInstructions": [
            {
                "fulfillmentInstructionsType": "SHIP_TO",
                "minEstimatedDeliveryDate": "2026-03-08T07:00:00.000Z",
                "shippingStep": {
                    "shipTo": {
                        "fullName": "Jane Buyer",
                        "contactAddress": {
                            "addressLine1": "2145 Hamilton Ave",
                            "addressLine2": "Apt 5",
                            "city": "San Jose",
                            "stateOrProvince": "CA",
                            "postalCode": "95125",
                            "countryCode": "US",
                        },
                        "primaryPhone": {"phoneNumber": "4085551234"},
                        "email": "jane.buyer@example.com",
                    },
                    "shippingCarrierCode": "USPS",
                    "shippingServiceCode": "USPSPriority",
                },
            }
        ],
        "fulfillmentHrefs": [],
        "lineItems": [
            {
                "lineItemId": "10058123456701",
                "legacyItemId": "110551234567",
                "sku": "MUG-RED",
                "title": "Red mug",
                "lineItemCost": {"value": "20.00", "currency": "USD"},
                "quantity": 2,
                "total": {"value": "20.00", "currency": "USD"},
                "lineItemFulfillmentStatus": "NOT_STARTED",
                "legacyVariationId": "",
            },
            {
                "lineItemId": "10058123456702",
                "legacyItemId": "110559876543",
                "legacyVariationId": "420012345678",
                "sku": "TEE-M",
                "lineItemCost": {"value": "10.00", "currency": "USD"},
                "quantity": 1,
                "lineItemFulfillmentStatus": "NOT_STARTED",
            },
            {
                "lineItemId": "10058123456703",
                "legacyItemId": "110551111111",
                "title": "A listing without a custom label",
                "lineItemCost": {"value": "0.00", "currency": "USD"},
                "quantity": 1,
                "lineItemFulfillmentStatus": "NOT_STARTED",
            },
        ],
    }
    order.update(overrides)
    return order


def fulfillment(
    line_units: dict[str, int], tracking: str = "9400111899223197428490"
) -> dict[str, Any]:
    """A shipping fulfilment as getShippingFulfillments answers it."""
    return {
        "fulfillmentId": tracking,
        "shipmentTrackingNumber": tracking,
        "shippingCarrierCode": "USPS",
        "shippedDate": "2026-03-05T15:00:00.000Z",
        "lineItems": [{"lineItemId": k, "quantity": n} for k, n in line_units.items()],
    }


def test_an_open_order_maps_with_decimal_money_skus_and_legacy_ids() -> None:
    order = order_from_ebay(ebay_order())
    assert order.external_id == ORDER_ID and order.number == ORDER_ID
    assert order.status is OrderStatus.OPEN
    assert order.currency == "USD" and order.total == Money(Decimal("34.99"), "USD")
    assert order.updated_at == datetime(2026, 3, 4, 18, 5, 6, 789000, tzinfo=UTC)
    assert order.created_at == datetime(2026, 3, 4, 18, 1, 2, 345000, tzinfo=UTC)
    assert [(x.external_line_id, x.sku, x.quantity) for x in order.lines] == [
        ("10058123456701", "MUG-RED", 2),
        ("10058123456702", "TEE-M", 1),
    ]  # the line without a SKU holds nothing of ours
    mug, tee = order.lines
    assert mug.unit_price == Money(Decimal("10.00"), "USD")
    assert mug.extra == {"legacy_item_id": "110551234567"}
    assert tee.extra == {"legacy_item_id": "110559876543", "legacy_variation_id": "420012345678"}
    assert (mug.quantity_shipped, mug.quantity_cancelled) == (0, 0)


def test_the_ship_to_comes_from_the_fulfilment_instructions() -> None:
    ship_to = order_from_ebay(ebay_order()).ship_to
    assert ship_to is not None
    assert (ship_to.name, ship_to.line1, ship_to.line2) == (
        "Jane Buyer",
        "2145 Hamilton Ave",
        "Apt 5",
    )
    assert (ship_to.city, ship_to.region, ship_to.postal_code) == ("San Jose", "CA", "95125")
    assert (ship_to.country_code, ship_to.phone) == ("US", "4085551234")
    assert "Jane" not in repr(ship_to)
    assert order_from_ebay(ebay_order(fulfillmentStartInstructions=[])).ship_to is None


def test_the_buyer_is_kept_as_a_hash_never_as_the_username() -> None:
    order = order_from_ebay(ebay_order())
    assert order.buyer_ref == buyer_ref("jane_buyer_77")
    assert order.buyer_ref is not None and "jane_buyer_77" not in order.buyer_ref
    # Where eBay sends the immutable user id in the username field, that is what is hashed.
    with_id = order_from_ebay(ebay_order(buyer={"username": "ma8vp1jySJC"}))
    assert with_id.buyer_ref == buyer_ref("ma8vp1jySJC")
    assert order_from_ebay(ebay_order(buyer={})).buyer_ref is None


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({}, OrderStatus.OPEN),
        ({"orderPaymentStatus": "PENDING"}, OrderStatus.PENDING),
        ({"orderPaymentStatus": "FAILED"}, OrderStatus.PENDING),
        ({"orderFulfillmentStatus": "IN_PROGRESS"}, OrderStatus.PARTIALLY_SHIPPED),
        ({"orderFulfillmentStatus": "FULFILLED"}, OrderStatus.SHIPPED),
        ({"cancelStatus": {"cancelState": "CANCELED"}}, OrderStatus.CANCELLED),
        ({"cancelStatus": {"cancelState": "IN_PROGRESS"}}, OrderStatus.OPEN),
        ({"orderPaymentStatus": "FULLY_REFUNDED"}, OrderStatus.CANCELLED),
    ],
)
def test_statuses(changes: dict[str, Any], status: OrderStatus) -> None:
    assert order_from_ebay(ebay_order(**changes)).status is status


def test_a_cancelled_order_cancels_every_unshipped_unit() -> None:
    order = order_from_ebay(ebay_order(cancelStatus={"cancelState": "CANCELED"}))
    assert [(x.quantity_cancelled, x.live_quantity) for x in order.lines] == [(2, 0), (1, 0)]


def test_fulfilled_lines_and_parcels_count_as_shipped() -> None:
    raw = ebay_order(orderFulfillmentStatus="IN_PROGRESS", fulfillmentHrefs=["https://x/1"])
    raw["lineItems"][1]["lineItemFulfillmentStatus"] = "FULFILLED"
    raw["lineItems"][0]["lineItemFulfillmentStatus"] = "IN_PROGRESS"
    parcel = fulfillment({"10058123456701": 1, "10058123456702": 1})
    order = order_from_ebay(raw, [parcel])
    assert [x.quantity_shipped for x in order.lines] == [1, 1]
    assert order.status is OrderStatus.PARTIALLY_SHIPPED
    (shipment,) = order.shipments
    assert shipment.external_id == "9400111899223197428490"
    assert shipment.tracking_number == "9400111899223197428490" and shipment.carrier == "USPS"
    assert shipment.shipped_at == datetime(2026, 3, 5, 15, 0, tzinfo=UTC)
    assert {(x.external_line_id, x.quantity) for x in shipment.lines} == {
        ("10058123456701", 1),
        ("10058123456702", 1),
    }
    # Without the parcels read, an IN_PROGRESS line counts nothing shipped yet.
    assert [x.quantity_shipped for x in order_from_ebay(raw).lines] == [0, 1]


def test_a_unit_price_that_does_not_divide_keeps_four_places() -> None:
    raw = ebay_order()
    raw["lineItems"][0].update(quantity=3, lineItemCost={"value": "10.00", "currency": "USD"})
    (mug, _tee) = order_from_ebay(raw).lines
    assert mug.unit_price == Money(Decimal("3.3333"), "USD")


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda o: o.pop("lastModifiedDate"), KeyError),
        (lambda o: o.update(lastModifiedDate="2026-03-04T18:05:06"), InvalidValueError),
        (lambda o: o["lineItems"][0].update(quantity=-1), InvalidValueError),
        (lambda o: o["pricingSummary"]["total"].update(value=34.99), InvalidValueError),
        (
            lambda o: o["lineItems"][0].update(lineItemCost={"value": "1", "currency": "EUR"}),
            InvalidValueError,
        ),
    ],
)
def test_malformed_orders_are_refused_without_quoting_them(mutate: Any, problem: type) -> None:
    raw = copy.deepcopy(ebay_order())
    mutate(raw)
    with pytest.raises(problem) as caught:
        order_from_ebay(raw)
    assert "Jane" not in str(caught.value) and "Hamilton" not in str(caught.value)


def test_matching_a_package_by_tracking_and_units() -> None:
    parcels = [fulfillment({"10058123456701": 2}, tracking="1Z 999 AA1")]
    assert matching_fulfillment(parcels, "1z999aa1", {"10058123456701": 2}) == "1Z 999 AA1"
    assert matching_fulfillment(parcels, "1Z999AA1", {"10058123456701": 1}) is None
    assert matching_fulfillment(parcels, "OTHER", {"10058123456701": 2}) is None
    assert matching_fulfillment(parcels, "1Z999AA1", {}) == "1Z 999 AA1"
