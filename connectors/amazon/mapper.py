"""Pure functions from Amazon's JSON (Orders API 2026-01-01, Listings Items) to canonical values.

An order maps as the Orders API 2026-01-01 model defines it (orders_2026-01-01.json):
- the status is `fulfillment.fulfillmentStatus`; Pending orders have no prices yet and are still
  reserved (the buyer committed), so money is optional and the currency falls back to the
  marketplace's;
- money is Decimal from Amazon's decimal strings: `proceeds.grandTotal`, each item's
  `product.price.unitPrice`;
- lines are keyed by `orderItemId` and counted by `product.sellerSku`; an item without a seller
  SKU holds nothing of ours and is left out;
- orders Amazon fulfils (FBA, `fulfilledBy: AMAZON`) are recorded but reserve nothing;
- buyer data goes only where the store keeps PII (ship_to, buyer_ref) and is never quoted in an
  error: readers raise KeyError or InvalidValueError naming the field, not its value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.amazon.const import (
    AMAZON_FULFILLED,
    FULFILLMENT_STATUSES,
    MARKETPLACE_CURRENCIES,
    MERCHANT_CHANNEL_CODE,
    SHIPPED_PACKAGE_STATUSES,
)
from connectors.base import (
    Address,
    ChannelListing,
    ChannelShipment,
    InvalidValueError,
    Money,
    Order,
    OrderLine,
    OrderStatus,
    RawPayload,
    ShipmentLine,
)

BUYER_REF_MAX = 128  # the store's buyer_ref column


# Readers shared with mapper_v0 -------------------------------------------------------------------


def read_time(value: object, name: str) -> datetime:
    """An ISO 8601 time with a zone ("...Z" as Amazon sends it)."""
    if not isinstance(value, str):
        raise InvalidValueError(f"{name} must be an ISO 8601 string")
    try:
        when = datetime.fromisoformat(value)
    except ValueError as err:
        raise InvalidValueError(f"{name} is not an ISO 8601 time") from err
    if when.tzinfo is None:
        raise InvalidValueError(f"{name} has no time zone")
    return when


def read_optional_time(value: object, name: str) -> datetime | None:
    """`read_time`, or None when absent or empty."""
    return None if value in (None, "") else read_time(value, name)


def read_count(value: object, name: str) -> int:
    """A whole number of units, >= 0."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidValueError(f"{name} must be an integer >= 0")
    return value


def read_amount(value: object, name: str) -> Decimal:
    """A decimal string (or integer) as Decimal; a float would already have lost cents."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InvalidValueError(f"{name} must be a decimal string")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as err:
        raise InvalidValueError(f"{name} is not a number") from err
    if not amount.is_finite():
        raise InvalidValueError(f"{name} is not a finite number")
    return amount


def read_money(
    money: object, name: str, *, amount_key: str = "amount", currency_key: str = "currencyCode"
) -> Money | None:
    """Amazon's Money object ({amount, currencyCode}; v0: {Amount, CurrencyCode}), or None."""
    if not isinstance(money, Mapping):
        return None
    currency = money.get(currency_key)
    if not isinstance(currency, str):
        raise InvalidValueError(f"{name} has no currency code")
    return Money(read_amount(money.get(amount_key), name), currency)


def text(value: object) -> str | None:
    """A non-empty string, or None."""
    return value if isinstance(value, str) and value.strip() else None


def joined(*parts: object) -> str | None:
    """The non-empty parts joined by ", " (address lines 2 and 3 share one field)."""
    found = [p for p in (text(part) for part in parts) if p]
    return ", ".join(found) if found else None


def buyer_ref(value: object) -> str | None:
    """The stand-in stored for an Amazon buyer: a hash of their (relay) e-mail, never the
    address itself, so the store can tell a returning buyer without holding who they are."""
    found = text(value)
    if not found:
        return None
    digest = hashlib.sha256(f"amazon-buyer:{found.strip().lower()}".encode()).hexdigest()
    return f"amazon:{digest}"[:BUYER_REF_MAX]


