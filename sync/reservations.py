"""The stock ledger: on hand per SKU and location, reservations per order line, channel quantities.

available(sku, location) = on_hand - reserved. A bundle holds no stock of its own: its available
is the minimum over its components of floor(component available / units per bundle), and an
order for a bundle reserves its components.

Locking: every writer that changes a SKU's ledger first locks that SKU's `skus` row, in sorted
order (PostgreSQL `FOR UPDATE`; SQLite serialises writers with `BEGIN IMMEDIATE` instead), after
any order locks. One global order (orders, then SKUs, each sorted) means no deadlocks.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from sync.models import (
    BundleComponent,
    Listing,
    Order,
    OrderLine,
    Reservation,
    Sku,
    StockLevel,
    utcnow,
)


@dataclass(frozen=True)
class StockRules:
    """How much of the available stock one channel is shown."""

    buffer: int = 0
    percent: int = 100
    max_shown: int | None = None
    zero_at_or_below: int = 0

    def apply(self, available: int) -> int:
        """The channel quantity for `available` units: buffer, share, cap, then floor-to-zero."""
        quantity = max(0, available - self.buffer)
        quantity = quantity * self.percent // 100
        if self.max_shown is not None:
            quantity = min(quantity, self.max_shown)
        return 0 if quantity <= self.zero_at_or_below else quantity


def lock_orders(session: Session, keys: Iterable[tuple[int, str]]) -> None:
    """Serialise writers of the same orders (channel id, external id) on PostgreSQL."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for key in sorted({_advisory_key(c, e) for c, e in keys}):
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _advisory_key(channel_id: int, external_id: str) -> int:
    digest = hashlib.blake2b(f"{channel_id}:{external_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_skus(session: Session, skus: Iterable[str]) -> None:
    """Lock the SKU rows of every SKU whose ledger this transaction will change, in sorted order."""
    ordered = sorted(set(skus))
    if not ordered or session.get_bind().dialect.name != "postgresql":
        return
    session.execute(
        select(Sku.sku).where(Sku.sku.in_(ordered)).order_by(Sku.sku).with_for_update()
    ).all()


def known_skus(session: Session, skus: Iterable[str]) -> dict[str, Sku]:
    """Our SKU rows for the given codes (unknown codes are left out)."""
    wanted = set(skus)
    if not wanted:
        return {}
    return {s.sku: s for s in session.scalars(select(Sku).where(Sku.sku.in_(wanted)))}


def components_of(session: Session, skus: Iterable[str]) -> dict[str, list[tuple[str, int]]]:
    """What one unit of each SKU reserves: its components for a bundle, else itself once."""
    rows = known_skus(session, skus)
    expanded: dict[str, list[tuple[str, int]]] = {}
    for code, row in rows.items():
        if row.is_bundle and row.components:
            expanded[code] = [(c.component_sku, c.quantity) for c in row.components]
        else:
            expanded[code] = [(code, 1)]
    return expanded


def bundles_containing(session: Session, skus: Iterable[str]) -> set[str]:
    """Bundles whose available quantity depends on any of these SKUs."""
    wanted = set(skus)
    if not wanted:
        return set()
    return set(
        session.scalars(
            select(BundleComponent.bundle_sku).where(BundleComponent.component_sku.in_(wanted))
        )
    )


def available_by_location(session: Session, skus: Iterable[str]) -> dict[str, dict[str, int]]:
    """sku -> location -> on hand minus open reservations (negative when oversold)."""
    wanted = sorted(set(skus))
    result: dict[str, dict[str, int]] = {s: {} for s in wanted}
    if not wanted:
        return result
    for sku, location, on_hand in session.execute(
        select(StockLevel.sku, StockLevel.location, StockLevel.on_hand).where(
            StockLevel.sku.in_(wanted)
        )
    ):
        result[sku][location] = on_hand
    for sku, location, reserved in session.execute(
        select(Reservation.sku, Reservation.location, func.sum(Reservation.reserved))
        .where(Reservation.sku.in_(wanted))
        .group_by(Reservation.sku, Reservation.location)
    ):
        result[sku][location] = result[sku].get(location, 0) - int(reserved or 0)
    return result


def channel_available(
    session: Session, skus: Iterable[str], locations: Sequence[str]
) -> dict[str, int]:
    """Units each SKU (bundles too) can still sell on a channel fed by `locations`."""
    wanted = set(skus)
    expansion = components_of(session, wanted)
    component_skus = {c for parts in expansion.values() for c, _ in parts}
    by_location = available_by_location(session, component_skus)

    def units(component: str) -> int:
        # An oversold location cannot lend its deficit to another: count each location from zero.
        return sum(max(0, by_location[component].get(loc, 0)) for loc in locations)

    result = {}
    for sku in wanted:
        parts = expansion.get(sku)
        if not parts:
            result[sku] = 0
            continue
        result[sku] = min(units(component) // per for component, per in parts)
    return result


def choose_location(available: Mapping[str, int], locations: Sequence[str], needed: int) -> str:
    """The first of the channel's locations that covers `needed`, else its first (oversold)."""
    for location in locations:
        if available.get(location, 0) >= needed:
            return location
    return locations[0]


def set_on_hand(session: Session, sku: str, location: str, on_hand: int) -> int:
    """Set units on hand at a location (the SKU is locked by the caller); answer the old figure."""
    if on_hand < 0:
        raise ValueError("on hand cannot be negative")
    level = session.get(StockLevel, (sku, location))
    if level is None:
        session.add(StockLevel(sku=sku, location=location, on_hand=on_hand))
        return 0
    old = level.on_hand
    level.on_hand = on_hand
    level.updated_at = utcnow()
    return old


def adjust_on_hand(session: Session, sku: str, location: str, delta: int) -> None:
    """Change on hand by `delta` (shipments consume), never below zero."""
    level = session.get(StockLevel, (sku, location))
    if level is None:
        level = StockLevel(sku=sku, location=location, on_hand=0)
        session.add(level)
    level.on_hand = max(0, level.on_hand + delta)
    level.updated_at = utcnow()


def recompute_oversold(session: Session, skus: Iterable[str]) -> tuple[set[int], set[int]]:
    """Re-derive oversold flags for orders reserving these SKUs; answer (newly flagged, cleared).

    Where a SKU's location is short by d units, the newest open reservations there that add up to
    d belong to oversold orders: the first orders stock covered stay fully reserved. An order stays
    flagged while any of its SKUs puts it in such a set.
    """
    session.flush()
    touched = set(skus)
    flagged_now = set(
        session.scalars(
            select(Order.id)
            .join(OrderLine, OrderLine.order_id == Order.id)
            .join(Reservation, Reservation.order_line_id == OrderLine.id)
            .where(Order.is_oversold.is_(True), Reservation.sku.in_(touched))
        )
    )
    if flagged_now:
        # Their other SKUs decide too: look at every SKU a flagged order reserves.
        touched |= set(
            session.scalars(
                select(Reservation.sku)
                .join(OrderLine, Reservation.order_line_id == OrderLine.id)
                .where(OrderLine.order_id.in_(flagged_now), Reservation.reserved > 0)
            )
        )
    should_flag: set[int] = set()
    for sku, locations in available_by_location(session, touched).items():
        for location, available in locations.items():
            if available < 0:
                should_flag |= _covering_orders(session, sku, location, -available)
    # Orders flagged earlier for SKUs outside this set keep their flag.
    candidates = flagged_now | should_flag
    newly = should_flag - flagged_now
    cleared = flagged_now - should_flag
    if newly:
        session.execute(update(Order).where(Order.id.in_(newly)).values(is_oversold=True))
    if cleared:
        session.execute(update(Order).where(Order.id.in_(cleared)).values(is_oversold=False))
    del candidates
    return newly, cleared


def _covering_orders(session: Session, sku: str, location: str, deficit: int) -> set[int]:
    orders: set[int] = set()
    covered = 0
    rows = session.execute(
        select(OrderLine.order_id, Reservation.reserved)
        .join(OrderLine, Reservation.order_line_id == OrderLine.id)
        .where(Reservation.sku == sku, Reservation.location == location, Reservation.reserved > 0)
        .order_by(Reservation.id.desc())
    )
    for order_id, reserved in rows:
        orders.add(order_id)
        covered += reserved
        if covered >= deficit:
            break
    return orders


def mark_dirty(session: Session, skus: Iterable[str]) -> set[int]:
    """Flag every listing of these SKUs and of bundles built from them; answer their channel ids."""
    wanted = set(skus)
    wanted |= bundles_containing(session, wanted)
    if not wanted:
        return set()
    channel_ids = set(
        session.scalars(select(Listing.channel_id).where(Listing.sku.in_(wanted)).distinct())
    )
    if channel_ids:
        session.execute(update(Listing).where(Listing.sku.in_(wanted)).values(is_dirty=True))
    return channel_ids


def ledger_totals(session: Session) -> dict[str, tuple[int, int]]:
    """sku -> (reserved, consumed) over every reservation: what the invariant checks compare."""
    totals: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for sku, reserved, consumed in session.execute(
        select(
            Reservation.sku, func.sum(Reservation.reserved), func.sum(Reservation.consumed)
        ).group_by(Reservation.sku)
    ):
        totals[sku] = (int(reserved or 0), int(consumed or 0))
    return dict(totals)
