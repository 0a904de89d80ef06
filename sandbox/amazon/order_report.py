"""The "All Orders Report by Last Update" flat file as Amazon writes it: UTF-8, tab-separated, a
header line of `COLUMNS`, then one row per order item of the orders last updated in the report's
window and marketplaces, sorted by last-updated-date, then order id (`REPORT_TYPE`).

What the sandbox writes in it:
- Dates are ISO 8601 in UTC with the offset, whole seconds (`2026-11-27T03:20:00+00:00`);
  last-updated-date is the second the Orders API shows as the order's `lastUpdatedTime`.
- order-status in the v0 spelling the sandbox's orders use (`Unshipped`, `Canceled`...);
  item-status in the same spelling, per item (a line fully shipped is `Shipped` while its order is
  still `PartiallyShipped`).
- fulfillment-channel `Merchant` or `Amazon`; sales-channel the marketplace's name (`Amazon.com`),
  else its id.
- No buyer name, e-mail, phone or street: Amazon leaves them out of order reports; the ship city,
  state, postal code and country are in.
- item-price is the line's total (unit price x quantity); the order's shipping price is on its
  first row. A Pending order has no prices yet (empty), as the Orders API shows it.
- An order without items still gets one row, its item columns empty.
- A tab or line break inside a value becomes a space (it would break the row).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal

from sandbox.amazon.model import MARKETPLACES, V0_STATUS, Order, OrderItem
from sandbox.amazon.views import amount

REPORT_TYPE = "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL"
CONTENT_TYPE = "text/tab-separated-values; charset=UTF-8"
COLUMNS = (
    "amazon-order-id",
    "merchant-order-id",
    "purchase-date",
    "last-updated-date",
    "order-status",
    "fulfillment-channel",
    "sales-channel",
    "order-channel",
    "ship-service-level",
    "product-name",
    "sku",
    "asin",
    "item-status",
    "quantity",
    "currency",
    "item-price",
    "item-tax",
    "shipping-price",
    "shipping-tax",
    "gift-wrap-price",
    "gift-wrap-tax",
    "item-promotion-discount",
    "ship-promotion-discount",
    "ship-city",
    "ship-state",
    "ship-postal-code",
    "ship-country",
    "promotion-ids",
    "is-business-order",
    "purchase-order-number",
    "price-designation",
)
FULFILLMENT_CHANNELS = {"MERCHANT": "Merchant", "AMAZON": "Amazon"}
_ZERO = Decimal(0)
_SHIPPING_STATES = ("UNSHIPPED", "PARTIALLY_SHIPPED", "SHIPPED")
_BREAKS = str.maketrans({"\t": " ", "\r": " ", "\n": " "})


def report_time(moment: datetime) -> str:
    """A date as the report writes it: UTC, whole seconds, `+00:00`."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def select_orders(
    orders: Iterable[Order], start: datetime, end: datetime, marketplace_ids: Iterable[str]
) -> list[Order]:
    """The orders last updated within [start, end] in these marketplaces, in report order."""
    markets = frozenset(marketplace_ids)
    chosen = [o for o in orders if start <= o.updated_at <= end and o.marketplace_id in markets]
    return sorted(chosen, key=lambda o: (o.updated_at, o.order_id))


def _item_status(order: Order, item: OrderItem) -> str:
    if order.status not in _SHIPPING_STATES:
        return V0_STATUS[order.status]
    if item.unshipped == 0:
        return V0_STATUS["SHIPPED"]
    return V0_STATUS["PARTIALLY_SHIPPED" if item.shipped else "UNSHIPPED"]


def _order_columns(order: Order) -> dict[str, str]:
    buyer = order.buyer
    return {
        "amazon-order-id": order.order_id,
        "purchase-date": report_time(order.created_at),
        "last-updated-date": report_time(order.updated_at),
        "order-status": V0_STATUS[order.status],
        "fulfillment-channel": FULFILLMENT_CHANNELS[order.fulfilled_by],
        "sales-channel": MARKETPLACES.get(order.marketplace_id, (order.marketplace_id,))[0],
        "ship-service-level": "Standard",
        "currency": order.currency,
        "ship-city": buyer.city or "",
        "ship-state": buyer.state_or_region or "",
        "ship-postal-code": buyer.postal_code or "",
        "ship-country": buyer.country_code or "",
        "is-business-order": "false",
    }


def _item_columns(order: Order, item: OrderItem, shipping: Decimal) -> dict[str, str]:
    shown = {
        "product-name": item.title,
        "sku": item.sku,
        "asin": item.asin,
        "item-status": _item_status(order, item),
        "quantity": str(item.quantity),
    }
    if order.is_pending:
        return shown
    money = {
        "item-price": item.unit_price * item.quantity,
        "item-tax": _ZERO,
        "shipping-price": shipping,
        "shipping-tax": _ZERO,
        "gift-wrap-price": _ZERO,
        "gift-wrap-tax": _ZERO,
        "item-promotion-discount": _ZERO,
        "ship-promotion-discount": _ZERO,
    }
    return shown | {name: amount(value, order.currency) for name, value in money.items()}


def order_rows(order: Order) -> list[dict[str, str]]:
    """The order's rows, column -> value (absent columns are empty)."""
    common = _order_columns(order)
    if not order.items:
        return [common]
    return [
        common | _item_columns(order, item, order.shipping_price if n == 0 else _ZERO)
        for n, item in enumerate(order.items)
    ]


def _line(values: Mapping[str, str]) -> str:
    return "\t".join(values.get(column, "").translate(_BREAKS) for column in COLUMNS)


def render(orders: Iterable[Order]) -> str:
    """The flat file of these orders, in the order given (see `select_orders`)."""
    lines = ["\t".join(COLUMNS)]
    lines.extend(_line(row) for order in orders for row in order_rows(order))
    return "\n".join(lines) + "\n"
