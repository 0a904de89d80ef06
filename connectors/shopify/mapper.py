"""Pure functions between Shopify's JSON and the canonical values.

Two shapes of the same order come in: GraphQL `Order` nodes (polls, reads) and the REST-shaped
JSON of `orders/*` webhooks. Both map to the same canonical order, keyed by GIDs (the webhook's
`admin_graphql_api_id`), so a webhook and a poll of one order are the same record:
- money is the shop's currency (`shopMoney`, `shop_money`), as Decimal; the total is the
  current one (after refunds and edits), as the lines are;
- a line's cancelled units are those Shopify removed (refunds, edits): quantity - currentQuantity;
- a line's shipped units are those in successful fulfilments, which also become the order's
  channel shipments (fulfilments made in Shopify's admin, and ours once pushed);
- a line without a SKU holds nothing of ours (a tip, a custom item) and is left out.

Readers raise on malformed input (KeyError for a missing field, InvalidValueError naming the
field) and never quote the record: it holds buyer names and addresses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.base import (
    Address,
    ChannelShipment,
    InvalidValueError,
    Money,
    Order,
    OrderLine,
    OrderStatus,
    RawPayload,
    ShipmentLine,
)
from connectors.shopify.const import (
    FINANCIAL_STATUSES,
    FULFILLMENT_STATUSES,
    SHIPPED_FULFILLMENT_STATUSES,
)

_GID = "gid://shopify/"
LISTING_SEPARATOR = "|"


def gid(kind: str, value: object) -> str:
    """`value` as a GID of `kind` (a GID already is one; a number becomes one)."""
    text = str(value)
    if text.startswith(_GID):
        return text
    if not text.isdigit():
        raise InvalidValueError(f"{kind} id must be a number or a GID")
    return f"{_GID}{kind}/{text}"


def listing_ref(inventory_item_id: str, location_id: str) -> str:
    """The one string that names an inventory item at a location: our listing ref."""
    return f"{gid('InventoryItem', inventory_item_id)}{LISTING_SEPARATOR}{gid('Location', location_id)}"


def split_listing_ref(ref: str) -> tuple[str, str]:
    """(inventory item GID, location GID) of a listing ref; InvalidValueError if it is not one."""
    item, separator, location = ref.partition(LISTING_SEPARATOR)
    if (
        not separator
        or not item.startswith(f"{_GID}InventoryItem/")
        or not location.startswith(f"{_GID}Location/")
    ):
        raise InvalidValueError(f"listing {ref[:120]!r} is not a Shopify inventory item@location")
    return item, location


def listing_ref_of_inventory_level(payload: RawPayload) -> str:
    """The listing an `inventory_levels/update` webhook is about (a hint to reconcile it)."""
    return listing_ref(str(payload["inventory_item_id"]), str(payload["location_id"]))


def parse_time(value: object, name: str) -> datetime:
    """An aware time from Shopify's ISO 8601 string; InvalidValueError naming `name` else."""
    return _time(value, name)


