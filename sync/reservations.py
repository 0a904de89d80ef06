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
from typing import Any

from sqlalchemy import (
    Executable,
    Integer,
    String,
    and_,
    bindparam,
    case,
    column,
    func,
    literal,
    null,
    select,
    text,
    true,
    update,
    values,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.types import BigInteger

from sync.ledger_sql import (
    components_statement,
    ledger_state_statement,
    mark_dirty_statement,
    mark_dirty_statement_pg,
    run_core,
)
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
    ordered = sorted({_advisory_key(c, e) for c, e in keys})
    if not ordered:
        return
    # One round trip; the locks are still taken one by one in sorted key order.
    session.connection().execute(
        text(
            "SELECT pg_advisory_xact_lock(k) FROM "
            "(SELECT unnest(CAST(:keys AS bigint[])) AS k ORDER BY k) AS s"
        ).bindparams(bindparam("keys", type_=ARRAY(BigInteger()))),
        {"keys": ordered},
    ).all()


def _advisory_key(channel_id: int, external_id: str) -> int:
    digest = hashlib.blake2b(f"{channel_id}:{external_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_skus(session: Session, skus: Iterable[str]) -> None:
    """Lock the SKU rows of every SKU whose ledger this transaction will change, in sorted order."""
    ordered = sorted(set(skus))
    if not ordered or session.get_bind().dialect.name != "postgresql":
        return
    run_core(
        session, select(Sku.sku).where(Sku.sku.in_(ordered)).order_by(Sku.sku).with_for_update()
    ).all()


def known_skus(session: Session, skus: Iterable[str]) -> dict[str, Sku]:
    """Our SKU rows for the given codes (unknown codes are left out)."""
    wanted = set(skus)
    if not wanted:
        return {}
    return {s.sku: s for s in session.scalars(select(Sku).where(Sku.sku.in_(wanted)))}


def components_of(
    session: Session, skus: Iterable[str], *, lock_with: Iterable[str] | None = None
) -> dict[str, list[tuple[str, int]]]:
    """What one unit of each SKU reserves: its components for a bundle, else itself once.

    Only our SKUs are keys, so the keys are also what `known_skus` would answer. One query.
    With `lock_with`, the same statement also does `lock_skus` for these SKUs, every component
    of theirs and `lock_with` (on PostgreSQL, sorted, as `lock_skus` does).
    """
    wanted = set(skus)
    extra = set(lock_with) if lock_with is not None else set()
    if not wanted and not extra:
        return {}
    locking = lock_with is not None and session.get_bind().dialect.name == "postgresql"
    params = {"skus": sorted(wanted), "lock_with": sorted(wanted | extra)}
    rows = run_core(session, components_statement(locking), params)
    return expand_components(row for row in rows if row[0] in wanted)  # the others: locked only


def expand_components(
    rows: Iterable[tuple[str, bool, str | None, int | None]],
) -> dict[str, list[tuple[str, int]]]:
    """`components_of` from its rows: (our SKU, is bundle, component or None, units per bundle)."""
    bundles: dict[str, bool] = {}
    parts: dict[str, list[tuple[str, int]]] = {}
    for code, is_bundle, component, quantity in rows:
        bundles[code] = bool(is_bundle)
        if component is not None and quantity is not None:
            parts.setdefault(code, []).append((component, quantity))
    return {
        code: parts[code] if is_bundle and parts.get(code) else [(code, 1)]
        for code, is_bundle in bundles.items()
    }


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
    return ledger_state(session, skus)[0]


def ledger_state(
    session: Session, skus: Iterable[str], *, flagged: bool = False
) -> tuple[dict[str, dict[str, int]], set[tuple[str, int]]]:
    """available_by_location, and with `flagged` the (sku, order id) pairs of oversold orders
    holding a reservation of these SKUs: one round trip."""
    wanted = sorted(set(skus))
    result: dict[str, dict[str, int]] = {s: {} for s in wanted}
    pairs: set[tuple[str, int]] = set()
    if not wanted:
        return result, pairs
    # Told apart by the last column: stock rows, reservation sums, flagged orders.
    statement = ledger_state_statement(flagged)
    for sku, location, units, kind in run_core(session, statement, {"skus": wanted}):
        if kind == 2:
            pairs.add((sku, int(units)))
        elif kind == 1:
            result[sku][location] = result[sku].get(location, 0) - int(units or 0)
        else:
            result[sku][location] = int(units) + result[sku].get(location, 0)
    return result, pairs


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


def adjust_on_hand(session: Session, sku: str, location: str, delta: int) -> int:
    """Change on hand by `delta` (shipments consume), never below zero; answer the change made."""
    level = session.get(StockLevel, (sku, location))
    if level is None:
        level = StockLevel(sku=sku, location=location, on_hand=0)
        session.add(level)
    old = level.on_hand or 0
    level.on_hand = max(0, old + delta)
    level.updated_at = utcnow()
    return level.on_hand - old


def recompute_oversold(
    session: Session,
    skus: Iterable[str],
    available: Mapping[str, Mapping[str, int]] | None = None,
    flagged: set[int] | None = None,
) -> tuple[set[int], set[int]]:
    """Re-derive oversold flags for orders reserving these SKUs; answer (newly flagged, cleared).

    Where a SKU's location is short by d units, the newest open reservations there that add up to
    d belong to oversold orders: the first orders stock covered stay fully reserved. An order stays
    flagged while any of its SKUs puts it in such a set.

    `available`, when given, must be the current available_by_location of (at least) these SKUs,
    as the caller tracked it; SKUs it lacks are read from the store. `flagged`, when given, must
    be the oversold orders holding a reservation of these SKUs.
    """
    session.flush()
    touched = set(skus)
    if not touched:
        return set(), set()
    flagged_now = (
        set(flagged)
        if flagged is not None
        else set(
            run_core(
                session,
                select(Order.id)
                .join(OrderLine, OrderLine.order_id == Order.id)
                .join(Reservation, Reservation.order_line_id == OrderLine.id)
                .where(Order.is_oversold.is_(True), Reservation.sku.in_(touched)),
            ).scalars()
        )
    )
    if flagged_now:
        # Their other SKUs decide too: look at every SKU a flagged order reserves.
        touched |= set(
            run_core(
                session,
                select(Reservation.sku)
                .join(OrderLine, Reservation.order_line_id == OrderLine.id)
                .where(OrderLine.order_id.in_(flagged_now), Reservation.reserved > 0),
            ).scalars()
        )
    known = {sku: available[sku] for sku in touched if sku in available} if available else {}
    by_sku = dict(known)
    if touched - known.keys():
        by_sku.update(available_by_location(session, touched - known.keys()))
    deficits = [
        (sku, location, -units)
        for sku, locations in sorted(by_sku.items())
        for location, units in sorted(locations.items())
        if units < 0
    ]
    should_flag = _covering_orders(session, deficits)
    # Orders flagged earlier for SKUs outside this set keep their flag.
    newly = should_flag - flagged_now
    cleared = flagged_now - should_flag
    if newly:
        session.execute(update(Order).where(Order.id.in_(newly)).values(is_oversold=True))
    if cleared:
        session.execute(update(Order).where(Order.id.in_(cleared)).values(is_oversold=False))
    return newly, cleared


def _covering_orders(session: Session, deficits: Sequence[tuple[str, str, int]]) -> set[int]:
    """Orders of the newest open reservations that add up to each (sku, location)'s deficit.

    One query for all deficits: a running sum over each (sku, location)'s reservations, newest
    first, keeps a reservation while what came before it has not covered the deficit yet.
    """
    if not deficits:
        return set()
    wanted = (
        values(
            column("d_sku", String),
            column("d_location", String),
            column("d_units", Integer),
            name="deficits",
        )
        .data(list(deficits))
        .cte("deficits")
    )
    running = (
        func.sum(Reservation.reserved)
        .over(
            partition_by=(Reservation.sku, Reservation.location),
            order_by=Reservation.id.desc(),
            rows=(None, 0),
        )
        .label("running")
    )
    ranked = (
        select(OrderLine.order_id, Reservation.reserved, running, wanted.c.d_units)
        .join(OrderLine, Reservation.order_line_id == OrderLine.id)
        .join(
            wanted,
            and_(wanted.c.d_sku == Reservation.sku, wanted.c.d_location == Reservation.location),
        )
        .where(Reservation.reserved > 0)
        .subquery()
    )
    return set(
        run_core(
            session,
            select(ranked.c.order_id)
            .where(ranked.c.running - ranked.c.reserved < ranked.c.d_units)
            .distinct(),
        ).scalars()
    )


def mark_dirty(
    session: Session,
    skus: Iterable[str],
    *,
    lower: tuple[int, Mapping[str, int]] | None = None,
) -> set[int]:
    """Flag every listing of these SKUs and of bundles built from them; answer their channel ids.

    `lower` = (channel id, units sold per SKU): in the same statement, what we believe that
    channel shows for those SKUs (all among `skus`) goes down by the units it sold, as the
    channel lowered its own count, and is to be confirmed by a push (`verify_belief`).
    """
    wanted = set(skus)
    if not wanted:
        return set()
    lowering = lower is not None and bool(lower[1])
    if session.get_bind().dialect.name == "postgresql":
        statement: Executable = mark_dirty_statement_pg()
        params = mark_dirty_params(wanted, lower)
    elif lower is not None and lowering:
        # Each SKU goes down by its own count, so this one is built each time.
        channel_id, sold = lower
        pushed = Listing.last_pushed_quantity
        left = pushed - case(dict(sold), value=Listing.sku, else_=0)
        lowered = case((pushed.is_(None), null()), (left > 0, left), else_=literal(0))
        ours = and_(Listing.channel_id == channel_id, Listing.sku.in_(sorted(sold)))
        statement = mark_dirty_statement().values(
            last_pushed_quantity=case((ours, lowered), else_=pushed),
            verify_belief=case((ours, true()), else_=Listing.verify_belief),
        )
        params = {"skus": sorted(wanted)}
    else:
        statement = mark_dirty_statement()
        params = {"skus": sorted(wanted)}
    # One statement: the update answers the listings it flagged and their channels.
    rows = [(int(i), int(c)) for i, c in run_core(session, statement, params)]
    return forget_dirty_listings(session, rows, lowering=lowering)


def mark_dirty_params(
    skus: Iterable[str], lower: tuple[int, Mapping[str, int]] | None
) -> dict[str, Any]:
    """Parameters of PostgreSQL's `mark_dirty` statement (see `mark_dirty`)."""
    channel_id, sold = lower if lower is not None else (0, {})
    ordered = sorted(sold)
    return {
        "dirty_skus": sorted(set(skus)),
        "sold_channel": channel_id,
        "sold_skus": ordered,
        "sold_units": [sold[sku] for sku in ordered],
    }


def forget_dirty_listings(
    session: Session, rows: Iterable[tuple[int, int]], *, lowering: bool
) -> set[int]:
    """After `mark_dirty`'s statement answered (listing id, channel id) rows: the channel ids.

    Listings this session holds are read again when next used, as ORM updates would have them.
    """
    attributes = ["is_dirty", "last_pushed_quantity", "verify_belief"] if lowering else ["is_dirty"]
    channels = set()
    for listing_id, channel_id in rows:
        channels.add(channel_id)
        held = session.identity_map.get(session.identity_key(Listing, listing_id))
        if held is not None:
            session.expire(held, attributes)
    return channels


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
