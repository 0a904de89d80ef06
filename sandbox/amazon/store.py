"""The state of one sandbox seller account and every change to it: listings and their quantities
(with patches that apply later), orders placed by buyers, payments, cancellations and the
packages the seller confirms. Each order change is told to the listeners (the ORDER_CHANGE
notifier) as `(order, change type, reason)`.

An order's `updated_at` moves forward by at least one second at each change: Amazon shows times in
whole seconds, and two states of one order must never look equally new.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sandbox.amazon.errors import StoreError, invalid_input
from sandbox.amazon.model import (
    MARKETPLACES,
    Buyer,
    Clock,
    Listing,
    Order,
    OrderItem,
    Package,
)

OrderListener = Callable[[Order, str, str], None]
"""Told `(order, OrderChangeType, ChangeReason)` after each order change."""

KNOWN_CARRIERS = frozenset(
    {
        "USPS",
        "UPS",
        "UPS Mail Innovations",
        "FedEx",
        "FedEx SmartPost",
        "DHL",
        "DHL eCommerce",
        "OnTrac",
        "Amazon Shipping",
        "Royal Mail",
        "Parcelforce",
        "Evri",
        "DPD",
        "GLS",
        "Deutsche Post",
        "Hermes",
        "Canada Post",
        "Japan Post",
        "Yamato Transport",
    }
)
"""Carrier codes the sandbox recognises. "Other" (with carrierName) and unknown codes are accepted
and shown unrecognised: Amazon takes them, and the buyer then gets no tracking."""


@dataclass(frozen=True)
class PackageInput:
    """The `packageDetail` of a confirmShipment request, already type-checked."""

    package_reference_id: str
    carrier_code: str
    carrier_name: str | None
    shipping_method: str | None
    tracking_number: str
    ship_date: str
    items: list[tuple[str, int]]


class SellerStore:
    """Listings and orders of one seller account."""

    def __init__(
        self,
        seller_id: str,
        marketplace_ids: Sequence[str],
        *,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self.seller_id = seller_id
        self.marketplace_ids = tuple(marketplace_ids)
        self.clock = clock
        self.rng = rng
        self.listings: dict[str, Listing] = {}
        self.orders: dict[str, Order] = {}
        self.listeners: list[OrderListener] = []
        self._patches: list[tuple[float, int, str, int]] = []
        self._patch_numbers = itertools.count()

    # -- listings ---------------------------------------------------------------------------

    def add_listing(
        self,
        sku: str,
        *,
        quantity: int,
        price: Decimal,
        title: str | None = None,
        product_type: str = "PRODUCT",
        fulfillment_channel: str = "DEFAULT",
    ) -> Listing:
        """A new listing (409 when the SKU exists)."""
        if sku in self.listings:
            raise StoreError(409, f"SKU {sku!r} is listed already")
        asin = "B0" + "".join(
            self.rng.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(8)
        )
        now = self.clock.now().replace(microsecond=0)
        listing = Listing(
            sku=sku,
            quantity=quantity,
            price=price,
            title=title or sku,
            asin=asin,
            created_at=now,
            updated_at=now,
            product_type=product_type,
            fulfillment_channel=fulfillment_channel,
        )
        self.listings[sku] = listing
        return listing

    def queue_quantity(self, sku: str, quantity: int, delay_s: float) -> None:
        """Set a listing's quantity now or `delay_s` later (ACCEPTED is not yet applied)."""
        if delay_s <= 0:
            self.settle()
            self._set(sku, quantity)
            return
        due = self.clock.monotonic() + delay_s
        heapq.heappush(self._patches, (due, next(self._patch_numbers), sku, quantity))

    def settle(self) -> None:
        """Apply the queued quantity changes that are due, oldest first."""
        now = self.clock.monotonic()
        while self._patches and self._patches[0][0] <= now:
            _, _, sku, quantity = heapq.heappop(self._patches)
            self._set(sku, quantity)

    def _set(self, sku: str, quantity: int) -> None:
        listing = self.listings.get(sku)
        if listing is not None:
            listing.quantity = quantity
            listing.updated_at = self.clock.now().replace(microsecond=0)

    @property
    def pending_patches(self) -> int:
        """Quantity changes accepted and not yet applied."""
        return len(self._patches)

    def inventory(self) -> dict[str, int]:
        """SKU -> the quantity Amazon shows now."""
        self.settle()
        return {sku: listing.quantity for sku, listing in sorted(self.listings.items())}

    # -- orders -----------------------------------------------------------------------------

    def _order_id(self, marketplace_id: str) -> str:
        prefix = MARKETPLACES.get(marketplace_id, ("", "", "113"))[2]
        while True:
            order_id = f"{prefix}-{self.rng.randrange(10**7):07d}-{self.rng.randrange(10**7):07d}"
            if order_id not in self.orders:
                return order_id

    def _touch(self, order: Order) -> None:
        now = self.clock.now().replace(microsecond=0)
        order.updated_at = max(now, order.updated_at + timedelta(seconds=1))

    def _emit(self, order: Order, change_type: str, reason: str) -> None:
        for listener in list(self.listeners):
            listener(order, change_type, reason)

    def _commit_stock(self, order: Order) -> None:
        for item in order.items:
            listing = self.listings[item.sku]
            listing.quantity = max(0, listing.quantity - item.quantity)

    def place_order(
        self,
        lines: Sequence[tuple[str, int]],
        buyer: Buyer,
        *,
        marketplace_id: str | None = None,
        pending: bool = False,
        shipping_price: Decimal = Decimal("0.00"),
    ) -> Order:
        """A buyer checks out: stock is committed (unless the order is Pending) and ORDER_CHANGE
        sent. 404 for an unknown SKU, 409 when a SKU has too few units."""
        self.settle()
        marketplace = marketplace_id or self.marketplace_ids[0]
        if marketplace not in self.marketplace_ids:
            raise StoreError(404, f"the seller does not sell on marketplace {marketplace}")
        wanted: dict[str, int] = {}
        for sku, units in lines:
            if sku not in self.listings:
                raise StoreError(404, f"no listing has SKU {sku!r}")
            wanted[sku] = wanted.get(sku, 0) + units
        channels = {self.listings[sku].is_fba for sku in wanted}
        if len(channels) > 1:
            raise StoreError(409, "an order is fulfilled either by Amazon or by the seller")
        short = [
            f"{sku} ({self.listings[sku].quantity} left)"
            for sku, n in wanted.items()
            if n > self.listings[sku].quantity
        ]
        if short:
            raise StoreError(409, f"not enough stock: {', '.join(short)}")
        now = self.clock.now().replace(microsecond=0)
        items = []
        for sku, units in lines:
            listing = self.listings[sku]
            items.append(
                OrderItem(
                    order_item_id=f"{self.rng.randrange(10**13, 10**14)}",
                    sku=sku,
                    asin=listing.asin,
                    title=listing.title,
                    quantity=units,
                    unit_price=listing.price,
                )
            )
        order = Order(
            order_id=self._order_id(marketplace),
            marketplace_id=marketplace,
            currency=MARKETPLACES.get(marketplace, ("", "USD", ""))[1],
            created_at=now,
            updated_at=now,
            status="PENDING" if pending else "UNSHIPPED",
            fulfilled_by="AMAZON" if channels == {True} else "MERCHANT",
            items=items,
            buyer=buyer,
            shipping_price=shipping_price,
        )
        if not pending:
            self._commit_stock(order)
        self.orders[order.order_id] = order
        self._emit(order, "OrderStatusChange", "Order placed")
        return order

    def order(self, order_id: str) -> Order:
        """An order by id (StoreError 404)."""
        order = self.orders.get(order_id)
        if order is None:
            raise StoreError(404, f"no order {order_id}")
        return order

    def confirm_payment(self, order: Order) -> None:
        """Payment authorised: a Pending order becomes Unshipped and its stock is committed."""
        if not order.is_pending:
            raise StoreError(409, f"order {order.order_id} is not pending")
        self.settle()
        self._commit_stock(order)
        order.status = "UNSHIPPED"
        self._touch(order)
        self._emit(order, "OrderStatusChange", "Payment authorized")

    def request_cancel(self, order: Order) -> None:
        """The buyer asks to cancel (the seller decides): BuyerRequestedChange."""
        if order.status in ("SHIPPED", "CANCELLED"):
            raise StoreError(409, f"order {order.order_id} is {order.status.lower()}")
        for item in order.items:
            item.buyer_requested_cancel = True
        self._touch(order)
        self._emit(order, "BuyerRequestedChange", "Buyer Requested Cancel")

    def cancel(self, order: Order, reason: str) -> None:
        """The order is cancelled; committed units go back to the listings."""
        if order.status not in ("PENDING", "PENDING_AVAILABILITY", "UNSHIPPED"):
            raise StoreError(
                409, f"order {order.order_id} is {order.status.lower()}: not cancellable"
            )
        if not order.is_pending:
            self.settle()
            for item in order.items:
                listing = self.listings.get(item.sku)
                if listing is not None:
                    listing.quantity += item.unshipped
        order.status = "CANCELLED"
        order.cancel_reason = reason
        self._touch(order)
        self._emit(order, "OrderStatusChange", "Order canceled")

    def confirm_shipment(
        self, order: Order, marketplace_id: str, package: PackageInput, *, apply: bool = True
    ) -> Package:
        """Record a package the seller shipped (ApiError 400 naming what Amazon refuses). An
        identical repeat of a confirmed package is counted and changes nothing."""
        for known in order.packages:
            if known.package_reference_id == package.package_reference_id:
                if _same_package(known, package):
                    known.confirmations += 1
                    return known
                raise invalid_input(
                    f"packageReferenceId {package.package_reference_id} was already confirmed "
                    "for this order with different contents"
                )
        if marketplace_id != order.marketplace_id:
            raise invalid_input(f"marketplaceId {marketplace_id} is not the order's marketplace")
        if order.fulfilled_by == "AMAZON":
            raise invalid_input("the order is fulfilled by Amazon: the seller cannot confirm it")
        if order.status not in ("UNSHIPPED", "PARTIALLY_SHIPPED"):
            raise invalid_input(f"the order is {order.status.lower()}: nothing can be shipped")
        if package.carrier_code == "Other" and not package.carrier_name:
            raise invalid_input("carrierName is required when carrierCode is Other")
        try:
            shipped_at = datetime.fromisoformat(package.ship_date)
        except ValueError:
            shipped_at = None
        if shipped_at is None or shipped_at.tzinfo is None:
            raise invalid_input(f"shipDate {package.ship_date!r} is not an ISO 8601 date-time")
        items = {item.order_item_id: item for item in order.items}
        wanted: dict[str, int] = {}
        for item_id, units in package.items:
            if item_id not in items:
                raise invalid_input(f"orderItemId {item_id} is not an item of this order")
            if units < 1:
                raise invalid_input(f"quantity of orderItemId {item_id} must be at least 1")
            wanted[item_id] = wanted.get(item_id, 0) + units
        for item_id, units in wanted.items():
            if units > items[item_id].unshipped:
                raise invalid_input(
                    f"orderItemId {item_id}: {units} units confirmed, "
                    f"{items[item_id].unshipped} left to ship"
                )
        record = Package(
            order_id=order.order_id,
            package_reference_id=package.package_reference_id,
            carrier_code=package.carrier_code,
            carrier_name=package.carrier_name,
            shipping_method=package.shipping_method,
            tracking_number=package.tracking_number,
            ship_date=package.ship_date,
            items=list(package.items),
            created_at=self.clock.now().replace(microsecond=0),
        )
        if not apply:  # a lost write: answered 204, never recorded
            return record
        order.packages.append(record)
        for item_id, units in wanted.items():
            items[item_id].shipped += units
        done = all(item.unshipped == 0 for item in order.items)
        order.status = "SHIPPED" if done else "PARTIALLY_SHIPPED"
        self._touch(order)
        self._emit(order, "OrderStatusChange", "Order shipped" if done else "Items shipped")
        return record


def _same_package(known: Package, given: PackageInput) -> bool:
    return (
        known.carrier_code == given.carrier_code
        and known.carrier_name == given.carrier_name
        and known.tracking_number == given.tracking_number
        and sorted(known.items) == sorted(given.items)
    )
