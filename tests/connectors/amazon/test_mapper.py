"""The order mapper's rules: statuses, money, lines by seller SKU, FBA, parcels, PII placement."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from connectors.amazon.mapper import buyer_ref, listing_from_item, order_from_api
from connectors.base import InvalidValueError, OrderStatus
from tests.connectors.amazon.fake_amazon import order


def _item(item_id: str, sku: str | None, quantity: int, **fulfillment: Any) -> dict[str, Any]:
    product: dict[str, Any] = {"price": {"unitPrice": {"amount": "9.99", "currencyCode": "USD"}}}
    if sku is not None:
        product["sellerSku"] = sku
    return {
        "orderItemId": item_id,
        "quantityOrdered": quantity,
        "product": product,
        "fulfillment": fulfillment,
    }


@pytest.mark.parametrize(
    ("amazon_status", "status"),
    [
        ("PENDING_AVAILABILITY", OrderStatus.PENDING),
        ("PENDING", OrderStatus.PENDING),
        ("UNSHIPPED", OrderStatus.OPEN),
        ("PARTIALLY_SHIPPED", OrderStatus.PARTIALLY_SHIPPED),
        ("SHIPPED", OrderStatus.SHIPPED),
        ("CANCELLED", OrderStatus.CANCELLED),
        ("UNFULFILLABLE", OrderStatus.CANCELLED),
    ],
)
def test_statuses(amazon_status: str, status: OrderStatus) -> None:
    raw = order(fulfillment={"fulfillmentStatus": amazon_status, "fulfilledBy": "MERCHANT"})
    assert order_from_api(raw).status is status


def test_money_is_decimal_and_never_a_float() -> None:
    mapped = order_from_api(order())
    assert mapped.total is not None and mapped.total.amount == Decimal("30.00")
    assert isinstance(mapped.lines[0].unit_price.amount, Decimal)  # type: ignore[union-attr]
    floaty = order(proceeds={"grandTotal": {"amount": 30.1, "currencyCode": "USD"}})
    with pytest.raises(InvalidValueError, match="grandTotal must be a decimal string"):
        order_from_api(floaty)


def test_lines_count_shipped_and_cancelled_units() -> None:
    cancelled_item = _item("3", "SKU-C", 2, quantityFulfilled=0, quantityUnfulfilled=0)
    cancelled_item["cancellation"] = {"cancellationExecution": {"cancelledBy": "BUYER"}}
    raw = order(
        fulfillment={"fulfillmentStatus": "PARTIALLY_SHIPPED", "fulfilledBy": "MERCHANT"},
        orderItems=[
            _item("1", "SKU-A", 3, quantityFulfilled=1, quantityUnfulfilled=2),
            _item("2", None, 1),  # no seller SKU: nothing of ours
            cancelled_item,
            _item("4", "SKU-D", 4, quantityFulfilled=1, quantityUnfulfilled=1),
        ],
    )
    lines = {line.sku: line for line in order_from_api(raw).lines}
    assert set(lines) == {"SKU-A", "SKU-C", "SKU-D"}
    assert (lines["SKU-A"].quantity_shipped, lines["SKU-A"].quantity_cancelled) == (1, 0)
    assert (lines["SKU-C"].quantity_shipped, lines["SKU-C"].quantity_cancelled) == (0, 2)
    # Neither shipped nor still to ship: taken off the order.
    assert (lines["SKU-D"].quantity_shipped, lines["SKU-D"].quantity_cancelled) == (1, 2)


def test_fba_orders_reserve_nothing() -> None:
    raw = order(fulfillment={"fulfillmentStatus": "UNSHIPPED", "fulfilledBy": "AMAZON"})
    assert order_from_api(raw).is_reserving is False


def test_only_parcels_that_left_are_shipments() -> None:
    def package(reference: str, status: str) -> dict[str, Any]:
        return {
            "packageReferenceId": reference,
            "packageStatus": {"status": status},
            "carrier": "USPS",
            "trackingNumber": f"TRK-{reference}",
            "createdTime": "2026-02-01T13:00:00Z",
            "packageItems": [{"orderItemId": "11111111111111", "quantity": 1}],
        }

    raw = order(packages=[package("1", "PENDING"), package("2", "DELIVERED")])
    (parcel,) = order_from_api(raw).shipments
    assert (parcel.external_id, parcel.tracking_number) == ("2", "TRK-2")
    assert parcel.shipped_at.isoformat() == "2026-02-01T13:00:00+00:00"


def test_buyer_data_goes_only_to_the_pii_fields() -> None:
    raw = order(
        recipient={
            "deliveryAddress": {
                "name": "Jane Buyer",
                "addressLine1": "1 Main St",
                "addressLine2": "Apt 2",
                "addressLine3": "Rear",
                "city": "Springfield",
                "stateOrRegion": "IL",
                "postalCode": "62701",
                "countryCode": "US",
                "phone": "+1 555 0100",
            }
        }
    )
    mapped = order_from_api(raw)
    assert mapped.ship_to is not None
    assert (mapped.ship_to.name, mapped.ship_to.line2, mapped.ship_to.phone) == (
        "Jane Buyer",
        "Apt 2, Rear",
        "+1 555 0100",
    )
    assert (
        mapped.buyer_ref
        == buyer_ref("abc123@marketplace.amazon.com")
        != "abc123@marketplace.amazon.com"
    )
    assert "Jane" not in repr(mapped.ship_to)  # Address hides itself in logs


def test_errors_name_the_field_never_the_buyer() -> None:
    raw = order(createdTime="Jane Buyer, 1 Main St")
    with pytest.raises(InvalidValueError) as raised:
        order_from_api(raw)
    assert "createdTime" in str(raised.value) and "Jane" not in str(raised.value)


def test_an_order_without_money_or_known_marketplace_has_no_currency() -> None:
    raw = order(salesChannel={"channelName": "AMAZON", "marketplaceId": "XUNKNOWN"})
    del raw["proceeds"]
    del raw["orderItems"][0]["product"]["price"]
    with pytest.raises(InvalidValueError, match="no currency"):
        order_from_api(raw)


def test_listings_amazon_fulfils_are_not_ours() -> None:
    mine = listing_from_item(
        {
            "sku": "A",
            "fulfillmentAvailability": [{"fulfillmentChannelCode": "DEFAULT", "quantity": 2}],
        }
    )
    assert mine is not None and (mine.listing_ref, mine.quantity) == ("A", 2)
    fba = {"sku": "B", "fulfillmentAvailability": [{"fulfillmentChannelCode": "AMAZON_EU"}]}
    assert listing_from_item(fba) is None