def fallback_currency(marketplace_id: object, order_id: str) -> str:
    """The marketplace's currency, for an order that carries no money yet."""
    currency = MARKETPLACE_CURRENCIES.get(str(marketplace_id))
    if currency is None:
        raise InvalidValueError(
            f"order {order_id}: no money and an unknown marketplace, so no currency"
        )
    return currency


# Orders API 2026-01-01 ---------------------------------------------------------------------------


def _status(order: Mapping[str, Any]) -> OrderStatus:
    fulfillment = order.get("fulfillment")
    value = fulfillment.get("fulfillmentStatus") if isinstance(fulfillment, Mapping) else None
    if value is None:
        raise InvalidValueError(
            "fulfillment.fulfillmentStatus is missing (includedData FULFILLMENT)"
        )
    status = FULFILLMENT_STATUSES.get(str(value))
    if status is None:
        raise InvalidValueError(f"fulfillment.fulfillmentStatus {str(value)[:40]!r} is unknown")
    return status


def is_amazon_fulfilled(order: Mapping[str, Any]) -> bool:
    """True for orders Amazon ships from its own stock (FBA)."""
    fulfillment = order.get("fulfillment")
    fulfilled_by = fulfillment.get("fulfilledBy") if isinstance(fulfillment, Mapping) else None
    return str(fulfilled_by) in AMAZON_FULFILLED


def _currency(order: Mapping[str, Any], order_id: str) -> str:
    proceeds = order.get("proceeds")
    total = proceeds.get("grandTotal") if isinstance(proceeds, Mapping) else None
    if isinstance(total, Mapping) and isinstance(total.get("currencyCode"), str):
        return str(total["currencyCode"])
    for item in order.get("orderItems") or ():
        price = ((item.get("product") or {}).get("price") or {}).get("unitPrice")
        if isinstance(price, Mapping) and isinstance(price.get("currencyCode"), str):
            return str(price["currencyCode"])
    channel = order.get("salesChannel")
    marketplace = channel.get("marketplaceId") if isinstance(channel, Mapping) else None
    return fallback_currency(marketplace, order_id)


def _line(item: Mapping[str, Any], status: OrderStatus, currency: str) -> OrderLine | None:
    item_id = str(item["orderItemId"])
    product = item["product"]
    sku = text(product.get("sellerSku"))
    if sku is None:
        return None
    name = f"item {item_id}"
    quantity = read_count(item["quantityOrdered"], f"{name} quantityOrdered")
    found = item.get("fulfillment")
    fulfillment: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    fulfilled = fulfillment.get("quantityFulfilled")
    if fulfilled is not None:
        shipped = min(read_count(fulfilled, f"{name} quantityFulfilled"), quantity)
    else:
        shipped = quantity if status is OrderStatus.SHIPPED else 0
    cancelled = 0
    unfulfilled = fulfillment.get("quantityUnfulfilled")
    if unfulfilled is not None:
        # Units neither shipped nor still to ship were taken off the order.
        cancelled = max(
            0, quantity - shipped - read_count(unfulfilled, f"{name} quantityUnfulfilled")
        )
    cancellation = item.get("cancellation")
    if isinstance(cancellation, Mapping) and cancellation.get("cancellationExecution"):
        cancelled = quantity - shipped  # cancelled: nothing more of it ships
    price = read_money((product.get("price") or {}).get("unitPrice"), f"{name} unitPrice")
    if price is not None and price.currency != currency:
        raise InvalidValueError(f"{name}: unit price is not in the order's currency")
    asin = text(product.get("asin"))
    return OrderLine(
        external_line_id=item_id,
        sku=sku,
        quantity=quantity,
        quantity_cancelled=cancelled,
        quantity_shipped=shipped,
        unit_price=price,
        extra={"asin": asin} if asin else {},
    )


def _address(recipient: object) -> Address | None:
    address = recipient.get("deliveryAddress") if isinstance(recipient, Mapping) else None
    if not isinstance(address, Mapping):
        return None
    return Address(
        name=text(address.get("name")),
        line1=text(address.get("addressLine1")),
        line2=joined(address.get("addressLine2"), address.get("addressLine3")),
        city=text(address.get("city")),
        region=text(address.get("stateOrRegion")),
        postal_code=text(address.get("postalCode")),
        country_code=text(address.get("countryCode")),
        phone=text(address.get("phone")),
    )


