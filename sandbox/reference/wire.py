"""The reference marketplace's JSON: how it renders orders, listings and parcels, and the request
bodies it accepts (strict: an unknown field or a wrong type is refused with the field named).

Its shapes are its own, not the canonical ones, so a connector has real mapping to do: statuses
are the marketplace's words, money is a decimal string, times are ISO 8601 with a `Z`.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from connectors.base import Address, Order, OrderStatus
from sandbox.reference.channel import ApiError, Parcel, SandboxChannel, StockResult

STATUS_WORDS = {
    OrderStatus.PENDING: "awaiting_payment",
    OrderStatus.OPEN: "unfulfilled",
    OrderStatus.PARTIALLY_SHIPPED: "partially_fulfilled",
    OrderStatus.SHIPPED: "fulfilled",
    OrderStatus.CANCELLED: "cancelled",
}
"""The marketplace's own words for an order's status."""

_STRICT = ConfigDict(extra="forbid", frozen=True)
Text = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Units = Annotated[StrictInt, Field(ge=1, le=1_000_000)]
Quantity = Annotated[StrictInt, Field(ge=0, le=1_000_000_000)]


def render_time(when: datetime) -> str:
    """ISO 8601 in UTC with a `Z`."""
    return when.isoformat().replace("+00:00", "Z")


def parse_time(text: str, name: str) -> datetime:
    """An ISO 8601 time with a zone; ApiError 422 naming `name` otherwise."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ApiError(422, "invalid", f"{name} must be an ISO 8601 time with a zone")
    return when


def encode_cursor(parts: tuple[str, ...]) -> str:
    """An opaque cursor for the key a page ended on."""
    return base64.urlsafe_b64encode("\x1f".join(parts).encode()).decode("ascii")


def decode_cursor(cursor: str, size: int) -> tuple[str, ...]:
    """The key a cursor holds; ApiError 422 for one this server did not hand out."""
    try:
        parts = tuple(base64.urlsafe_b64decode(cursor.encode("ascii")).decode().split("\x1f"))
    except (binascii.Error, UnicodeError, ValueError):
        parts = ()
    if len(parts) != size:
        raise ApiError(422, "invalid", "cursor is not one this server handed out")
    return parts


def render_parcel(parcel: Parcel, *, source: bool = False) -> dict[str, Any]:
    """A fulfilment as the API shows it (with where it came from, for the control API)."""
    shown: dict[str, Any] = {
        "id": parcel.id,
        "order_id": parcel.order_id,
        "lines": [{"line_id": line_id, "quantity": units} for line_id, units in parcel.lines],
        "carrier": parcel.carrier,
        "tracking_number": parcel.tracking_number,
        "tracking_url": parcel.tracking_url,
        "shipped_at": render_time(parcel.shipped_at),
    }
    if parcel.idempotency_key is not None:
        shown["idempotency_key"] = parcel.idempotency_key
    if source:
        shown["source"] = parcel.source
    return shown


def _render_address(address: Address | None) -> dict[str, Any] | None:
    if address is None:
        return None
    return {
        "name": address.name,
        "line1": address.line1,
        "line2": address.line2,
        "city": address.city,
        "region": address.region,
        "postal_code": address.postal_code,
        "country_code": address.country_code,
        "phone": address.phone,
    }


def render_order(channel: SandboxChannel, order: Order) -> dict[str, Any]:
    """An order as the API shows it, with its fulfilments."""
    return {
        "id": order.external_id,
        "number": order.number,
        "status": STATUS_WORDS[order.status],
        "currency": order.currency,
        "total": str(order.total.amount) if order.total else None,
        "created_at": render_time(order.created_at) if order.created_at else None,
        "updated_at": render_time(order.updated_at),
        "buyer_id": order.buyer_ref,
        "ship_to": _render_address(order.ship_to),
        "lines": [
            {
                "id": line.external_line_id,
                "listing": line.extra.get("listing_ref"),
                "sku": line.sku,
                "quantity": line.quantity,
                "cancelled": line.quantity_cancelled,
                "shipped": line.quantity_shipped,
                "unit_price": str(line.unit_price.amount) if line.unit_price else None,
            }
            for line in order.lines
        ],
        "fulfillments": [render_parcel(p) for p in channel.parcels_of(order.external_id)],
    }


def render_stock_result(result: StockResult) -> dict[str, Any]:
    """One item of a stock batch's answer."""
    shown: dict[str, Any] = {"listing": result.listing, "status": result.status}
    if result.quantity is not None:
        shown["quantity"] = result.quantity
    if result.reason is not None:
        shown["reason"] = result.reason
    return shown


# ---- request bodies -------------------------------------------------------------------------


class LineUnits(BaseModel):
    """Units of one order line."""

    model_config = _STRICT

    line_id: Text
    quantity: Units


class StockItemBody(BaseModel):
    """One listing of `POST /v1/stock`."""

    model_config = _STRICT

    listing: Text
    quantity: Quantity
    expected: Quantity | None = None


class StockBatchBody(BaseModel):
    """Body of `POST /v1/stock`."""

    model_config = _STRICT

    items: list[StockItemBody]


class ListingStockBody(BaseModel):
    """Body of `PUT /v1/listings/{listing}/stock`."""

    model_config = _STRICT

    quantity: Quantity
    expected: Quantity | None = None


class FulfillmentBody(BaseModel):
    """Body of `POST /v1/orders/{id}/fulfillments`."""

    model_config = _STRICT

    lines: list[LineUnits] = Field(min_length=1)
    carrier: Text | None = None
    tracking_number: Text | None = None
    tracking_url: Annotated[str, StringConstraints(max_length=1024)] | None = None
    shipped_at: AwareDatetime | None = None


class CancelBody(BaseModel):
    """Body of `POST /v1/orders/{id}/cancel`; no lines cancels every open unit."""

    model_config = _STRICT

    lines: list[LineUnits] | None = Field(default=None, min_length=1)
    reason: Text = "other"


class BuyerAddress(BaseModel):
    """Where a sandbox buyer wants the parcel."""

    model_config = _STRICT

    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country_code: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None


class Buyer(BaseModel):
    """A sandbox buyer; only `id` and the ship-to address end up on the order."""

    model_config = _STRICT

    id: Text | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    address: BuyerAddress | None = None

    def ship_to(self) -> Address | None:
        """The order's ship-to address, if the buyer gave anything to put on it."""
        if self.address is None and self.name is None:
            return None
        where = self.address or BuyerAddress()
        return Address(
            name=self.name,
            line1=where.line1,
            line2=where.line2,
            city=where.city,
            region=where.region,
            postal_code=where.postal_code,
            country_code=where.country_code,
            phone=self.phone,
        )


class SkuUnits(BaseModel):
    """A line of a sandbox order: a SKU and how many."""

    model_config = _STRICT

    sku: Text
    quantity: Units


class PlaceOrderBody(BaseModel):
    """Body of `POST /_sandbox/orders`."""

    model_config = _STRICT

    lines: list[SkuUnits] = Field(min_length=1)
    buyer: Buyer | None = None
    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None


class ShipBody(BaseModel):
    """Body of `POST /_sandbox/ship`; no lines ships every open unit."""

    model_config = _STRICT

    order_id: Text
    lines: list[LineUnits] | None = Field(default=None, min_length=1)
    carrier: Text | None = None
    tracking_number: Text | None = None


class SandboxCancelBody(BaseModel):
    """Body of `POST /_sandbox/cancel`: the buyer or the seller cancels on the channel."""

    model_config = _STRICT

    order_id: Text
    lines: list[LineUnits] | None = Field(default=None, min_length=1)
