"""Pure functions from eBay's Sell Fulfillment JSON to the canonical values.

- status: a cancellation that went through (`cancelStatus.cancelState` CANCELED), or a full
  refund of an order nothing of which shipped, is cancelled; then `orderFulfillmentStatus`
  (FULFILLED shipped, IN_PROGRESS partly shipped); an order not shipped and not yet paid
  (`orderPaymentStatus` PENDING/FAILED) is pending; anything else is open;
- money is the seller's currency (`value`/`currency`; `convertedFrom*` is the buyer's), as
  Decimal; a line's unit price is its `lineItemCost` (price x quantity) over its quantity;
- a line's shipped units: all of them once its `lineItemFulfillmentStatus` is FULFILLED, else
  those in the order's shipping fulfilments when they were read; a cancelled order's unshipped
  units are cancelled;
- lines are keyed by `lineItemId` and carry the seller's SKU; `legacyItemId` and
  `legacyVariationId` stay on the line (the Trading listing it sold from); a line without a SKU
  holds nothing of ours and is left out;
- the ship-to comes from the first `fulfillmentStartInstructions` entry's `shippingStep.shipTo`;
- the buyer: eBay's `buyer.username` holds a username or, for some applications since
  2025-09-26, the buyer's immutable user id; neither is stored, only a hash of it (`buyer_ref`),
  which an account deletion matches by both its user id and its username.

Readers raise on malformed input (KeyError for a missing field, InvalidValueError naming the
field) and never quote the record: it holds buyer names and addresses.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation

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
from connectors.ebay.const import (
    CANCELLED_STATE,
    FULFILLMENT_STATUSES,
    LINE_FULFILLED,
    REFUNDED_PAYMENT_STATUS,
    UNPAID_PAYMENT_STATUSES,
)

_PRICE_PLACES = Decimal("0.0001")


def buyer_ref(identity: str) -> str:
    """The stand-in stored for an eBay buyer identity (a username or an immutable user id)."""
    digest = hashlib.sha256(f"ebay-buyer:{identity.strip()}".encode()).hexdigest()
    return f"ebay:{digest}"


def parse_time(value: object, name: str) -> datetime:
    """An ISO 8601 time with a zone (eBay writes `2015-08-04T19:09:02.768Z`)."""
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
    return None if value is None else parse_time(value, name)


def _int(value: object, name: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidValueError(f"{name} must be an integer")
    return value


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _amount(amount: object, currency: str, name: str) -> Money | None:
    """eBay's Amount ({value, currency}) in the order's currency; None when absent."""
    if not isinstance(amount, Mapping) or amount.get("value") is None:
        return None
    value = amount["value"]
    if not isinstance(value, str | int) or isinstance(value, bool):
        # eBay sends amounts as decimal strings; a float would already have lost cents.
        raise InvalidValueError(f"{name} must be a decimal string")
    if amount.get("currency") not in (None, currency):
        raise InvalidValueError(f"{name} is not in the order's currency")
    try:
        return Money(Decimal(str(value)), currency)
    except InvalidOperation as err:
        raise InvalidValueError(f"{name} is not a number") from err


def _unit_price(cost: Money | None, quantity: int) -> Money | None:
    if cost is None or quantity <= 0:
        return None
    unit = cost.amount / quantity
    exponent = unit.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -4:  # 10.00 / 3: keep four places
        unit = unit.quantize(_PRICE_PLACES)
    return Money(unit, cost.currency)


def _shipped_units(fulfillments: Sequence[RawPayload]) -> Counter[str]:
    units: Counter[str] = Counter()
    for fulfillment in fulfillments:
        for item in fulfillment.get("lineItems") or ():
            units[str(item["lineItemId"])] += _int(item.get("quantity") or 0, "shipped quantity")
    return units


def shipment_from_fulfillment(raw: RawPayload) -> ChannelShipment | None:
    """A shipping fulfilment (getShippingFulfillments) as a channel shipment; None if it holds
    no units."""
    external_id = _text(raw.get("fulfillmentId"))
    if external_id is None:
        raise InvalidValueError("a shipping fulfilment needs its fulfillmentId")
    lines = tuple(ShipmentLine(line, n) for line, n in _shipped_units([raw]).items() if n > 0)
    if not lines:
        return None
    return ChannelShipment(
        external_id=external_id,
        lines=lines,
        shipped_at=parse_time(raw["shippedDate"], f"fulfillment {external_id} shippedDate"),
        carrier=_text(raw.get("shippingCarrierCode")),
        tracking_number=_text(raw.get("shipmentTrackingNumber")),
    )


def _status(raw: RawPayload, *, any_shipped: bool) -> OrderStatus:
    cancel = raw.get("cancelStatus")
    if isinstance(cancel, Mapping) and cancel.get("cancelState") == CANCELLED_STATE:
        return OrderStatus.CANCELLED
    payment = raw.get("orderPaymentStatus")
    if payment == REFUNDED_PAYMENT_STATUS and not any_shipped:
        return OrderStatus.CANCELLED
    shipped = FULFILLMENT_STATUSES.get(str(raw.get("orderFulfillmentStatus")))
    if shipped is not None:
        return shipped
    if any_shipped:
        return OrderStatus.PARTIALLY_SHIPPED
    if payment in UNPAID_PAYMENT_STATUSES:
        return OrderStatus.PENDING
    return OrderStatus.OPEN


def _address(instructions: object) -> Address | None:
    if not isinstance(instructions, Sequence) or not instructions:
        return None
    first = instructions[0]
    step = first.get("shippingStep") if isinstance(first, Mapping) else None
    ship_to = step.get("shipTo") if isinstance(step, Mapping) else None
    if not isinstance(ship_to, Mapping):
        return None
    contact = ship_to.get("contactAddress")
    contact = contact if isinstance(contact, Mapping) else {}
    phone = ship_to.get("primaryPhone")
    return Address(
        name=_text(ship_to.get("fullName")),
        line1=_text(contact.get("addressLine1")),
        line2=_text(contact.get("addressLine2")),
        city=_text(contact.get("city")),
        region=_text(contact.get("stateOrProvince")),
        postal_code=_text(contact.get("postalCode")),
        country_code=_text(contact.get("countryCode")),
        phone=_text(phone.get("phoneNumber")) if isinstance(phone, Mapping) else None,
    )


def order_from_ebay(raw: RawPayload, fulfillments: Sequence[RawPayload] = ()) -> Order:
    """An eBay order (getOrder/getOrders), with its shipping fulfilments when they were read."""
    order_id = _text(raw["orderId"])
    if order_id is None:
        raise InvalidValueError("an order needs its orderId")
    summary = raw["pricingSummary"]
    currency = summary["total"]["currency"]
    if not isinstance(currency, str):
        raise InvalidValueError(f"order {order_id}: total currency must be a string")
    shipments = tuple(
        shipment
        for shipment in (shipment_from_fulfillment(f) for f in fulfillments)
        if shipment is not None
    )
    in_parcels = _shipped_units(fulfillments)
    cancel = raw.get("cancelStatus")
    is_cancelled = (
        isinstance(cancel, Mapping) and cancel.get("cancelState") == CANCELLED_STATE
    ) or raw.get("orderPaymentStatus") == REFUNDED_PAYMENT_STATUS
    lines = []
    for item in raw["lineItems"]:
        line_id = str(item["lineItemId"])
        quantity = _int(item["quantity"], f"line {line_id} quantity")
        shipped = min(quantity, in_parcels[line_id])
        if item.get("lineItemFulfillmentStatus") == LINE_FULFILLED:
            shipped = quantity
        sku = _text(item.get("sku"))
        if sku is None:
            continue
        lines.append(
            OrderLine(
                external_line_id=line_id,
                sku=sku,
                quantity=quantity,
                quantity_shipped=shipped,
                quantity_cancelled=quantity - shipped if is_cancelled else 0,
                unit_price=_unit_price(
                    _amount(item.get("lineItemCost"), currency, f"line {line_id} cost"), quantity
                ),
                extra={
                    key: str(value)
                    for key, value in (
                        ("legacy_item_id", item.get("legacyItemId")),
                        ("legacy_variation_id", item.get("legacyVariationId")),
                    )
                    if value not in (None, "")
                },
            )
        )
    any_shipped = any(line.quantity_shipped for line in lines) or bool(in_parcels)
    buyer = raw.get("buyer")
    identity = _text(buyer.get("username")) if isinstance(buyer, Mapping) else None
    return Order(
        external_id=order_id,
        number=order_id,  # what Seller Hub and the buyer call the order
        status=_status(raw, any_shipped=any_shipped),
        currency=currency,
        total=_amount(summary["total"], currency, "total"),
        created_at=_optional_time(raw.get("creationDate"), "creationDate"),
        updated_at=parse_time(raw["lastModifiedDate"], "lastModifiedDate"),
        lines=tuple(lines),
        ship_to=_address(raw.get("fulfillmentStartInstructions")),
        buyer_ref=buyer_ref(identity) if identity else None,
        shipments=shipments,
    )


def line_quantities(raw: RawPayload) -> dict[str, int]:
    """lineItemId -> quantity of every line of an order (to ship "all lines")."""
    return {
        str(item["lineItemId"]): _int(item["quantity"], "line quantity")
        for item in raw["lineItems"]
    }


def matching_fulfillment(
    fulfillments: Sequence[RawPayload], tracking_number: str | None, units: Mapping[str, int]
) -> str | None:
    """The id of a shipping fulfilment with this tracking number and (when given) these units
    per line: the package is already there."""
    wanted = _normal(tracking_number)
    for raw in fulfillments:
        if _normal(_text(raw.get("shipmentTrackingNumber"))) != wanted:
            continue
        if units and +_shipped_units([raw]) != +Counter(units):
            continue
        found = _text(raw.get("fulfillmentId"))
        if found is not None:
            return found
    return None


def _normal(tracking: str | None) -> str | None:
    return "".join(tracking.split()).casefold() or None if tracking else None
