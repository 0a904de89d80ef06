"""What a sandbox Amazon seller account holds: listings, orders with their items and confirmed
packages, feeds, reports and their documents. Plain mutable records; store.py changes them,
views.py shows them in the Orders API's two shapes.

Order statuses are kept in the Orders API 2026-01-01 spelling (`UNSHIPPED`); v0 and the ORDER_CHANGE
notification use the older spelling (`Unshipped`), given by `V0_STATUS`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

QUANTITY_LIMIT = 1_000_000_000
"""The sandbox refuses quantities above this."""

V0_STATUS = {
    "PENDING_AVAILABILITY": "PendingAvailability",
    "PENDING": "Pending",
    "UNSHIPPED": "Unshipped",
    "PARTIALLY_SHIPPED": "PartiallyShipped",
    "SHIPPED": "Shipped",
    "CANCELLED": "Canceled",
    "UNFULFILLABLE": "Unfulfillable",
}
"""2026-01-01 fulfillment status -> v0 OrderStatus (also the notification's OrderStatus)."""

MARKETPLACES = {
    "ATVPDKIKX0DER": ("Amazon.com", "USD", "113"),
    "A2EUQ1WTGCTBG2": ("Amazon.ca", "CAD", "702"),
    "A1AM78C64UM0Y8": ("Amazon.com.mx", "MXN", "701"),
    "A2Q3Y263D00KWC": ("Amazon.com.br", "BRL", "171"),
    "A1F83G8C2ARO7P": ("Amazon.co.uk", "GBP", "202"),
    "A1PA6795UKMFR9": ("Amazon.de", "EUR", "302"),
    "A13V1IB3VIYZZH": ("Amazon.fr", "EUR", "402"),
    "APJ6JRA9NG5V4": ("Amazon.it", "EUR", "403"),
    "A1RKKUPIHCS9HS": ("Amazon.es", "EUR", "404"),
    "A1VC38T7YXB528": ("Amazon.co.jp", "JPY", "250"),
}
"""Marketplace id -> (name, currency, order id prefix) for the marketplaces the sandbox knows."""

FBA_CHANNEL_PREFIX = "AMAZON_"
"""Fulfillment channel codes of Amazon's own stock (AMAZON_NA, AMAZON_EU...): never the seller's."""


class Clock(Protocol):
    """Where the sandbox reads time: wall time for timestamps, a monotonic one for buckets."""

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


def iso(moment: datetime) -> str:
    """Amazon's date-time format: UTC, whole seconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Listing:
    """One seller SKU in the account: what holds a quantity."""

    sku: str
    quantity: int
    price: Decimal
    title: str
    asin: str
    created_at: datetime
    updated_at: datetime
    product_type: str = "PRODUCT"
    fulfillment_channel: str = "DEFAULT"
    """DEFAULT: the seller ships (MFN); AMAZON_NA and the like: Amazon ships from its stock."""

    @property
    def is_fba(self) -> bool:
        """Amazon's stock, not the seller's to set."""
        return self.fulfillment_channel.startswith(FBA_CHANNEL_PREFIX)


@dataclass(frozen=True)
class Buyer:
    """Who ordered and where it goes (buyer data: kept in memory, never logged)."""

    name: str | None = None
    email: str | None = None
    phone: str | None = None
    company: str | None = None
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    state_or_region: str | None = None
    postal_code: str | None = None
    country_code: str | None = None


@dataclass
class OrderItem:
    """One line of an order."""

    order_item_id: str
    sku: str
    asin: str
    title: str
    quantity: int
    unit_price: Decimal
    shipped: int = 0
    buyer_requested_cancel: bool = False

    @property
    def unshipped(self) -> int:
        """Units still to ship."""
        return self.quantity - self.shipped


@dataclass
class Package:
    """A shipment the seller confirmed (confirmShipment)."""

    order_id: str
    package_reference_id: str
    carrier_code: str
    carrier_name: str | None
    shipping_method: str | None
    tracking_number: str
    ship_date: str
    items: list[tuple[str, int]]
    """(order item id, quantity)."""
    created_at: datetime
    confirmations: int = 1
    """How many identical confirmShipment calls recorded this package."""


@dataclass
class Order:
    """An Amazon order."""

    order_id: str
    marketplace_id: str
    currency: str
    created_at: datetime
    updated_at: datetime
    status: str
    """A 2026-01-01 FulfillmentStatus: PENDING, UNSHIPPED, SHIPPED, CANCELLED..."""
    fulfilled_by: str
    """MERCHANT or AMAZON."""
    items: list[OrderItem]
    buyer: Buyer
    shipping_price: Decimal = Decimal("0.00")
    packages: list[Package] = field(default_factory=list)
    cancel_reason: str | None = None

    @property
    def is_pending(self) -> bool:
        """Payment not yet authorised: no prices shown, stock not yet committed."""
        return self.status in ("PENDING", "PENDING_AVAILABILITY")

    @property
    def fulfillment_type(self) -> str:
        """MFN or AFN, as the notification says it."""
        return "AFN" if self.fulfilled_by == "AMAZON" else "MFN"


@dataclass
class FeedDocument:
    """A document of the Feeds API: an upload slot (input) or a processing report (result)."""

    document_id: str
    content_type: str
    created_at: datetime
    data: bytes | None = None
    compressed: bool = False


@dataclass
class Feed:
    """A submitted feed and where its processing is."""

    feed_id: str
    feed_type: str
    marketplace_ids: list[str]
    input_document_id: str
    created_at: datetime
    created_mono: float
    status: str = "IN_QUEUE"
    started_at: datetime | None = None
    ended_at: datetime | None = None
    result_document_id: str | None = None
    forced_outcome: str | None = None
    """FATAL or CANCELLED when a fault decided it at creation."""
    messages: int = 0
    errors: int = 0


@dataclass(frozen=True)
class ReportDocument:
    """A report's contents, produced once when its processing ends."""

    document_id: str
    content_type: str
    created_at: datetime
    data: bytes
    compressed: bool = False


@dataclass
class Report:
    """A requested report and where its processing is."""

    report_id: str
    report_type: str
    marketplace_ids: list[str]
    data_start: datetime
    data_end: datetime
    created_at: datetime
    created_mono: float
    status: str = "IN_QUEUE"
    started_at: datetime | None = None
    ended_at: datetime | None = None
    document_id: str | None = None
    forced_outcome: str | None = None
    """FATAL or CANCELLED when a fault decided it at creation."""
    orders: int = 0
    """Orders in the document (0 until it is produced)."""
