"""The Connector protocol and the value types that cross it, the only things sync/ knows of a channel.

Values are frozen dataclasses that check themselves on construction: a mapper that builds an
invalid order (negative quantity, float money, naive time) fails there, with the field named,
before anything reaches the store.
"""

from __future__ import annotations

import enum
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

RawPayload = Mapping[str, Any]
"""A channel's own JSON, as received; only connectors look inside."""

_CURRENCY = re.compile(r"^[A-Z]{3}$")


class InvalidValueError(ValueError):
    """A value type refused its input; the message names the field, never echoes buyer data."""


class OrderStatus(enum.StrEnum):
    """Canonical order status, whatever the channel calls it."""

    PENDING = "pending"  # the buyer committed but the channel has not confirmed payment yet
    OPEN = "open"
    PARTIALLY_SHIPPED = "partially_shipped"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"


def _require_aware(name: str, value: datetime | None) -> None:
    if value is not None and value.tzinfo is None:
        raise InvalidValueError(f"{name} must be timezone-aware")


@dataclass(frozen=True)
class Money:
    """An exact amount in one currency."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal) or not self.amount.is_finite():
            raise InvalidValueError(f"money amount must be a finite Decimal, got {self.amount!r}")
        if not _CURRENCY.match(self.currency):
            raise InvalidValueError(f"currency must be an ISO 4217 code, got {self.currency!r}")


@dataclass(frozen=True)
class Address:
    """A ship-to address. Buyer data: never logged, erased on request."""

    name: str | None = None
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country_code: str | None = None
    phone: str | None = None

    def __repr__(self) -> str:
        return f"Address(country_code={self.country_code!r}, ...)"


@dataclass(frozen=True)
class OrderLine:
    """One line of a canonical order: the channel's SKU and how much was ordered, cancelled, shipped."""

    external_line_id: str
    sku: str
    quantity: int
    quantity_cancelled: int = 0
    quantity_shipped: int = 0
    unit_price: Money | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("quantity", "quantity_cancelled", "quantity_shipped"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidValueError(
                    f"line {self.external_line_id}: {name} must be an integer >= 0"
                )
        if self.quantity_cancelled + self.quantity_shipped > self.quantity:
            raise InvalidValueError(
                f"line {self.external_line_id}: cancelled + shipped exceeds the quantity ordered"
            )
        if not self.external_line_id or not self.sku:
            raise InvalidValueError("a line needs its channel line id and a SKU")

    @property
    def live_quantity(self) -> int:
        """Units still owed or already shipped: what the ledger must count for this line."""
        return self.quantity - self.quantity_cancelled


@dataclass(frozen=True)
class Order:
    """A canonical order as a channel reports it, at the channel's `updated_at`."""

    external_id: str
    status: OrderStatus
    currency: str
    updated_at: datetime
    lines: Sequence[OrderLine]
    number: str | None = None
    total: Money | None = None
    created_at: datetime | None = None
    ship_to: Address | None = None
    buyer_ref: str | None = field(default=None, repr=False)  # buyer data: kept out of logs
    # False when the marketplace ships from its own stock (Amazon FBA): stored, reserves nothing.
    is_reserving: bool = True
    # Parcels the channel knows of (the seller shipped in the marketplace's own admin, or ours
    # once pushed), with tracking: recorded here as shipments of channel origin.
    shipments: Sequence[ChannelShipment] = ()
    # The channel told part of the order (Amazon's ORDER_CHANGE summary: status and lines, no
    # prices, address or buyer): what it leaves out keeps what the store already holds.
    is_partial: bool = False

    def __post_init__(self) -> None:
        if not self.external_id:
            raise InvalidValueError("an order needs the channel's id")
        if not _CURRENCY.match(self.currency):
            raise InvalidValueError(f"order {self.external_id}: currency must be an ISO 4217 code")
        _require_aware("updated_at", self.updated_at)
        _require_aware("created_at", self.created_at)
        if self.total is not None and self.total.currency != self.currency:
            raise InvalidValueError(
                f"order {self.external_id}: total is not in the order's currency"
            )
        ids = [line.external_line_id for line in self.lines]
        if len(ids) != len(set(ids)):
            raise InvalidValueError(f"order {self.external_id}: duplicate line ids")


@dataclass(frozen=True)
class OrderPage:
    """One page of polled orders and where the next page starts (None: this was the last)."""

    orders: Sequence[Order]
    next_cursor: str | None = None


@dataclass(frozen=True)
class OrderVersion:
    """An order's id and when the channel last changed it, without the order."""

    external_id: str
    updated_at: datetime


@dataclass(frozen=True)
class OrderVersionPage:
    """One page of order versions, oldest change first, and where the next page starts."""

    versions: Sequence[OrderVersion]
    next_cursor: str | None = None


@runtime_checkable
class ReadsOrderVersions(Protocol):
    """A connector that can list which orders changed, cheaply, before reading any in full
    (Shopify: a page of ids costs a fraction of one order's query). The poller then reads only
    the orders the store does not hold at that version, with `fetch_order`."""

    async def fetch_order_versions(
        self, updated_since: datetime, cursor: str | None
    ) -> OrderVersionPage:
        """Versions of the orders updated at or after `updated_since`, as `fetch_orders` pages."""


@runtime_checkable
class ReadsListedOrders(Protocol):
    """A `ReadsOrderVersions` connector whose version pages carry the orders, all but a part
    that costs calls (eBay: getOrders pages hold each order, not its parcels). The poller reads
    an order it lacks with `fetch_listed_order`, which completes the order listed, instead of
    `fetch_order`."""

    async def fetch_listed_order(self, version: OrderVersion) -> Order:
        """The order at (or after) the version listed; NotFoundError if it is gone."""


@runtime_checkable
class ListsOrderVersionsInBulk(Protocol):
    """A connector with a bulk list of which orders changed in a long window, too slow or too
    dear for every poll but far cheaper than reading the window page by page (Amazon: the All
    Orders report, one document for up to 30 days, against searchOrders' 100 orders every 3
    minutes). Reconciles use it before `ReadsOrderVersions` and `fetch_orders`; polls use it
    only when no poll has finished for longer than `bulk_after` (None: never). It pays where
    the store already holds most orders of the window (from notifications): each one it lacks
    costs a `fetch_order`. Versions are given as the earliest time the store may date that
    change."""

    @property
    def bulk_after(self) -> timedelta | None:
        """How long without a finished poll before polls read from the bulk list."""

    async def bulk_order_versions(
        self, updated_since: datetime, cursor: str | None
    ) -> OrderVersionPage:
        """Versions of the orders updated at or after `updated_since`, a page at a time."""


@dataclass(frozen=True)
class StockTarget:
    """Set `listing_ref` to `quantity`; with compare-and-swap, only if it now holds `expected`."""

    listing_ref: str
    quantity: int
    expected: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    # A push to a listing's last units (sold out, or down to a few): the next buyer of it on
    # this channel is the one it would oversell, so a channel whose bulk path is slow (Amazon's
    # feeds, processed in minutes) sends it by its fastest one.
    urgent: bool = False

    def __post_init__(self) -> None:
        if self.quantity < 0:
            raise InvalidValueError(
                f"listing {self.listing_ref}: a stock target cannot be negative"
            )


class PushOutcome(enum.StrEnum):
    """What a channel did with one stock target."""

    APPLIED = "applied"
    CONFLICT = "conflict"  # compare-and-swap: the channel held something other than `expected`
    REJECTED = "rejected"  # permanent refusal for this listing (its reason in `error`)
    RETRY = "retry"  # a transient failure for this listing only


@dataclass(frozen=True)
class StockPushResult:
    """The channel's answer for one listing of a batch."""

    listing_ref: str
    outcome: PushOutcome
    actual: int | None = None  # on CONFLICT, what the channel holds now
    error: str | None = None
    # On RETRY: not sent, held back by the channel's limits for at least this many seconds (a
    # deferral, not a failed try).
    retry_after: float | None = None


@dataclass(frozen=True)
class ShipmentLine:
    """Units of one of the order's lines in a parcel."""

    external_line_id: str
    quantity: int


@dataclass(frozen=True)
class ChannelShipment:
    """A parcel as the channel reports it on an order."""

    external_id: str
    lines: Sequence[ShipmentLine]
    shipped_at: datetime
    carrier: str | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None

    def __post_init__(self) -> None:
        if not self.external_id:
            raise InvalidValueError("a channel shipment needs the channel's id")
        _require_aware("shipped_at", self.shipped_at)
        for line in self.lines:
            if line.quantity < 1:
                raise InvalidValueError(
                    f"shipment {self.external_id}: line {line.external_line_id} ships no units"
                )


@dataclass(frozen=True)
class ChannelListing:
    """One thing on the channel that holds a quantity, with the seller's SKU it carries."""

    listing_ref: str
    sku: str | None
    quantity: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FulfillmentRequest:
    """Tell the origin channel a parcel left, with tracking; `key` is unique per shipment."""

    key: str
    order_external_id: str
    lines: Sequence[ShipmentLine]
    carrier: str | None
    tracking_number: str | None
    shipped_at: datetime
    tracking_url: str | None = None


@dataclass(frozen=True)
class CancelRequest:
    """Cancel an order (or some of its lines) on its origin channel; `key` is unique per cancel."""

    key: str
    order_external_id: str
    lines: Sequence[ShipmentLine] = ()
    reason: str = "other"


@dataclass(frozen=True)
class Capabilities:
    """What a channel allows, so the engine can batch and pace without knowing the channel."""

    max_stock_batch: int = 1
    max_in_flight: int = 1
    supports_compare_and_swap: bool = False
    supports_webhooks: bool = False
    idempotent_fulfillment: bool = False  # the channel dedupes on our key; else ask before resend


@runtime_checkable
class Connector(Protocol):
    """One channel account, spoken to over its API. Never touches the store."""

    name: str
    capabilities: Capabilities

    async def check_connection(self) -> None:
        """Prove the credentials work; AuthError when they do not."""

    async def fetch_orders(self, updated_since: datetime, cursor: str | None) -> OrderPage:
        """Orders updated at or after `updated_since`, oldest first, one page at a time."""

    async def fetch_order(self, external_id: str) -> Order:
        """One order by the channel's id; NotFoundError if there is none."""

    async def push_stock(self, targets: Sequence[StockTarget]) -> Sequence[StockPushResult]:
        """Set quantities, at most `capabilities.max_stock_batch` per call; one result per target."""

    async def read_stock(self, listing_refs: Sequence[str]) -> Mapping[str, int]:
        """What the channel shows now for these listings (missing ones are left out)."""

    async def list_listings(self) -> Sequence[ChannelListing]:
        """Every listing of the account with its SKU and quantity: binding and onboarding."""

    def listing_pages(self) -> AsyncIterator[Sequence[ChannelListing]]:
        """The same listings as `list_listings`, one channel page at a time, so a reader of a
        large catalogue holds one page, never the whole account."""

    async def push_fulfillment(self, request: FulfillmentRequest) -> str:
        """Record a shipment with tracking on the channel; answer the channel's fulfilment id."""

    async def find_fulfillment(self, request: FulfillmentRequest) -> str | None:
        """The channel's id of a fulfilment matching `request` if it is already there, else None."""

    async def cancel_order(self, request: CancelRequest) -> None:
        """Cancel on the channel; PermanentError if the channel refuses (e.g. already shipped)."""

    async def aclose(self) -> None:
        """Release connections."""