def _time(value: object, name: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidValueError(f"{name} must be an ISO 8601 string")
    try:
        when = datetime.fromisoformat(value)
    except ValueError as err:
        raise InvalidValueError(f"{name} is not an ISO 8601 time") from err
    if when.tzinfo is None:
        raise InvalidValueError(f"{name} has no time zone")
    return when


def _optional_time(value: object, name: str) -> datetime | None:
    return None if value is None else _time(value, name)


def _int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidValueError(f"{name} must be an integer")
    return value


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _amount(value: object, name: str) -> Decimal:
    if not isinstance(value, str | int) or isinstance(value, bool):
        # Shopify sends money as decimal strings; a float would already have lost cents.
        raise InvalidValueError(f"{name} must be a decimal string")
    try:
        return Decimal(str(value))
    except InvalidOperation as err:
        raise InvalidValueError(f"{name} is not a number") from err


def _shop_money(money_set: object, currency: str, name: str, *, rest: bool) -> Money | None:
    """The shop-currency half of a MoneyBag (`shopMoney`) or REST price set (`shop_money`)."""
    if not isinstance(money_set, Mapping):
        return None
    money = money_set.get("shop_money" if rest else "shopMoney")
    if not isinstance(money, Mapping):
        return None
    code = money.get("currency_code" if rest else "currencyCode")
    if code is not None and code != currency:
        raise InvalidValueError(f"{name} is not in the shop's currency")
    return Money(_amount(money.get("amount"), name), currency)


def _status(
    *, cancelled_at: datetime | None, financial: object, fulfillment: object
) -> OrderStatus:
    if cancelled_at is not None:
        return OrderStatus.CANCELLED
    shipped = FULFILLMENT_STATUSES.get(str(fulfillment).upper()) if fulfillment else None
    if shipped is not None:
        return shipped
    if isinstance(financial, str):
        return FINANCIAL_STATUSES.get(financial.upper(), OrderStatus.OPEN)
    return OrderStatus.OPEN


@dataclass(frozen=True)
class _Parcel:
    external_id: str
    status: str
    created_at: datetime
    units: Counter[str]
    carrier: str | None
    tracking_number: str | None
    tracking_url: str | None


def _shipments(parcels: Sequence[_Parcel]) -> tuple[tuple[ChannelShipment, ...], Counter[str]]:
    """The parcels that left (and the units each line shipped in them)."""
    shipped: Counter[str] = Counter()
    shipments = []
    for parcel in parcels:
        if parcel.status.upper() not in SHIPPED_FULFILLMENT_STATUSES:
            continue
        lines = tuple(ShipmentLine(line, n) for line, n in parcel.units.items() if n > 0)
        if not lines:
            continue
        shipped.update(dict(parcel.units))
        shipments.append(
            ChannelShipment(
                external_id=parcel.external_id,
                lines=lines,
                shipped_at=parcel.created_at,
                carrier=parcel.carrier,
                tracking_number=parcel.tracking_number,
                tracking_url=parcel.tracking_url,
            )
        )
    return tuple(shipments), shipped


def _line(
    *,
    line_id: str,
    sku: str,
    quantity: int,
    current: int,
    shipped: int,
    unit_price: Money | None,
    extra: Mapping[str, str | None],
) -> OrderLine:
    # A unit shipped and then refunded (a return) stays shipped: the ledger consumed it, and
    # whether it goes back on the shelf is the seller's call, not this mapping's.
    shipped = min(max(shipped, 0), quantity)
    cancelled = min(max(quantity - current, 0), quantity - shipped)
    return OrderLine(
        external_line_id=line_id,
        sku=sku,
        quantity=quantity,
        quantity_cancelled=cancelled,
        quantity_shipped=shipped,
        unit_price=unit_price,
        extra={key: value for key, value in extra.items() if value},
    )


def _graphql_parcel(node: Mapping[str, Any]) -> _Parcel:
    external_id = str(node["id"])
    units: Counter[str] = Counter()
    for item in node["fulfillmentLineItems"]["nodes"]:
        units[str(item["lineItem"]["id"])] += _int(
            item.get("quantity") or 0, f"fulfillment {external_id} quantity"
        )
    tracking = (node.get("trackingInfo") or [None])[0]
    tracking = tracking if isinstance(tracking, Mapping) else {}
    return _Parcel(
        external_id=external_id,
        status=str(node["status"]),
        created_at=_time(node["createdAt"], f"fulfillment {external_id} createdAt"),
        units=units,
        carrier=_text(tracking.get("company")),
        tracking_number=_text(tracking.get("number")),
        tracking_url=_text(tracking.get("url")),
    )


def order_from_graphql(node: RawPayload) -> Order:
    """A GraphQL Order node (the connector's `OrderParts`, its connections read to the end)."""
    order_id = str(node["id"])
    currency = node["currencyCode"]
    if not isinstance(currency, str):
        raise InvalidValueError(f"order {order_id}: currencyCode must be a string")
    shipments, shipped = _shipments([_graphql_parcel(f) for f in node.get("fulfillments") or ()])
    lines = []
    for item in node["lineItems"]["nodes"]:
        sku = _text(item.get("sku"))
        if sku is None:
            continue
        line_id = str(item["id"])
        variant = item.get("variant") if isinstance(item.get("variant"), Mapping) else {}
        inventory_item = variant.get("inventoryItem") if variant else None
        lines.append(
            _line(
                line_id=line_id,
                sku=sku,
                quantity=_int(item["quantity"], f"line {line_id} quantity"),
                current=_int(item["currentQuantity"], f"line {line_id} currentQuantity"),
                shipped=shipped[line_id],
                unit_price=_shop_money(
                    item.get("originalUnitPriceSet"), currency, f"line {line_id} price", rest=False
                ),
                extra={
                    "variant_id": _text(variant.get("id")) if variant else None,
                    "inventory_item_id": _text(inventory_item.get("id"))
                    if isinstance(inventory_item, Mapping)
                    else None,
                },
            )
        )
    cancelled_at = _optional_time(node.get("cancelledAt"), "cancelledAt")
    return Order(
        external_id=order_id,
        status=_status(
            cancelled_at=cancelled_at,
            financial=node.get("displayFinancialStatus"),
            fulfillment=node.get("displayFulfillmentStatus"),
        ),
        currency=currency,
        updated_at=version_time(_time(node["updatedAt"], "updatedAt"), cancelled_at),
        lines=tuple(lines),
        number=_text(node.get("name")),
        total=_shop_money(node.get("currentTotalPriceSet"), currency, "total", rest=False),
        created_at=_optional_time(node.get("createdAt"), "createdAt"),
        ship_to=_address(node.get("shippingAddress"), rest=False),
        shipments=shipments,
    )


def _rest_parcel(raw: Mapping[str, Any]) -> _Parcel:
    external_id = gid("Fulfillment", raw.get("admin_graphql_api_id") or raw["id"])
    units: Counter[str] = Counter()
    for item in raw.get("line_items") or ():
        line_id = gid("LineItem", item.get("admin_graphql_api_id") or item["id"])
        units[line_id] += _int(item.get("quantity") or 0, f"fulfillment {external_id} quantity")
    return _Parcel(
        external_id=external_id,
        status=str(raw.get("status") or ""),
        created_at=_time(raw["created_at"], f"fulfillment {external_id} created_at"),
        units=units,
        carrier=_text(raw.get("tracking_company")),
        tracking_number=_text(raw.get("tracking_number")),
        tracking_url=_text(raw.get("tracking_url")),
    )


def shipment_from_webhook(payload: RawPayload) -> ChannelShipment | None:
    """A `fulfillments/*` webhook as a channel shipment (None while it has not left)."""
    shipments, _ = _shipments([_rest_parcel(payload)])
    return shipments[0] if shipments else None


def order_gid_of_fulfillment(payload: RawPayload) -> str:
    """The order a `fulfillments/*` webhook belongs to."""
    return gid("Order", payload["order_id"])


def _rest_removed(raw: Mapping[str, Any]) -> Counter[str]:
    """Units refunded per line (for payloads older than `current_quantity`)."""
    removed: Counter[str] = Counter()
    for refund in raw.get("refunds") or ():
        for item in refund.get("refund_line_items") or ():
            line = item.get("line_item") if isinstance(item.get("line_item"), Mapping) else {}
            key = line.get("admin_graphql_api_id") if line else None
            removed[gid("LineItem", key or item["line_item_id"])] += _int(
                item.get("quantity") or 0, "refund line quantity"
            )
    return removed


def order_from_webhook(payload: RawPayload) -> Order:
    """The REST-shaped order of an `orders/*` webhook (create, updated, cancelled, ...)."""
    order_id = gid("Order", payload.get("admin_graphql_api_id") or payload["id"])
    currency = payload["currency"]  # the shop's currency; presentment_currency is the buyer's
    if not isinstance(currency, str):
        raise InvalidValueError(f"order {order_id}: currency must be a string")
    shipments, shipped = _shipments([_rest_parcel(f) for f in payload.get("fulfillments") or ()])
    removed = _rest_removed(payload)
    lines = []
    for item in payload["line_items"]:
        sku = _text(item.get("sku"))
        if sku is None:
            continue
        line_id = gid("LineItem", item.get("admin_graphql_api_id") or item["id"])
        quantity = _int(item["quantity"], f"line {line_id} quantity")
        current = item.get("current_quantity")
        variant_id = item.get("variant_id")
        price = _shop_money(item.get("price_set"), currency, f"line {line_id} price", rest=True)
        if price is None and item.get("price") is not None:
            price = Money(_amount(item["price"], f"line {line_id} price"), currency)
        lines.append(
            _line(
                line_id=line_id,
                sku=sku,
                quantity=quantity,
                current=_int(current, f"line {line_id} current_quantity")
                if current is not None
                else quantity - removed[line_id],
                shipped=shipped[line_id],
                unit_price=price,
                extra={
                    "variant_id": gid("ProductVariant", variant_id)
                    if variant_id is not None
                    else None
                },
            )
        )
    total = _shop_money(payload.get("current_total_price_set"), currency, "total", rest=True)
    if total is None and payload.get("current_total_price") is not None:
        total = Money(_amount(payload["current_total_price"], "total"), currency)
    cancelled_at = _optional_time(payload.get("cancelled_at"), "cancelled_at")
    return Order(
        external_id=order_id,
        status=_status(
            cancelled_at=cancelled_at,
            financial=payload.get("financial_status"),
            fulfillment=payload.get("fulfillment_status"),
        ),
        currency=currency,
        updated_at=version_time(_time(payload["updated_at"], "updated_at"), cancelled_at),
        lines=tuple(lines),
        number=_text(payload.get("name")),
        total=total,
        created_at=_optional_time(payload.get("created_at"), "created_at"),
        ship_to=_address(payload.get("shipping_address"), rest=True),
        shipments=shipments,
    )


def _address(raw: object, *, rest: bool) -> Address | None:
    if not isinstance(raw, Mapping):
        return None
    if rest:
        name = _text(raw.get("name")) or " ".join(
            p for p in (_text(raw.get("first_name")), _text(raw.get("last_name"))) if p
        )
        return Address(
            name=name or None,
            line1=_text(raw.get("address1")),
            line2=_text(raw.get("address2")),
            city=_text(raw.get("city")),
            region=_text(raw.get("province_code")) or _text(raw.get("province")),
            postal_code=_text(raw.get("zip")),
            country_code=_text(raw.get("country_code")),
            phone=_text(raw.get("phone")),
        )
    return Address(
        name=_text(raw.get("name")),
        line1=_text(raw.get("address1")),
        line2=_text(raw.get("address2")),
        city=_text(raw.get("city")),
        region=_text(raw.get("provinceCode")),
        postal_code=_text(raw.get("zip")),
        country_code=_text(raw.get("countryCodeV2")),
        phone=_text(raw.get("phone")),
    )


_GONE_FULFILLMENT_STATUSES = frozenset({"CANCELLED", "ERROR", "FAILURE"})


def matching_fulfillment(
    node: RawPayload, tracking_number: str | None, units: Mapping[str, int]
) -> str | None:
    """The id of a fulfilment of a GraphQL Order node with this tracking number and these units
    per line, whatever its progress (a pending one is ours too), unless it was cancelled."""
    for raw in node.get("fulfillments") or ():
        parcel = _graphql_parcel(raw)
        if parcel.status.upper() in _GONE_FULFILLMENT_STATUSES:
            continue
        if parcel.tracking_number == tracking_number and +parcel.units == +Counter(units):
            return parcel.external_id
    return None


CANCELLED_LATER = timedelta(microseconds=999_000)


def version_time(updated_at: datetime, cancelled_at: datetime | None) -> datetime:
    """The order's change time as the store orders its versions (newest wins).

    Shopify's times have whole seconds, so an order cancelled in the second of its previous
    change (placed and cancelled at once) carried the same time as that change, and the store
    kept the open copy: the long chaos run's 14 wrong states, cancellations whose webhook was
    lost and whose poll listed nothing newer. A cancelled order is dated at the end of its
    second: after any version of that second, before any of the next.
    """
    if cancelled_at is None or updated_at.microsecond:
        return updated_at
    return updated_at + CANCELLED_LATER
