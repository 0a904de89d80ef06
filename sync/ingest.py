"""The one idempotent path from canonical orders to the store, for every source.

A poll page, a webhook and a notification all end here, in the caller's transaction: upsert by
(channel, external id) when the channel's updated-at is newer than the stored one, turn the
difference in lines into reservation changes, re-derive oversold flags, mark every listing of
every touched SKU dirty. Applying the same order twice, or an older version after a newer one,
changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import Order, OrderStatus
from sync.models import Event, Listing, OrderLine, Reservation
from sync.models import Order as OrderRow
from sync.reservations import (
    adjust_on_hand,
    available_by_location,
    choose_location,
    components_of,
    known_skus,
    lock_orders,
    lock_skus,
    mark_dirty,
    recompute_oversold,
)


@dataclass(frozen=True)
class ChannelRef:
    """The channel an order came from, as ingest needs it."""

    id: int
    name: str
    locations: tuple[str, ...] = ("default",)
    # With compare-and-swap no push can erase a sale on the channel, so the channel's own count
    # can be followed sale by sale; without it, after a sale we no longer know what it shows.
    compare_and_swap: bool = False


@dataclass
class IngestResult:
    """What one ingest call changed."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # not newer than what is stored
    newly_oversold: set[int] = field(default_factory=set)
    unmapped_lines: int = 0
    dirty_channels: set[int] = field(default_factory=set)
    order_ids: dict[str, int] = field(default_factory=dict)


def ingest_orders(session: Session, channel: ChannelRef, orders: Sequence[Order]) -> IngestResult:
    """Apply a batch of a channel's orders in the caller's transaction."""
    result = IngestResult()
    newest: dict[str, Order] = {}
    for order in orders:
        kept = newest.get(order.external_id)
        if kept is None or order.updated_at > kept.updated_at:
            newest[order.external_id] = order
    if not newest:
        return result

    lock_orders(session, ((channel.id, ext) for ext in newest))
    existing = {
        row.external_id: row
        for row in session.scalars(
            select(OrderRow).where(
                OrderRow.channel_id == channel.id, OrderRow.external_id.in_(newest)
            )
        )
    }
    todo = []
    for ext, order in sorted(newest.items()):
        row = existing.get(ext)
        if row is not None and row.channel_updated_at >= order.updated_at:
            result.skipped.append(ext)
            result.order_ids[ext] = row.id
        else:
            todo.append((order, row))
    if not todo:
        return result

    line_skus = {line.sku for order, _ in todo for line in order.lines}
    line_skus |= {line.sku for _, row in todo if row for line in row.lines if line.sku}
    ours = known_skus(session, line_skus)
    expansion = components_of(session, ours)
    components = {c for parts in expansion.values() for c, _ in parts}
    old_lines = [line.id for _, row in todo if row for line in row.lines]
    reservations: dict[int, dict[str, Reservation]] = {}
    if old_lines:
        for res in session.scalars(
            select(Reservation).where(Reservation.order_line_id.in_(old_lines))
        ):
            reservations.setdefault(res.order_line_id, {})[res.sku] = res
            components.add(res.sku)
    lock_skus(session, components | set(ours))
    ledger = _Ledger(session, channel, available_by_location(session, components))
    sold_here: dict[str, int] = {}

    for order, row in todo:
        if row is None:
            row = OrderRow(channel_id=channel.id, external_id=order.external_id)
            session.add(row)
            result.created.append(order.external_id)
        else:
            result.updated.append(order.external_id)
        before = {
            line.external_line_id: line.quantity - line.quantity_cancelled for line in row.lines
        }
        _copy_order(row, order)
        lines = _upsert_lines(row, order, ours)
        if order.is_reserving:
            for line in lines:
                sold = (line.quantity - line.quantity_cancelled) - before.get(
                    line.external_line_id, 0
                )
                if line.sku is not None and sold > 0:
                    sold_here[line.sku] = sold_here.get(line.sku, 0) + sold
        session.flush()
        for line in lines:
            if line.sku is None:
                result.unmapped_lines += 1
            ledger.settle_line(
                line,
                expansion.get(line.sku, []) if line.sku else [],
                reservations.get(line.id, {}),
                is_reserving=order.is_reserving,
                is_cancelled=order.status == OrderStatus.CANCELLED,
            )
        result.order_ids[order.external_id] = row.id
        session.add(
            Event(
                kind="order.created" if order.external_id in result.created else "order.updated",
                channel_id=channel.id,
                order_id=row.id,
                data={"status": order.status.value, "lines": len(order.lines)},
            )
        )

    _lower_channel_belief(session, channel, sold_here)
    newly, _ = recompute_oversold(session, ledger.touched)
    result.newly_oversold = newly
    result.dirty_channels = mark_dirty(session, ledger.touched | set(ours))
    return result


