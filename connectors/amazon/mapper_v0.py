"""Orders API v0 shapes (getOrders, getOrder, getOrderItems) to canonical orders.

The connector reads orders through 2026-01-01 (v0 reads are deprecated, gone by 2027-03-27);
this reads the v0 shapes Amazon still answers, and its published examples, the same way, so a
v0 answer and a 2026-01-01 answer of one order are one record. Differences from 2026-01-01:
PascalCase names; `ItemPrice` is the line's total, not a unit price; FBA is
`FulfillmentChannel: AFN`; buyer data comes only with a Restricted Data Token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from connectors.amazon.const import AMAZON_FULFILLED, V0_ORDER_STATUSES
from connectors.amazon.mapper import (
    buyer_ref,
    fallback_currency,
    joined,
    read_count,
    read_money,
    read_optional_time,
    read_time,
    text,
)
from connectors.base import (
    Address,
    InvalidValueError,
    Money,
    Order,
    OrderLine,
    OrderStatus,
    RawPayload,
)


def _money(value: object, name: str) -> Money | None:
    return read_money(value, name, amount_key="Amount", currency_key="CurrencyCode")


def _currency(order: Mapping[str, Any], items: Sequence[RawPayload], order_id: str) -> str:
    total = order.get("OrderTotal")
    if isinstance(total, Mapping) and isinstance(total.get("CurrencyCode"), str):
        return str(total["CurrencyCode"])
    for item in items:
        price = item.get("ItemPrice")
        if isinstance(price, Mapping) and isinstance(price.get("CurrencyCode"), str):
            return str(price["CurrencyCode"])
    return fallback_currency(order.get("MarketplaceId"), order_id)


def _line(item: Mapping[str, Any], status: OrderStatus, currency: str) -> OrderLine | None:
    item_id = str(item["OrderItemId"])
    sku = text(item.get("SellerSKU"))
    if sku is None:
        return None
    name = f"item {item_id}"
    quantity = read_count(item["QuantityOrdered"], f"{name} QuantityOrdered")
    shipped_value = item.get("QuantityShipped")
    if shipped_value is not None:
        shipped = min(read_count(shipped_value, f"{name} QuantityShipped"), quantity)
    else:
        shipped = quantity if status is OrderStatus.SHIPPED else 0
    line_total = _money(item.get("ItemPrice"), f"{name} ItemPrice")
    unit_price = None
    if line_total is not None:
        if line_total.currency != currency:
            raise InvalidValueError(f"{name}: price is not in the order's currency")
        if quantity:
            unit_price = Money(line_total.amount / Decimal(quantity), currency)
    asin = text(item.get("ASIN"))
    return OrderLine(
        external_line_id=item_id,
        sku=sku,
        quantity=quantity,
        quantity_shipped=shipped,
        unit_price=unit_price,
        extra={"asin": asin} if asin else {},
    )


def _address(address: object) -> Address | None:
    if not isinstance(address, Mapping):
        return None
    return Address(
        name=text(address.get("Name")),
        line1=text(address.get("AddressLine1")),
        line2=joined(address.get("AddressLine2"), address.get("AddressLine3")),
        city=text(address.get("City")),
        region=text(address.get("StateOrRegion")),
        postal_code=text(address.get("PostalCode")),
        country_code=text(address.get("CountryCode")),
        phone=text(address.get("Phone")),
    )


def order_from_v0(order: RawPayload, items: Sequence[RawPayload] = ()) -> Order:
    """A canonical order from a v0 `Order` and its `OrderItems` (none: an order without lines,
    as getOrders lists them)."""
    order_id = text(order["AmazonOrderId"])
    if order_id is None:
        raise InvalidValueError("AmazonOrderId is empty")
    status = V0_ORDER_STATUSES.get(str(order["OrderStatus"]))
    if status is None:
        raise InvalidValueError(f"OrderStatus {str(order['OrderStatus'])[:40]!r} is unknown")
    currency = _currency(order, items, order_id)
    lines = [line for line in (_line(item, status, currency) for item in items) if line]
    buyer = order.get("BuyerInfo")
    return Order(
        external_id=order_id,
        number=order_id,
        status=status,
        currency=currency,
        updated_at=read_time(order["LastUpdateDate"], "LastUpdateDate"),
        created_at=read_optional_time(order.get("PurchaseDate"), "PurchaseDate"),
        lines=lines,
        total=_money(order.get("OrderTotal"), "OrderTotal"),
        ship_to=_address(order.get("ShippingAddress")),
        buyer_ref=buyer_ref(buyer.get("BuyerEmail")) if isinstance(buyer, Mapping) else None,
        is_reserving=str(order.get("FulfillmentChannel")) not in AMAZON_FULFILLED,
    )
