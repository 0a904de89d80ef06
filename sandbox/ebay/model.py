"""What a sandbox eBay seller account holds: listings of both stock worlds, buyers, orders with
their line items, and shipping fulfilments. Plain mutable records; store.py changes them,
payloads.py and trading_xml.py show them.

The two stock worlds (CHANNELS.md, eBay "Stock"): a *Trading* listing (made in Seller Hub or
through the Trading API) is revised with `ReviseInventoryStatus`, an *Inventory* listing (an
Inventory-API offer published as a listing) with `bulkUpdatePriceQuantity`; neither API touches
the other's listings. A multi-variation Trading listing is several `Listing` records sharing one
item id, each with its own variation id and SKU.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

QUANTITY_LIMIT = 1_000_000
"""The largest quantity the sandbox takes for one listing."""


class Clock(Protocol):
    """Where the sandbox reads time: wall time for timestamps and quota days."""

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


def iso(moment: datetime | None) -> str | None:
    """eBay's REST timestamp: UTC, milliseconds, `Z` (e.g. 2015-08-04T19:09:02.768Z)."""
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class World(enum.StrEnum):
    """Which API revises a listing's quantity."""

    TRADING = "trading"
    INVENTORY = "inventory"


@dataclass
class Listing:
    """One SKU on sale: a single-variation listing, or one variation of a multi-variation one."""

    sku: str
    world: World
    item_id: str  # the listing id (Trading ItemID; legacyItemId in the Fulfillment API)
    title: str
    price: Decimal
    quantity: int  # available to buyers now
    variation_id: str | None = None  # legacyVariationId of a variation
    group: str | None = None  # the seller's name for a multi-variation listing
    offer_id: str | None = None  # the Inventory-API offer behind an inventory listing
    sold: int = 0
    out_of_stock_control: bool = True  # a listing at 0 stays alive (hidden) instead of ending
    ended: bool = False


@dataclass
class Buyer:
    """Who ordered and where it goes. Buyer data: served by the API, never logged."""

    user_id: str  # the immutable public user id (MARKETPLACE_ACCOUNT_DELETION's userId)
    username: str
    eias_token: str
    full_name: str | None = None
    email: str | None = None
    phone: str | None = None
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    state_or_province: str | None = None
    postal_code: str | None = None
    country_code: str | None = None
    deleted: bool = False  # the account was closed (MARKETPLACE_ACCOUNT_DELETION sent)


@dataclass
class LineItem:
    """An order line: one listing (or variation) and how many."""

    line_item_id: str
    legacy_item_id: str
    legacy_variation_id: str | None
    legacy_transaction_id: str
    sku: str
    title: str
    quantity: int
    unit_price: Decimal
    shipped: int = 0

    @property
    def cost(self) -> Decimal:
        """Unit price times quantity (`lineItemCost`)."""
        return self.unit_price * self.quantity

    @property
    def fulfillment_status(self) -> str:
        """`lineItemFulfillmentStatus`: NOT_STARTED, IN_PROGRESS or FULFILLED."""
        if self.shipped <= 0:
            return "NOT_STARTED"
        return "FULFILLED" if self.shipped >= self.quantity else "IN_PROGRESS"


@dataclass
class ShippingFulfillment:
    """A package the seller shipped, with tracking."""

    fulfillment_id: str
    order_id: str
    lines: list[tuple[str, int]]  # (line item id, quantity)
    carrier_code: str | None
    tracking_number: str | None
    shipped_date: datetime
    created_at: datetime
    source: str  # "api" (createShippingFulfillment), "trading" (CompleteSale), "seller_hub"


@dataclass
class Order:
    """An order as the account holds it."""

    order_id: str  # the REST orderId, e.g. 12-04567-89012 (Trading uses the same since 2019)
    legacy_order_id: str
    created_at: datetime
    modified_at: datetime
    currency: str
    marketplace_id: str
    buyer: Buyer
    lines: list[LineItem]
    delivery_cost: Decimal
    fulfillments: list[ShippingFulfillment] = field(default_factory=list)
    cancelled_at: datetime | None = None

    @property
    def subtotal(self) -> Decimal:
        """Sum of the line costs (`priceSubtotal`)."""
        return sum((line.cost for line in self.lines), Decimal("0.00"))

    @property
    def total(self) -> Decimal:
        """What the buyer paid: subtotal and delivery (no tax, no discount)."""
        return self.subtotal + self.delivery_cost

    @property
    def fulfillment_status(self) -> str:
        """`orderFulfillmentStatus`: NOT_STARTED, IN_PROGRESS or FULFILLED."""
        states = {line.fulfillment_status for line in self.lines}
        if states == {"FULFILLED"}:
            return "FULFILLED"
        if states == {"NOT_STARTED"}:
            return "NOT_STARTED"
        return "IN_PROGRESS"

    @property
    def cancel_state(self) -> str:
        """`cancelStatus.cancelState`: NONE_REQUESTED or CANCELED."""
        return "CANCELED" if self.cancelled_at is not None else "NONE_REQUESTED"
