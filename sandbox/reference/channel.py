"""One reference channel's state and the rules its API enforces, over a MemoryMarketplace.

The marketplace model (orders, stock, shipped and cancelled quantities, strictly increasing
updated-at) is the in-memory one; this module adds what an HTTP marketplace has on top: listings
with their own ids, parcels with tracking, idempotency keys, batch limits, compare-and-swap and
refusals. Every method is synchronous, so one call is atomic on the server's event loop. Errors
are raised as ApiError with the HTTP status and a message that never quotes buyer data.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connectors.base import Address, Order, OrderStatus, ShipmentLine
from connectors.memory.marketplace import (
    MemoryMarketplace,
    OutOfStockError,
    ReceivedCancel,
    ReceivedFulfillment,
)
from sandbox.reference.faults import ChannelFaults, FaultSettings

LISTING_PREFIX = "L-"
DEFAULT_MAX_STOCK_BATCH = 50
MAX_PAGE_SIZE = 250
MAX_STOCK_READ = 100
CALL_LOG_MAX = 100_000  # the newest API calls kept for `GET /_sandbox/calls?log=1`


class ApiError(Exception):
    """An answer other than success: HTTP status, a machine code and a human message."""

    def __init__(
        self, status: int, code: str, message: str, *, extra: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = dict(extra or {})


@dataclass(frozen=True)
class ChannelOptions:
    """How one channel behaves, from `--channel NAME[:cas][:idempotent][:oversell][:batch=N]`."""

    name: str
    compare_and_swap: bool = False
    idempotent: bool = False
    allow_oversell: bool = False
    max_stock_batch: int = DEFAULT_MAX_STOCK_BATCH


@dataclass(frozen=True)
class Parcel:
    """A fulfilment on an order: received through the API, or shipped in the channel's admin."""

    id: str
    order_id: str
    lines: tuple[tuple[str, int], ...]  # (line id, units)
    carrier: str | None
    tracking_number: str | None
    tracking_url: str | None
    shipped_at: datetime
    source: str  # "api" or "admin"
    idempotency_key: str | None = None


@dataclass(frozen=True)
class CallRecord:
    """One API call as it arrived: operation, the server's time of arrival, its query string."""

    operation: str
    at: datetime
    query: str


@dataclass(frozen=True)
class StockItem:
    """One listing of a stock batch: the figure to set, and with compare-and-swap what it holds."""

    listing: str
    quantity: int
    expected: int | None = None


@dataclass(frozen=True)
class StockResult:
    """The channel's answer for one item of a batch."""

    listing: str
    status: str  # applied, conflict, rejected
    quantity: int | None = None
    reason: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _shipment_lines(units: Mapping[str, int]) -> tuple[ShipmentLine, ...]:
    return tuple(ShipmentLine(line_id, quantity) for line_id, quantity in sorted(units.items()))


