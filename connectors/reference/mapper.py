"""Pure functions between the reference marketplace's JSON and the canonical values.

Readers raise on anything malformed (KeyError for a missing field, InvalidValueError naming the
field otherwise) and never quote the record: it may hold buyer data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.base import (
    Address,
    CancelRequest,
    ChannelListing,
    ChannelShipment,
    FulfillmentRequest,
    InvalidValueError,
    Money,
    Order,
    OrderLine,
    PushOutcome,
    RawPayload,
    ShipmentLine,
    StockPushResult,
    StockTarget,
)
from connectors.reference.const import STATUSES

_OUTCOMES = {
    "applied": PushOutcome.APPLIED,
    "conflict": PushOutcome.CONFLICT,
    "rejected": PushOutcome.REJECTED,
}


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


def _money(value: object, currency: str, name: str) -> Money | None:
    if value is None:
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        # A float would already have lost cents; the API documents decimal strings.
        raise InvalidValueError(f"{name} must be a decimal string")
    try:
        return Money(Decimal(str(value)), currency)
    except InvalidOperation as err:
        raise InvalidValueError(f"{name} is not a number") from err


def _int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidValueError(f"{name} must be an integer")
    return value


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _address(raw: object) -> Address | None:
    if not isinstance(raw, Mapping):
        return None
    return Address(
        name=_text(raw.get("name")),
        line1=_text(raw.get("line1")),
        line2=_text(raw.get("line2")),
        city=_text(raw.get("city")),
        region=_text(raw.get("region")),
        postal_code=_text(raw.get("postal_code")),
        country_code=_text(raw.get("country_code")),
        phone=_text(raw.get("phone")),
    )


def shipment_from_raw(raw: RawPayload) -> ChannelShipment:
    """A fulfilment of the API as a channel shipment."""
    return ChannelShipment(
        external_id=str(raw["id"]),
        lines=tuple(
            ShipmentLine(str(line["line_id"]), _int(line["quantity"], "fulfillment quantity"))
            for line in raw["lines"]
        ),
        shipped_at=_time(raw["shipped_at"], "shipped_at"),
        carrier=_text(raw.get("carrier")),
        tracking_number=_text(raw.get("tracking_number")),
        tracking_url=_text(raw.get("tracking_url")),
    )


def order_from_raw(raw: RawPayload) -> Order:
    """An order of the API as a canonical order, with its fulfilments as shipments."""
    order_id = str(raw["id"])
    status_word = raw["status"]
    status = STATUSES.get(status_word) if isinstance(status_word, str) else None
    if status is None:
        raise InvalidValueError(f"order {order_id}: unknown status {status_word!r}")
    currency = raw["currency"]
    if not isinstance(currency, str):
        raise InvalidValueError(f"order {order_id}: currency must be a string")
    lines = []
    for line in raw["lines"]:
        line_id = str(line["id"])
        lines.append(
            OrderLine(
                external_line_id=line_id,
                sku=str(line["sku"]),
                quantity=_int(line["quantity"], f"line {line_id} quantity"),
                quantity_cancelled=_int(line.get("cancelled", 0), f"line {line_id} cancelled"),
                quantity_shipped=_int(line.get("shipped", 0), f"line {line_id} shipped"),
                unit_price=_money(line.get("unit_price"), currency, f"line {line_id} unit_price"),
                extra={"listing_ref": line["listing"]} if line.get("listing") else {},
            )
        )
    return Order(
        external_id=order_id,
        status=status,
        currency=currency,
        updated_at=_time(raw["updated_at"], "updated_at"),
        lines=tuple(lines),
        number=_text(raw.get("number")),
        total=_money(raw.get("total"), currency, "total"),
        created_at=_optional_time(raw.get("created_at"), "created_at"),
        ship_to=_address(raw.get("ship_to")),
        buyer_ref=_text(raw.get("buyer_id")),
        shipments=tuple(shipment_from_raw(f) for f in raw.get("fulfillments") or ()),
    )


def listing_from_raw(raw: RawPayload) -> ChannelListing:
    """A listing of the API."""
    quantity = raw.get("quantity")
    return ChannelListing(
        listing_ref=str(raw["listing"]),
        sku=_text(raw.get("sku")),
        quantity=_int(quantity, "listing quantity") if quantity is not None else None,
    )


def stock_items(targets: Sequence[StockTarget], *, compare_and_swap: bool) -> list[dict[str, Any]]:
    """The items of a `POST /v1/stock` batch; `expected` only where compare-and-swap is on."""
    items = []
    for target in targets:
        item: dict[str, Any] = {"listing": target.listing_ref, "quantity": target.quantity}
        if compare_and_swap and target.expected is not None:
            item["expected"] = target.expected
        items.append(item)
    return items


def push_results(
    targets: Sequence[StockTarget], raw_results: Sequence[RawPayload]
) -> list[StockPushResult]:
    """One result per target, in the targets' order; a listing the answer left out is retried."""
    by_ref = {str(r.get("listing")): r for r in raw_results if isinstance(r, Mapping)}
    results = []
    for target in targets:
        ref = target.listing_ref
        raw = by_ref.get(ref)
        outcome = _OUTCOMES.get(str(raw.get("status"))) if raw is not None else None
        if raw is None or outcome is None:
            results.append(StockPushResult(ref, PushOutcome.RETRY, error="no result for listing"))
        elif outcome is PushOutcome.CONFLICT:
            actual = raw.get("quantity")
            results.append(
                StockPushResult(ref, outcome, actual=actual if isinstance(actual, int) else None)
            )
        elif outcome is PushOutcome.REJECTED:
            results.append(
                StockPushResult(ref, outcome, error=_text(raw.get("reason")) or "rejected")
            )
        else:
            results.append(StockPushResult(ref, outcome))
    return results


def fulfillment_body(request: FulfillmentRequest) -> dict[str, Any]:
    """The body of `POST /v1/orders/{id}/fulfillments`."""
    body: dict[str, Any] = {
        "lines": [
            {"line_id": line.external_line_id, "quantity": line.quantity} for line in request.lines
        ],
        "shipped_at": request.shipped_at.isoformat(),
    }
    for key, value in (
        ("carrier", request.carrier),
        ("tracking_number", request.tracking_number),
        ("tracking_url", request.tracking_url),
    ):
        if value is not None:
            body[key] = value
    return body


def cancel_body(request: CancelRequest) -> dict[str, Any]:
    """The body of `POST /v1/orders/{id}/cancel` (no lines: the whole order)."""
    body: dict[str, Any] = {"reason": request.reason}
    if request.lines:
        body["lines"] = [
            {"line_id": line.external_line_id, "quantity": line.quantity} for line in request.lines
        ]
    return body


def _units(lines: Sequence[ShipmentLine]) -> Counter[str]:
    units: Counter[str] = Counter()
    for line in lines:
        units[line.external_line_id] += line.quantity
    return units


def matching_fulfillment(
    fulfillments: Sequence[RawPayload], request: FulfillmentRequest
) -> str | None:
    """The id of the fulfilment that is `request`: the same idempotency key where the channel
    kept one, else the same tracking number and the same units of the same lines."""
    wanted = _units(request.lines)
    for raw in fulfillments:
        if raw.get("idempotency_key") == request.key:
            return str(raw["id"])
    for raw in fulfillments:
        shipment = shipment_from_raw(raw)
        if shipment.tracking_number == request.tracking_number and _units(shipment.lines) == (
            wanted
        ):
            return shipment.external_id
    return None
