"""The sandbox store's state and what changes it: seeding, a buyer's order, stock set by the API
or in the admin, fulfilments and cancellations. Every change tells the listeners (the webhook
dispatcher) what happened, once, when it happens.

Stock follows Shopify's quantity states, reduced to three: an order moves units from `available`
to `committed` at the location it is assigned to; a fulfilment takes them out of `committed`
(on hand drops); a cancellation with restock moves them back to `available`.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sandbox.shopify.model import (
    Buyer,
    Clock,
    Fulfillment,
    FulfillmentOrder,
    FulfillmentOrderLine,
    Level,
    LineItem,
    Location,
    Order,
    Subscription,
    Variant,
    parse_gid,
)

Listener = Callable[[str, object], None]
"""Told (topic, resource) of every change, e.g. ("orders/create", order)."""

_ID_BASES = {
    "Location": 65_000_000_000,
    "Product": 7_100_000_000_000,
    "ProductVariant": 42_000_000_000_000,
    "InventoryItem": 44_000_000_000_000,
    "Order": 5_600_000_000_000,
    "LineItem": 13_000_000_000_000,
    "FulfillmentOrder": 6_500_000_000_000,
    "FulfillmentOrderLineItem": 14_000_000_000_000,
    "Fulfillment": 5_100_000_000_000,
    "Customer": 7_800_000_000_000,
    "WebhookSubscription": 1_400_000_000_000,
    "InventoryAdjustmentGroup": 24_000_000_000_000,
    "Job": 1_000_000,
}


class StoreError(Exception):
    """A change the store refuses; `status` is the HTTP status the control API answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Change:
    """One quantity change: which level, which quantity name, by how much, to what."""

    level: Level
    name: str
    delta: int
    after: int


@dataclass(frozen=True)
class PendingSale:
    """Units a buyer will order just before the next API stock set that touches the SKU."""

    sku: str
    quantity: int
    buyer: Buyer