def _lower_channel_belief(session: Session, channel: ChannelRef, sold: Mapping[str, int]) -> None:
    """A marketplace lowers its own count when it sells: so must what we believe it holds.

    Without this, a compare-and-swap push would read the sale as an unseen one and subtract it
    a second time, and a rule that maps the new ledger to the old figure (a cap, a percentage)
    would skip the push that repairs the channel. Without compare-and-swap an absolute push may
    have landed after the sale and erased it, so the count becomes unknown and the ledger's
    figure is pushed again.
    """
    if not sold:
        return
    for listing in session.scalars(
        select(Listing).where(Listing.channel_id == channel.id, Listing.sku.in_(sold))
    ):
        listing.is_dirty = True
        if listing.last_pushed_quantity is None:
            continue
        if channel.compare_and_swap:
            listing.last_pushed_quantity = max(0, listing.last_pushed_quantity - sold[listing.sku])
        else:
            listing.last_pushed_quantity = None


def _copy_order(row: OrderRow, order: Order) -> None:
    row.number = order.number
    row.status = order.status
    row.currency = order.currency
    row.total = order.total.amount if order.total else None
    row.is_reserving = order.is_reserving
    row.channel_created_at = order.created_at
    row.channel_updated_at = order.updated_at
    if row.pii_erased_at is None:
        row.ship_to = dataclasses.asdict(order.ship_to) if order.ship_to else None
        row.buyer_ref = order.buyer_ref


def _upsert_lines(row: OrderRow, order: Order, ours: Mapping[str, object]) -> list[OrderLine]:
    by_id = {line.external_line_id: line for line in row.lines}
    seen = set()
    for incoming in order.lines:
        line = by_id.get(incoming.external_line_id)
        if line is None:
            line = OrderLine(external_line_id=incoming.external_line_id)
            row.lines.append(line)
            by_id[incoming.external_line_id] = line
        seen.add(incoming.external_line_id)
        line.channel_sku = incoming.sku
        line.sku = incoming.sku if incoming.sku in ours else None
        line.quantity = incoming.quantity
        line.quantity_cancelled = incoming.quantity_cancelled
        line.quantity_shipped = incoming.quantity_shipped
        line.unit_price = incoming.unit_price.amount if incoming.unit_price else None
        line.extra = dict(incoming.extra) or None
    for external_line_id, line in by_id.items():
        if external_line_id not in seen:
            # The channel dropped the line: what was not shipped is released.
            line.quantity_cancelled = line.quantity - line.quantity_shipped
            line.extra = {**(line.extra or {}), "removed": True}
    return list(by_id.values())


class _Ledger:
    """Reservation changes within one transaction, with a running view of available stock."""

    def __init__(
        self, session: Session, channel: ChannelRef, available: dict[str, dict[str, int]]
    ) -> None:
        self.session = session
        self.channel = channel
        self.available = available
        self.touched: set[str] = set()

    def settle_line(
        self,
        line: OrderLine,
        parts: list[tuple[str, int]],
        existing: dict[str, Reservation],
        *,
        is_reserving: bool,
        is_cancelled: bool,
    ) -> None:
        """Make the line's reservations say: open units reserved, shipped units consumed."""
        shipped = line.quantity_shipped
        cancelled = line.quantity - shipped if is_cancelled else line.quantity_cancelled
        open_units = line.quantity - cancelled - shipped
        if not is_reserving:
            open_units = shipped = 0
        wanted = {sku: per for sku, per in parts}
        for sku in existing.keys() - wanted.keys():
            # The line now maps to other SKUs (or none): its old reservations let go.
            self._move(existing[sku], reserved=0, consumed=existing[sku].consumed, released=0)
        for sku, per in wanted.items():
            res = existing.get(sku)
            if res is None:
                if open_units == 0 and shipped == 0:
                    continue
                location = choose_location(
                    self.available.setdefault(sku, {}), self.channel.locations, open_units * per
                )
                res = Reservation(
                    order_line_id=line.id,
                    sku=sku,
                    location=location,
                    reserved=0,
                    consumed=0,
                    released=0,
                )
                self.session.add(res)
            self._move(
                res, reserved=open_units * per, consumed=shipped * per, released=cancelled * per
            )

    def _move(self, res: Reservation, *, reserved: int, consumed: int, released: int) -> None:
        d_reserved = reserved - res.reserved
        d_consumed = consumed - res.consumed
        if d_reserved == 0 and d_consumed == 0 and res.released == released:
            return
        if d_consumed:
            # Shipped units have left the building.
            adjust_on_hand(self.session, res.sku, res.location, -d_consumed)
        by_location = self.available.setdefault(res.sku, {})
        by_location[res.location] = by_location.get(res.location, 0) - d_reserved - d_consumed
        res.reserved, res.consumed, res.released = reserved, consumed, released
        self.touched.add(res.sku)