def _shipments(packages: object, fallback: datetime) -> tuple[ChannelShipment, ...]:
    shipments = []
    for package in packages if isinstance(packages, Sequence) else ():
        status = package.get("packageStatus")
        state = status.get("status") if isinstance(status, Mapping) else None
        if state is not None and str(state) not in SHIPPED_PACKAGE_STATUSES:
            continue
        reference = str(package["packageReferenceId"])
        lines = tuple(
            ShipmentLine(str(part["orderItemId"]), read_count(part["quantity"], "package quantity"))
            for part in package.get("packageItems") or ()
            if part.get("quantity")
        )
        if not lines:
            continue
        shipped_at = read_optional_time(package.get("shipTime"), "package shipTime")
        created_at = read_optional_time(package.get("createdTime"), "package createdTime")
        shipments.append(
            ChannelShipment(
                external_id=reference,
                lines=lines,
                shipped_at=shipped_at or created_at or fallback,
                carrier=text(package.get("carrier")),
                tracking_number=text(package.get("trackingNumber")),
            )
        )
    return tuple(shipments)


def order_from_api(order: RawPayload) -> Order:
    """A canonical order from an Orders API 2026-01-01 `Order` (searchOrders, getOrder)."""
    order_id = text(order["orderId"])
    if order_id is None:
        raise InvalidValueError("orderId is empty")
    status = _status(order)
    currency = _currency(order, order_id)
    proceeds = order.get("proceeds")
    total = read_money(
        proceeds.get("grandTotal") if isinstance(proceeds, Mapping) else None, "grandTotal"
    )
    lines = [
        line
        for line in (_line(item, status, currency) for item in order["orderItems"])
        if line is not None
    ]
    updated_at = read_time(order["lastUpdatedTime"], "lastUpdatedTime")
    buyer = order.get("buyer")
    return Order(
        external_id=order_id,
        number=order_id,
        status=status,
        currency=currency,
        updated_at=updated_at,
        created_at=read_optional_time(order.get("createdTime"), "createdTime"),
        lines=lines,
        total=total,
        ship_to=_address(order.get("recipient")),
        buyer_ref=buyer_ref(buyer.get("buyerEmail")) if isinstance(buyer, Mapping) else None,
        is_reserving=not is_amazon_fulfilled(order),
        shipments=_shipments(order.get("packages"), updated_at),
    )


def orders_of_page(body: RawPayload) -> tuple[list[RawPayload], str | None]:
    """The orders of a searchOrders answer and its next page token (None on the last page)."""
    orders = body["orders"]
    if not isinstance(orders, list):
        raise TypeError("orders is not a list")
    pagination = body.get("pagination")
    token = pagination.get("nextToken") if isinstance(pagination, Mapping) else None
    return orders, text(token)


# Listings Items ----------------------------------------------------------------------------------


def merchant_quantity(item: RawPayload) -> int | None:
    """The merchant-fulfilled (DEFAULT) quantity of a listings item, None if it has none (FBA)."""
    for entry in item.get("fulfillmentAvailability") or ():
        if (
            isinstance(entry, Mapping)
            and entry.get("fulfillmentChannelCode") == MERCHANT_CHANNEL_CODE
        ):
            quantity = entry.get("quantity")
            return quantity if isinstance(quantity, int) and not isinstance(quantity, bool) else 0
    return None


def listing_from_item(item: RawPayload) -> ChannelListing | None:
    """A merchant-fulfilled listing of searchListingsItems; None for one Amazon fulfils (FBA):
    its stock is Amazon's, and setting DEFAULT on it would turn it merchant-fulfilled."""
    sku = text(item.get("sku"))
    quantity = merchant_quantity(item)
    if sku is None or quantity is None:
        return None
    asins = [
        str(summary["asin"])
        for summary in item.get("summaries") or ()
        if isinstance(summary, Mapping) and summary.get("asin")
    ]
    return ChannelListing(
        listing_ref=sku, sku=sku, quantity=quantity, extra={"asin": asins[0]} if asins else {}
    )