class ShopStore:
    """One Shopify store's data, in memory."""

    def __init__(
        self,
        shop: str,
        *,
        currency: str,
        clock: Clock,
        rng: random.Random,
        locations: Sequence[str] = ("Main warehouse",),
    ) -> None:
        self.shop = shop
        self.currency = currency
        self.clock = clock
        self.rng = rng
        self.created_at = self.now()
        self.listeners: list[Listener] = []
        self.locations: dict[int, Location] = {}
        self.variants: dict[int, Variant] = {}
        self.by_sku: dict[str, Variant] = {}
        self.item_variant: dict[int, Variant] = {}
        self.levels: dict[tuple[int, int], Level] = {}  # add through stock_level()
        self._item_levels: dict[int, dict[int, Level]] = {}
        self._location_levels: dict[int, dict[int, Level]] = {}
        self.orders: dict[int, Order] = {}
        self.fulfillment_orders: dict[int, FulfillmentOrder] = {}
        self.fulfillments: dict[int, Fulfillment] = {}
        self.subscriptions: dict[int, Subscription] = {}
        self.customers: dict[str, int] = {}
        self.pending_sales: list[PendingSale] = []
        self.installed = True
        self._counters = {kind: itertools.count(base + 1) for kind, base in _ID_BASES.items()}
        self._order_numbers = itertools.count(1001)
        for name in locations:
            self.add_location(name)

    # ---- basics ---------------------------------------------------------------------------

    def now(self) -> datetime:
        """Now, to the second, as Shopify stamps its records."""
        return self.clock.now().replace(microsecond=0)

    def next_id(self, kind: str) -> int:
        """A fresh numeric id for a record of `kind`."""
        return next(self._counters[kind])

    def emit(self, topic: str, resource: object) -> None:
        """Tell every listener about a change."""
        for listener in self.listeners:
            listener(topic, resource)

    @property
    def domain(self) -> str:
        """`NAME.myshopify.com`."""
        return f"{self.shop}.myshopify.com"

    # ---- lookups --------------------------------------------------------------------------

    def location_ref(self, ref: str) -> Location | None:
        """A location by global id, numeric id or name."""
        parsed = parse_gid(ref)
        if parsed is not None:
            return self.locations.get(parsed[1]) if parsed[0] == "Location" else None
        if ref.isdigit():
            return self.locations.get(int(ref))
        return next((loc for loc in self.locations.values() if loc.name == ref), None)

    def levels_of_item(self, item_id: int) -> list[Level]:
        """An item's levels, by location id."""
        found = self._item_levels.get(item_id, {})
        return [found[location_id] for location_id in sorted(found)]

    def levels_at(self, location_id: int) -> list[Level]:
        """A location's levels, by item id."""
        found = self._location_levels.get(location_id, {})
        return [found[item_id] for item_id in sorted(found)]

    def stock_level(self, item_id: int, location_id: int, available: int = 0) -> Level:
        """The item's level at the location, stocking it there (with `available`) if it is not."""
        level = self.levels.get((item_id, location_id))
        if level is None:
            level = Level(item_id, location_id, available, updated_at=self.now())
            self.levels[(item_id, location_id)] = level
            self._item_levels.setdefault(item_id, {})[location_id] = level
            self._location_levels.setdefault(location_id, {})[item_id] = level
        return level

    def inventory(self) -> dict[str, int]:
        """SKU -> available units over every location, as the storefront sells them."""
        return {
            sku: sum(level.available for level in self.levels_of_item(v.inventory_item_id))
            for sku, v in sorted(self.by_sku.items())
        }

    # ---- seeding --------------------------------------------------------------------------

    def add_location(self, name: str) -> Location:
        """A new location (names are unique)."""
        if self.location_ref(name) is not None:
            raise StoreError(409, f"location {name!r} exists already")
        location = Location(self.next_id("Location"), name, self.now())
        self.locations[location.id] = location
        return location

    def add_variant(
        self,
        sku: str,
        *,
        price: Decimal,
        title: str,
        product_title: str,
        stock: Mapping[int, int],
        oversell: bool = False,
    ) -> Variant:
        """A product with one variant, stocked at the given locations (location id -> units)."""
        if sku in self.by_sku:
            raise StoreError(409, f"SKU {sku!r} exists already")
        now = self.now()
        variant = Variant(
            id=self.next_id("ProductVariant"),
            product_id=self.next_id("Product"),
            product_title=product_title,
            title=title,
            sku=sku,
            price=price,
            inventory_item_id=self.next_id("InventoryItem"),
            created_at=now,
            updated_at=now,
            oversell=oversell,
        )
        self.variants[variant.id] = variant
        self.by_sku[sku] = variant
        self.item_variant[variant.inventory_item_id] = variant
        for location_id, units in stock.items():
            self.stock_level(variant.inventory_item_id, location_id, units)
        return variant

    # ---- buyers ---------------------------------------------------------------------------

    def _allocate(self, lines: Sequence[tuple[str, int]]) -> list[tuple[Variant, int, int]]:
        """(variant, units, location id) per line: the first location that has the units, by
        location id; StoreError 404/409 for an unknown SKU or stock that cannot cover it."""
        left: dict[tuple[int, int], int] = {}
        plan = []
        for sku, units in lines:
            variant = self.by_sku.get(sku)
            if variant is None:
                raise StoreError(404, f"no variant has SKU {sku!r}")
            levels = self.levels_of_item(variant.inventory_item_id)
            if not levels:
                raise StoreError(409, f"SKU {sku!r} is not stocked at any location")
            chosen = next(
                (
                    lv
                    for lv in levels
                    if left.get((lv.item_id, lv.location_id), lv.available) >= units
                ),
                levels[0] if variant.oversell else None,
            )
            if chosen is None:
                raise StoreError(409, f"not enough stock of {sku!r} for {units} units")
            key = (chosen.item_id, chosen.location_id)
            left[key] = left.get(key, chosen.available) - units
            plan.append((variant, units, chosen.location_id))
        return plan

    def place_order(
        self,
        lines: Sequence[tuple[str, int]],
        buyer: Buyer,
        *,
        shipping_price: Decimal = Decimal("0.00"),
    ) -> Order:
        """A buyer checks out: the order, its fulfilment orders per location, stock committed."""
        plan = self._allocate(lines)
        now = self.now()
        if buyer.email:
            buyer.customer_id = self.customers.setdefault(buyer.email, self.next_id("Customer"))
        order = Order(
            id=self.next_id("Order"),
            number=next(self._order_numbers),
            created_at=now,
            updated_at=now,
            currency=self.currency,
            lines=[],
            buyer=buyer,
            shipping_price=shipping_price,
            token=f"{self.rng.getrandbits(128):032x}",
        )
        by_location: dict[int, list[FulfillmentOrderLine]] = {}
        touched: list[Level] = []
        for variant, units, location_id in plan:
            line = LineItem(
                id=self.next_id("LineItem"),
                variant_id=variant.id,
                sku=variant.sku,
                title=variant.product_title,
                quantity=units,
                price=variant.price,
                current_quantity=units,
            )
            order.lines.append(line)
            fo_line = FulfillmentOrderLine(
                self.next_id("FulfillmentOrderLineItem"), line.id, units, units
            )
            by_location.setdefault(location_id, []).append(fo_line)
            level = self.levels[(variant.inventory_item_id, location_id)]
            level.available -= units
            level.committed += units
            level.updated_at = now
            if level not in touched:
                touched.append(level)
        for location_id, fo_lines in by_location.items():
            fulfillment_order = FulfillmentOrder(
                self.next_id("FulfillmentOrder"), order.id, location_id, fo_lines, "OPEN", now, now
            )
            order.fulfillment_orders.append(fulfillment_order)
            self.fulfillment_orders[fulfillment_order.id] = fulfillment_order
        self.orders[order.id] = order
        self.emit("orders/create", order)
        for level in touched:
            self.emit("inventory_levels/update", level)
        return order

    def run_pending_sales(self, skus: Iterable[str]) -> list[Order]:
        """Place the orders queued to race the next stock set of any of `skus`."""
        wanted = set(skus)
        due = [sale for sale in self.pending_sales if sale.sku in wanted]
        self.pending_sales = [sale for sale in self.pending_sales if sale.sku not in wanted]
        return [self.place_order([(sale.sku, sale.quantity)], sale.buyer) for sale in due]

    # ---- stock ----------------------------------------------------------------------------

    def set_quantity(self, level: Level, name: str, quantity: int) -> list[Change]:
        """Set a level's `available` or `on_hand` (the other moves with it); no event."""
        delta = quantity - (level.available if name == "available" else level.on_hand)
        if delta == 0:
            return []
        level.available += delta
        level.updated_at = self.now()
        other = "on_hand" if name == "available" else "available"
        return [
            Change(level, name, delta, quantity),
            Change(level, other, delta, level.quantity(other) or 0),
        ]

    def levels_changed(self, changes: Iterable[Change]) -> None:
        """Tell listeners about every level a batch of changes touched, once each."""
        seen: list[Level] = []
        for change in changes:
            if change.level not in seen:
                seen.append(change.level)
        for level in seen:
            self.emit("inventory_levels/update", level)

    # ---- fulfilment and cancellation ------------------------------------------------------

    def fulfill(
        self,
        order: Order,
        picks: Sequence[tuple[FulfillmentOrder, Sequence[tuple[FulfillmentOrderLine, int]]]],
        *,
        company: str | None,
        number: str | None,
        url: str | None,
        notify_customer: bool,
        source: str,
    ) -> Fulfillment:
        """Ship units of fulfilment-order lines (already checked) and record the fulfilment."""
        now = self.now()
        lines_by_id = {line.id: line for line in order.lines}
        shipped: list[tuple[int, int]] = []
        for fulfillment_order, fo_lines in picks:
            for fo_line, units in fo_lines:
                fo_line.remaining -= units
                line = lines_by_id[fo_line.line_item_id]
                line.fulfilled += units
                shipped.append((line.id, units))
                variant = self.variants[line.variant_id]
                level = self.levels[(variant.inventory_item_id, fulfillment_order.location_id)]
                level.committed -= units
                level.updated_at = now
            done = all(fo_line.remaining == 0 for fo_line in fulfillment_order.lines)
            fulfillment_order.status = "CLOSED" if done else "IN_PROGRESS"
            fulfillment_order.updated_at = now
        fulfillment = Fulfillment(
            id=self.next_id("Fulfillment"),
            order_id=order.id,
            name=f"{order.name}.{len(order.fulfillments) + 1}",
            location_id=picks[0][0].location_id,
            lines=shipped,
            tracking_company=company,
            tracking_number=number,
            tracking_url=url,
            notify_customer=notify_customer,
            created_at=now,
            source=source,
            fulfillment_order_ids=[fo.id for fo, _ in picks],
        )
        order.fulfillments.append(fulfillment)
        order.updated_at = now
        self.fulfillments[fulfillment.id] = fulfillment
        self.emit("fulfillments/create", fulfillment)
        status = order.fulfillment_status
        self.emit(
            "orders/fulfilled" if status == "FULFILLED" else "orders/partially_fulfilled", order
        )
        self.emit("orders/updated", order)
        return fulfillment

    def remaining_picks(
        self, order: Order
    ) -> list[tuple[FulfillmentOrder, list[tuple[FulfillmentOrderLine, int]]]]:
        """Every open unit of an order, per fulfilment order (what the admin's "fulfil all" ships)."""
        picks = []
        for fulfillment_order in order.fulfillment_orders:
            lines = [(line, line.remaining) for line in fulfillment_order.lines if line.remaining]
            if lines and fulfillment_order.status in {"OPEN", "IN_PROGRESS"}:
                picks.append((fulfillment_order, lines))
        return picks

    def cancel(
        self,
        order: Order,
        *,
        reason: str,
        restock: bool,
        refund: bool,
        staff_note: str | None = None,
    ) -> None:
        """Cancel an order with no fulfilment; StoreError 409 otherwise."""
        if order.cancelled_at is not None:
            raise StoreError(409, "the order is already cancelled")
        if order.fulfillments:
            raise StoreError(409, "the order has fulfilments; cancel them first")
        now = self.now()
        touched: list[Level] = []
        lines_by_id = {line.id: line for line in order.lines}
        for fulfillment_order in order.fulfillment_orders:
            for fo_line in fulfillment_order.lines:
                variant = self.variants[lines_by_id[fo_line.line_item_id].variant_id]
                level = self.levels[(variant.inventory_item_id, fulfillment_order.location_id)]
                level.committed -= fo_line.remaining
                if restock:
                    level.available += fo_line.remaining
                    if level not in touched:
                        touched.append(level)
                level.updated_at = now
                fo_line.remaining = 0
            fulfillment_order.status = "CLOSED"
            fulfillment_order.updated_at = now
        for line in order.lines:
            line.current_quantity = 0
        order.cancelled_at = now
        order.cancel_reason = reason
        order.refunded = refund
        order.staff_note = staff_note
        order.updated_at = now
        self.emit("orders/cancelled", order)
        self.emit("orders/updated", order)
        for level in touched:
            self.emit("inventory_levels/update", level)
