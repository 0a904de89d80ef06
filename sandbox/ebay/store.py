"""The sandbox seller account's state and what changes it: seeding listings, a buyer's order,
quantity revisions, shipping fulfilments, cancellations and a buyer closing their account.

Every change a notification topic covers tells the listeners (the notification dispatcher) once,
when it happens: ORDER_CONFIRMATION for each line item of a new order (as eBay sends it),
ITEM_MARKED_SHIPPED for each line item of a package, MARKETPLACE_ACCOUNT_DELETION for a buyer.
"""

from __future__ import annotations

import base64
import itertools
import random
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sandbox.ebay.model import (
    Buyer,
    Clock,
    LineItem,
    Listing,
    Order,
    ShippingFulfillment,
    World,
)

Listener = Callable[[str, dict[str, Any]], None]
"""Told (topic, notification data) of every change a topic covers."""


class StoreError(Exception):
    """A change the account refuses; `status` is the HTTP status the control API answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class NewListing:
    """One SKU to put on sale (control API and command line)."""

    sku: str
    quantity: int
    price: Decimal = Decimal("10.00")
    world: World = World.TRADING
    title: str | None = None
    group: str | None = None  # Trading: SKUs sharing a group are variations of one listing
    out_of_stock_control: bool = True


@dataclass(frozen=True)
class BuyerDetails:
    """What a buyer types at checkout (all optional; made up where missing)."""

    username: str | None = None
    full_name: str | None = None
    email: str | None = None
    phone: str | None = None
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    state_or_province: str | None = None
    postal_code: str | None = None
    country_code: str | None = None


class EbayStore:
    """One eBay seller account's data, in memory."""

    def __init__(
        self,
        *,
        seller: str,
        marketplace_id: str,
        currency: str,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self.seller = seller
        self.marketplace_id = marketplace_id
        self.currency = currency
        self.clock = clock
        self.rng = rng
        self.listeners: list[Listener] = []
        self.listings: dict[str, Listing] = {}  # by SKU
        self.items: dict[str, list[Listing]] = {}  # by item id: the listing's variations
        self.groups: dict[str, str] = {}  # group name -> item id
        self.buyers: dict[str, Buyer] = {}  # by user id
        self._by_username: dict[str, Buyer] = {}
        self.orders: dict[str, Order] = {}
        self.fulfillments: dict[str, ShippingFulfillment] = {}
        self._item_ids = itertools.count(110_000_000_001)
        self._variation_ids = itertools.count(400_000_000_001)
        self._offer_ids = itertools.count(5_000_000_001)
        self._order_numbers = itertools.count(10_001)
        self._line_ids = itertools.count(10_000_000_001)
        self._transaction_ids = itertools.count(2_000_000_000_001)
        self._fulfillment_ids = itertools.count(1)
        self._buyer_numbers = itertools.count(1)

    def now(self) -> datetime:
        """Now, to the millisecond, as eBay stamps its records."""
        moment = self.clock.now()
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    def emit(self, topic: str, data: dict[str, Any]) -> None:
        """Tell every listener about a change."""
        for listener in self.listeners:
            listener(topic, data)

    # ---- listings -------------------------------------------------------------------------

    def add_listings(self, new: Sequence[NewListing]) -> list[Listing]:
        """Put SKUs on sale (all or none); StoreError 409 naming a clash."""
        skus = [spec.sku for spec in new]
        given = Counter(skus)  # not skus.count(): quadratic at 100,000 listings
        taken = sorted({sku for sku in skus if sku in self.listings or given[sku] > 1})
        if taken:
            raise StoreError(409, f"SKUs given twice or listed already: {', '.join(taken)}")
        for spec in new:
            if spec.group is not None and spec.world is not World.TRADING:
                raise StoreError(409, f"{spec.sku}: only Trading listings have variations here")
        created = []
        for spec in new:
            item_id, variation_id = self._place(spec)
            listing = Listing(
                sku=spec.sku,
                world=spec.world,
                item_id=item_id,
                title=spec.title or spec.group or spec.sku,
                price=spec.price,
                quantity=spec.quantity,
                variation_id=variation_id,
                group=spec.group,
                offer_id=str(next(self._offer_ids)) if spec.world is World.INVENTORY else None,
                out_of_stock_control=spec.out_of_stock_control,
            )
            self.listings[listing.sku] = listing
            self.items.setdefault(item_id, []).append(listing)
            created.append(listing)
        return created

    def _place(self, spec: NewListing) -> tuple[str, str | None]:
        if spec.group is None:
            return str(next(self._item_ids)), None
        item_id = self.groups.get(spec.group)
        if item_id is None:
            item_id = self.groups[spec.group] = str(next(self._item_ids))
        return item_id, str(next(self._variation_ids))

    def listing(self, sku: str) -> Listing:
        """The listing selling `sku`; StoreError 404 otherwise."""
        found = self.listings.get(sku)
        if found is None:
            raise StoreError(404, f"no listing has SKU {sku!r}")
        return found

    def set_quantity(self, listing: Listing, quantity: int) -> bool:
        """Set what buyers can buy; whether it changed. At 0 a listing without out-of-stock
        control ends (a fixed-price listing ends when it sells out)."""
        if quantity == listing.quantity:
            return False
        listing.quantity = quantity
        if quantity == 0 and not listing.out_of_stock_control:
            listing.ended = True
        return True

    def inventory(self) -> dict[str, int]:
        """SKU -> quantity buyers can buy now (0 for an ended listing)."""
        return {
            sku: 0 if listing.ended else listing.quantity
            for sku, listing in sorted(self.listings.items())
        }

    # ---- buyers and orders ----------------------------------------------------------------

    def _buyer(self, details: BuyerDetails) -> Buyer:
        known = self._by_username.get(details.username or "")
        if known is not None and not known.deleted:
            return known
        number = next(self._buyer_numbers)
        alphabet = string.ascii_letters + string.digits
        user_id = "".join(self.rng.choice(alphabet) for _ in range(11))
        eias = base64.b64encode(self.rng.randbytes(36)).decode("ascii")
        buyer = Buyer(
            user_id=user_id,
            username=details.username or f"sandbox_buyer_{number}",
            eias_token=eias,
            full_name=details.full_name,
            email=details.email,
            phone=details.phone,
            address_line1=details.address_line1,
            address_line2=details.address_line2,
            city=details.city,
            state_or_province=details.state_or_province,
            postal_code=details.postal_code,
            country_code=details.country_code,
        )
        self.buyers[user_id] = buyer
        self._by_username[buyer.username] = buyer
        return buyer

    def place_order(
        self,
        lines: Sequence[tuple[str, int]],
        details: BuyerDetails,
        *,
        delivery_cost: Decimal = Decimal("0.00"),
    ) -> Order:
        """A buyer checks out (all or nothing): quantities drop, ORDER_CONFIRMATION per line."""
        wanted: dict[str, int] = {}
        for sku, quantity in lines:
            wanted[sku] = wanted.get(sku, 0) + quantity
        for sku, quantity in wanted.items():
            listing = self.listing(sku)
            if listing.ended:
                raise StoreError(409, f"the listing of {sku!r} has ended")
            if listing.quantity < quantity:
                raise StoreError(409, f"{sku!r}: {quantity} wanted, {listing.quantity} available")
        now = self.now()
        items = []
        for sku, quantity in wanted.items():
            listing = self.listings[sku]
            self.set_quantity(listing, listing.quantity - quantity)
            listing.sold += quantity
            items.append(
                LineItem(
                    line_item_id=str(next(self._line_ids)),
                    legacy_item_id=listing.item_id,
                    legacy_variation_id=listing.variation_id,
                    legacy_transaction_id=str(next(self._transaction_ids)),
                    sku=sku,
                    title=listing.title,
                    quantity=quantity,
                    unit_price=listing.price,
                )
            )
        number = next(self._order_numbers)
        order_id = f"{self.rng.randint(10, 29)}-{number:05d}-{self.rng.randint(10_000, 99_999)}"
        first = items[0]
        legacy = (
            f"{first.legacy_item_id}-{first.legacy_transaction_id}"
            if len(items) == 1
            else str(self.rng.randint(10**11, 10**12 - 1))
        )
        order = Order(
            order_id=order_id,
            legacy_order_id=legacy,
            created_at=now,
            modified_at=now,
            currency=self.currency,
            marketplace_id=self.marketplace_id,
            buyer=self._buyer(details),
            lines=items,
            delivery_cost=delivery_cost,
        )
        self.orders[order_id] = order
        for line in items:
            self.emit("ORDER_CONFIRMATION", self._line_data(order, line))
        return order

    def _line_data(self, order: Order, line: LineItem) -> dict[str, Any]:
        # ORDER_CONFIRMATION is sent per line item and the seller fetches the order by its
        # orderId (eBay's topic description); the other fields here are the sandbox's.
        return {
            "orderId": order.order_id,
            "lineItemId": line.line_item_id,
            "legacyItemId": line.legacy_item_id,
            "legacyTransactionId": line.legacy_transaction_id,
            "quantity": line.quantity,
            "marketplaceId": order.marketplace_id,
        }

    def order(self, order_id: str) -> Order:
        """An order by its orderId; StoreError 404 otherwise."""
        found = self.orders.get(order_id)
        if found is None:
            raise StoreError(404, f"no order {order_id}")
        return found

    # ---- shipping and cancelling ----------------------------------------------------------

    def ship(
        self,
        order: Order,
        lines: Iterable[tuple[str, int]] | None,
        *,
        carrier_code: str | None,
        tracking_number: str | None,
        shipped_date: datetime | None,
        source: str,
    ) -> ShippingFulfillment:
        """A package with these (line item id, quantity), or every unshipped unit when None.

        eBay takes several packages for one line (split shipments, corrections), so a blind
        retry of a package makes a second one: callers read before they re-send.
        """
        by_id = {line.line_item_id: line for line in order.lines}
        if lines is None:
            picked = [(line.line_item_id, line.quantity - line.shipped) for line in order.lines]
            picked = [(line_id, n) for line_id, n in picked if n > 0]
        else:
            picked = list(lines)
        now = self.now()
        fulfillment = ShippingFulfillment(
            fulfillment_id=str(next(self._fulfillment_ids)),
            order_id=order.order_id,
            lines=picked,
            carrier_code=carrier_code,
            tracking_number=tracking_number,
            shipped_date=shipped_date or now,
            created_at=now,
            source=source,
        )
        for line_id, quantity in picked:
            line = by_id[line_id]
            line.shipped = min(line.quantity, line.shipped + quantity)
        order.fulfillments.append(fulfillment)
        order.modified_at = now
        self.fulfillments[fulfillment.fulfillment_id] = fulfillment
        for line_id, quantity in picked:
            self.emit(
                "ITEM_MARKED_SHIPPED",
                {
                    "orderId": order.order_id,
                    "lineItemId": line_id,
                    "legacyItemId": by_id[line_id].legacy_item_id,
                    "quantity": quantity,
                    "shippingCarrierCode": carrier_code,
                    "trackingNumber": tracking_number,
                },
            )
        return fulfillment

    def cancel(self, order: Order) -> None:
        """The order is cancelled: its unshipped units go back on sale."""
        if order.cancelled_at is not None:
            raise StoreError(409, f"order {order.order_id} is cancelled already")
        if order.fulfillment_status != "NOT_STARTED":
            raise StoreError(409, f"order {order.order_id} has shipped units")
        now = self.now()
        order.cancelled_at = now
        order.modified_at = now
        for line in order.lines:
            listing = self.listings.get(line.sku)
            if listing is not None and not listing.ended:
                listing.quantity += line.quantity
                listing.sold -= line.quantity

    # ---- accounts -------------------------------------------------------------------------

    def delete_account(self, user_id: str) -> Buyer:
        """A buyer closes their eBay account: MARKETPLACE_ACCOUNT_DELETION is sent."""
        buyer = self.buyers.get(user_id)
        if buyer is None:
            raise StoreError(404, f"no buyer {user_id}")
        if buyer.deleted:
            raise StoreError(409, f"buyer {user_id} was deleted already")
        buyer.deleted = True
        self.emit(
            "MARKETPLACE_ACCOUNT_DELETION",
            {"username": buyer.username, "userId": buyer.user_id, "eiasToken": buyer.eias_token},
        )
        return buyer
