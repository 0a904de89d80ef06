"""What a sandbox Shopify store holds: locations, variants and their inventory, orders with their
fulfilment orders and fulfilments, webhook subscriptions. Plain mutable records; store.py changes
them, views.py and payloads.py show them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

_GID = re.compile(r"^gid://shopify/([A-Za-z]+)/(\d+)(?:\?(.*))?$")

QUANTITY_LIMIT = 1_000_000_000
"""Shopify refuses quantities above this (INVALID_QUANTITY_TOO_HIGH)."""


class Clock(Protocol):
    """Where the store reads time: wall time for timestamps, a monotonic one for the bucket."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...


class SystemClock:
    """The real clocks."""

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """`time.monotonic()`."""
        return time.monotonic()


def gid(kind: str, number: int) -> str:
    """`gid://shopify/KIND/NUMBER`, Shopify's global id."""
    return f"gid://shopify/{kind}/{number}"


def level_gid(location_id: int, item_id: int) -> str:
    """An inventory level's global id (the location, qualified by the item)."""
    return f"gid://shopify/InventoryLevel/{location_id}?inventory_item_id={item_id}"


def parse_gid(text: str) -> tuple[str, int, str] | None:
    """(kind, number, query) of a global id; None if `text` is not one."""
    match = _GID.match(text)
    if match is None:
        return None
    return match.group(1), int(match.group(2)), match.group(3) or ""


@dataclass
class Location:
    """A place that stocks inventory."""

    id: int
    name: str
    created_at: datetime
    country_code: str = "US"


@dataclass
class Level:
    """Quantities of one inventory item at one location (Shopify's states, reduced to three)."""

    item_id: int
    location_id: int
    available: int
    committed: int = 0
    updated_at: datetime | None = None

    @property
    def on_hand(self) -> int:
        """Available plus committed: what is physically there."""
        return self.available + self.committed

    def quantity(self, name: str) -> int | None:
        """A named quantity (available, committed, on_hand; 0 for the states not modelled)."""
        if name == "available":
            return self.available
        if name == "committed":
            return self.committed
        if name == "on_hand":
            return self.on_hand
        if name in {"reserved", "damaged", "safety_stock", "quality_control", "incoming"}:
            return 0
        return None


@dataclass
class Variant:
    """A product variant with its SKU and inventory item (one each, as in Shopify)."""

    id: int
    product_id: int
    product_title: str
    title: str
    sku: str
    price: Decimal
    inventory_item_id: int
    created_at: datetime
    updated_at: datetime
    oversell: bool = False  # inventory policy CONTINUE: sell past zero


@dataclass
class LineItem:
    """An order line."""

    id: int
    variant_id: int
    sku: str
    title: str
    quantity: int
    price: Decimal
    current_quantity: int  # after cancellations
    fulfilled: int = 0

    @property
    def unfulfilled(self) -> int:
        """Units still to ship."""
        return self.current_quantity - self.fulfilled


@dataclass
class FulfillmentOrderLine:
    """A line item's units assigned to one fulfilment order."""

    id: int
    line_item_id: int
    total: int
    remaining: int


@dataclass
class FulfillmentOrder:
    """The units of an order one location must ship."""

    id: int
    order_id: int
    location_id: int
    lines: list[FulfillmentOrderLine]
    status: str  # OPEN, IN_PROGRESS, CLOSED, CANCELLED
    created_at: datetime
    updated_at: datetime


@dataclass
class Fulfillment:
    """A shipment of some units, with tracking."""

    id: int
    order_id: int
    name: str
    location_id: int
    lines: list[tuple[int, int]]  # (line item id, units)
    tracking_company: str | None
    tracking_number: str | None
    tracking_url: str | None
    notify_customer: bool
    created_at: datetime
    source: str  # "api" (fulfillmentCreate) or "admin" (the control API)
    fulfillment_order_ids: list[int] = field(default_factory=list)


@dataclass
class Buyer:
    """Who ordered and where it goes. Buyer data: served by the API, never logged."""

    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    company: str | None = None
    address1: str | None = None
    address2: str | None = None
    city: str | None = None
    province: str | None = None
    province_code: str | None = None
    zip: str | None = None
    country: str | None = None
    country_code: str | None = None
    customer_id: int | None = None

    @property
    def name(self) -> str | None:
        """First and last name together, if any."""
        parts = [p for p in (self.first_name, self.last_name) if p]
        return " ".join(parts) or None

    @property
    def has_address(self) -> bool:
        """Whether there is a ship-to address to show."""
        return any((self.address1, self.city, self.zip, self.country_code, self.name))


@dataclass
class Order:
    """An order as the store holds it."""

    id: int
    number: int  # order_number, 1001 onwards
    created_at: datetime
    updated_at: datetime
    currency: str
    lines: list[LineItem]
    buyer: Buyer
    shipping_price: Decimal
    token: str
    fulfillment_orders: list[FulfillmentOrder] = field(default_factory=list)
    fulfillments: list[Fulfillment] = field(default_factory=list)
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None  # OrderCancelReason, e.g. CUSTOMER
    refunded: bool = False
    staff_note: str | None = None

    @property
    def name(self) -> str:
        """`#1001`."""
        return f"#{self.number}"

    @property
    def subtotal(self) -> Decimal:
        """Line prices times quantities, as ordered."""
        return sum((line.price * line.quantity for line in self.lines), Decimal("0.00"))

    @property
    def current_subtotal(self) -> Decimal:
        """Line prices times current quantities (after cancellations)."""
        return sum((line.price * line.current_quantity for line in self.lines), Decimal("0.00"))

    @property
    def total(self) -> Decimal:
        """What the buyer was charged: subtotal and shipping (no tax, no discount)."""
        return self.subtotal + self.shipping_price

    @property
    def current_total(self) -> Decimal:
        """The total after cancellations."""
        if self.cancelled_at is not None:
            return Decimal("0.00")
        return self.current_subtotal + self.shipping_price

    @property
    def financial_status(self) -> str:
        """OrderDisplayFinancialStatus: sandbox orders are paid, then refunded or voided."""
        if self.cancelled_at is not None:
            return "REFUNDED" if self.refunded else "VOIDED"
        return "PAID"

    @property
    def fulfillment_status(self) -> str:
        """OrderDisplayFulfillmentStatus."""
        shipped = sum(line.fulfilled for line in self.lines)
        if shipped == 0:
            return "UNFULFILLED"
        if all(line.unfulfilled == 0 for line in self.lines):
            return "FULFILLED"
        return "PARTIALLY_FULFILLED"


@dataclass
class Subscription:
    """A webhook subscription: a topic and where to deliver it."""

    id: int
    topic: str  # WebhookSubscriptionTopic, e.g. ORDERS_CREATE
    uri: str
    api_version: str
    created_at: datetime
    updated_at: datetime
    include_fields: list[str] = field(default_factory=list)
    filter: str | None = None