@dataclass
class SandboxChannel:
    """One channel of the reference sandbox: its marketplace, listings, parcels and faults."""

    options: ChannelOptions
    seed: int = 0
    market: MemoryMarketplace = field(init=False)
    faults: ChannelFaults = field(init=False)
    parcels: list[Parcel] = field(default_factory=list, init=False)
    ref_of_sku: dict[str, str] = field(default_factory=dict, init=False)
    cancel_keys: dict[str, str] = field(default_factory=dict, init=False)  # key -> order id
    # Every API call in arrival order (bounded): lets a test tell which scheduled run called when.
    call_log: deque[CallRecord] = field(
        default_factory=lambda: deque(maxlen=CALL_LOG_MAX), init=False
    )

    def __post_init__(self) -> None:
        self.market = MemoryMarketplace(
            rng=random.Random(self.seed),
            clock=_now,
            allow_oversell=self.options.allow_oversell,
        )
        self.faults = ChannelFaults.from_settings(FaultSettings())

    @property
    def name(self) -> str:
        """The channel's name, the first segment of its URLs."""
        return self.options.name

    def set_faults(self, settings: FaultSettings) -> None:
        """Replace every fault knob; reseed the draws when a seed is given."""
        self.faults = ChannelFaults.from_settings(settings)
        if settings.seed is not None:
            self.market.rng.seed(settings.seed)

    # ---- listings and stock ---------------------------------------------------------------

    def sku_of(self, listing: str) -> str:
        """The seller's SKU a listing carries."""
        return self.market.sku_of[listing]

    def set_listing_quantities(self, quantities: Mapping[str, int]) -> list[tuple[str, str, int]]:
        """The seller sets figures in the channel's admin, creating listings for new SKUs."""
        changed = []
        for sku, quantity in quantities.items():
            ref = self.ref_of_sku.get(sku)
            if ref is None:
                ref = LISTING_PREFIX + sku
                self.ref_of_sku[sku] = ref
                self.market.sku_of[ref] = sku
            self.market.set_stock(ref, quantity)
            changed.append((ref, sku, quantity))
        return changed

    def listings_after(self, after: str | None, limit: int) -> tuple[list[str], str | None]:
        """Listing refs in order, after `after`; the last ref handed out when there are more."""
        refs = sorted(self.market.stock)
        remaining = [ref for ref in refs if after is None or ref > after]
        page = remaining[:limit]
        return page, (page[-1] if len(remaining) > limit else None)

    def inventory(self) -> dict[str, int]:
        """SKU -> quantity, as the channel shows it now."""
        return {self.sku_of(ref): qty for ref, qty in sorted(self.market.stock.items())}

    def set_stock(self, items: Sequence[StockItem]) -> list[StockResult]:
        """Apply one batch: every item applied, refused as a conflict, or rejected."""
        if not items:
            raise ApiError(422, "invalid", "items: a batch needs at least one listing")
        if len(items) > self.options.max_stock_batch:
            raise ApiError(
                422,
                "batch_too_large",
                f"items: a batch of {len(items)} exceeds the maximum of "
                f"{self.options.max_stock_batch}",
            )
        seen: set[str] = set()
        for item in items:
            if item.listing in seen:
                raise ApiError(422, "invalid", f"items: listing {item.listing} appears twice")
            seen.add(item.listing)
            if item.expected is not None and not self.options.compare_and_swap:
                raise ApiError(
                    422, "invalid", "items: expected is refused: compare-and-swap is off here"
                )
        self.market.batch_sizes.append(len(items))
        return [self._set_one(item) for item in items]

    def _set_one(self, item: StockItem) -> StockResult:
        stock = self.market.stock
        if item.listing not in stock:
            return StockResult(item.listing, "rejected", reason="no such listing")
        current = stock[item.listing]
        if item.expected is not None and current != item.expected:
            return StockResult(item.listing, "conflict", quantity=current)
        stock[item.listing] = item.quantity
        self.market.pushes.setdefault(item.listing, []).append(item.quantity)
        return StockResult(item.listing, "applied", quantity=item.quantity)

    def set_listing_stock(self, listing: str, quantity: int, expected: int | None) -> int:
        """Set one listing; ApiError 409 with the current figure when `expected` is stale."""
        if listing not in self.market.stock:
            raise ApiError(404, "not_found", f"no listing {listing}")
        if expected is not None and not self.options.compare_and_swap:
            raise ApiError(422, "invalid", "expected is refused: compare-and-swap is off here")
        result = self._set_one(StockItem(listing, quantity, expected))
        if result.status == "conflict":
            raise ApiError(
                409,
                "conflict",
                f"listing {listing} holds {result.quantity}, not {expected}",
                extra={"quantity": result.quantity},
            )
        return quantity

    # ---- orders -----------------------------------------------------------------------------

    def order(self, order_id: str) -> Order:
        """One order; ApiError 404 when the channel has none."""
        found = self.market.orders.get(order_id)
        if found is None:
            raise ApiError(404, "not_found", f"no order {order_id}")
        return found

    def parcels_of(self, order_id: str) -> list[Parcel]:
        """The fulfilments of an order, oldest first."""
        return [p for p in self.parcels if p.order_id == order_id]

    def place_order(
        self,
        lines: Sequence[tuple[str, int]],
        *,
        order_id: str | None,
        buyer_ref: str | None,
        ship_to: Address | None,
    ) -> Order:
        """A buyer buys `(sku, units)` lines: the channel lowers its stock and records the order."""
        unknown = sorted({sku for sku, _ in lines if sku not in self.ref_of_sku})
        if unknown:
            raise ApiError(422, "invalid", f"lines: no listing for SKU {', '.join(unknown)}")
        if order_id is not None and order_id in self.market.orders:
            raise ApiError(409, "duplicate", f"order {order_id} already exists")
        wanted: dict[str, int] = {}
        for sku, units in lines:
            wanted[sku] = wanted.get(sku, 0) + units
        short = sorted(
            sku
            for sku, units in wanted.items()
            if self.market.stock_of(self.ref_of_sku[sku]) < units
        )
        if short and not self.options.allow_oversell:
            raise ApiError(409, "out_of_stock", f"not enough stock for SKU {', '.join(short)}")
        refs = [(self.ref_of_sku[sku], units) for sku, units in lines]
        try:
            placed = self.market.place_order(refs, external_id=order_id, buyer_ref=buyer_ref)
        except OutOfStockError as err:  # the model's own check agrees with ours
            raise ApiError(409, "out_of_stock", "not enough stock") from err
        except ValueError as err:
            raise ApiError(422, "invalid", f"lines: {err}") from err
        if ship_to is not None:
            placed = self.market.update(placed.external_id, ship_to=ship_to)
        return placed

    def orders_after(
        self, updated_since: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> tuple[list[Order], tuple[datetime, str] | None]:
        """Orders updated at or after `updated_since` by (updated_at, id), after the key `after`;
        the last key handed out when there are more."""
        ordered = sorted(
            (o for o in self.market.orders.values() if o.updated_at >= updated_since),
            key=lambda o: (o.updated_at, o.external_id),
        )
        remaining = [o for o in ordered if after is None or (o.updated_at, o.external_id) > after]
        page = remaining[:limit]
        last = (page[-1].updated_at, page[-1].external_id) if page else None
        return page, (last if len(remaining) > limit else None)

    # ---- fulfilments and cancels --------------------------------------------------------------

    def _refuse_if_configured(self, order_id: str) -> None:
        reason = self.faults.settings.refuse.get(order_id)
        if reason is not None:
            raise ApiError(422, "refused", reason)

    def create_fulfillment(
        self,
        order_id: str,
        lines: Sequence[tuple[str, int]],
        *,
        carrier: str | None,
        tracking_number: str | None,
        tracking_url: str | None,
        shipped_at: datetime | None,
        idempotency_key: str | None,
    ) -> tuple[Parcel, bool]:
        """Record a shipment sent through the API; answer the parcel and whether it is new.

        Only an idempotent channel remembers keys: elsewhere a resend ships again, as eBay's
        createShippingFulfillment would, and is refused once the units are used up.
        """
        self.order(order_id)
        self._refuse_if_configured(order_id)
        key = idempotency_key if self.options.idempotent else None
        if key is not None:
            for parcel in self.parcels:
                if parcel.idempotency_key == key and parcel.order_id == order_id:
                    return parcel, False
        parcel = self._ship(
            order_id, lines, carrier, tracking_number, tracking_url, shipped_at, "api", key
        )
        self.market.fulfillments.append(
            ReceivedFulfillment(
                key or "",
                order_id,
                _shipment_lines(dict(parcel.lines)),
                carrier,
                tracking_number,
                fulfillment_id=parcel.id,
            )
        )
        return parcel, True

    def ship_in_admin(
        self,
        order_id: str,
        lines: Sequence[tuple[str, int]] | None,
        *,
        carrier: str | None,
        tracking_number: str | None,
    ) -> Parcel:
        """The seller ships in the channel's own admin (every open unit when `lines` is None)."""
        order = self.order(order_id)
        if lines is None:
            lines = [
                (line.external_line_id, line.live_quantity - line.quantity_shipped)
                for line in order.lines
                if line.live_quantity > line.quantity_shipped
            ]
            if not lines:
                raise ApiError(422, "invalid", f"order {order_id} has nothing left to ship")
        return self._ship(order_id, lines, carrier, tracking_number, None, None, "admin", None)

    def _ship(
        self,
        order_id: str,
        lines: Sequence[tuple[str, int]],
        carrier: str | None,
        tracking_number: str | None,
        tracking_url: str | None,
        shipped_at: datetime | None,
        source: str,
        key: str | None,
    ) -> Parcel:
        if not lines:
            raise ApiError(422, "invalid", "lines: a fulfilment needs at least one line")
        units: dict[str, int] = {}
        for line_id, quantity in lines:
            units[line_id] = units.get(line_id, 0) + quantity
        try:
            self.market.ship_on_channel(order_id, units)
        except ValueError as err:
            raise ApiError(422, "invalid", f"lines: {err}") from err
        parcel = Parcel(
            id=f"FUL-{len(self.parcels) + 1}",  # our own ids, apart from the model's
            order_id=order_id,
            lines=tuple(sorted(units.items())),
            carrier=carrier,
            tracking_number=tracking_number,
            tracking_url=tracking_url,
            shipped_at=shipped_at or _now(),
            source=source,
            idempotency_key=key,
        )
        self.parcels.append(parcel)
        return parcel

    def cancel(
        self,
        order_id: str,
        lines: Sequence[tuple[str, int]] | None,
        *,
        reason: str,
        idempotency_key: str | None,
        through_api: bool = True,
    ) -> Order:
        """Cancel open units (all of them when `lines` is None); a shipped order is refused."""
        order = self.order(order_id)
        if through_api:
            self._refuse_if_configured(order_id)
        key = idempotency_key if self.options.idempotent else None
        if key is not None and self.cancel_keys.get(key) == order_id:
            return order
        units: dict[str, int] | None = None
        if lines is not None:
            units = {}
            for line_id, quantity in lines:
                units[line_id] = units.get(line_id, 0) + quantity
        if order.status is OrderStatus.SHIPPED:
            raise ApiError(422, "already_shipped", f"order {order_id} is already shipped")
        try:
            cancelled = self.market.cancel(order_id, units)
        except ValueError as err:
            raise ApiError(422, "invalid", f"lines: {err}") from err
        if key is not None:
            self.cancel_keys[key] = order_id
        if through_api:
            self.market.cancels.append(
                ReceivedCancel(key or "", order_id, _shipment_lines(units or {}), reason)
            )
        return cancelled
