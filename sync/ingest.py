"""The one idempotent path from canonical orders to the store, for every source.

A poll page, a webhook and a notification all end here, in the caller's transaction: upsert by
(channel, external id) when the channel's updated-at is newer than the stored one, turn the
difference in lines into reservation changes, re-derive oversold flags, mark every listing of
every touched SKU dirty. Applying the same order twice, or an older version after a newer one,
changes nothing.

A webhook brings one order per transaction, so on PostgreSQL its cost is round trips. A new
order takes four statements: the order's advisory lock; one look-up that answers which orders
are stored and how new, and locks (sorted) the SKUs whose ledger may change; the ledger read,
which must come after those locks in a statement of its own (READ COMMITTED gives each
statement its snapshot when it starts, before a lock it waits for is granted); and one write of
everything decided (`sync.ingest_rows`). Stored orders to update add their ORM loads and flush.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from connectors.base import Order, OrderStatus
from connectors.base import OrderLine as ChannelLine
from sync.fanout_channel import hold_local_status
from sync.ingest_rows import LineRef, NewLine, NewReservation, NewRows, write_rows
from sync.ledger_sql import ingest_lookup_statement, run_core
from sync.models import Order as OrderRow
from sync.models import OrderLine, Reservation
from sync.reservations import (
    adjust_on_hand,
    choose_location,
    components_of,
    expand_components,
    ledger_state,
    lock_orders,
    recompute_oversold,
)
from sync.sealing import current_keyring, seal_ship_to


@dataclass(frozen=True)
class ChannelRef:
    """The channel an order came from, as ingest needs it."""

    id: int
    name: str
    locations: tuple[str, ...] = ("default",)


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


_STORED = select(OrderRow.id, OrderRow.external_id, OrderRow.channel_updated_at).where(
    OrderRow.channel_id == bindparam("channel"),
    OrderRow.external_id.in_(bindparam("external_ids", expanding=True)),
)


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
    # Which orders are stored, and whether older than what came: (order id, is stale).
    stored, expansion = _look_up(session, channel, newest)
    stale = [order_id for order_id, is_stale in stored.values() if is_stale]
    existing: dict[str, OrderRow] = {}
    if stale:
        existing = {
            row.external_id: row
            for row in session.scalars(select(OrderRow).where(OrderRow.id.in_(stale)))
        }
    todo: list[tuple[Order, OrderRow | None]] = []
    for ext, order in sorted(newest.items()):
        if ext in stored and ext not in existing:
            result.skipped.append(ext)
            result.order_ids[ext] = stored[ext][0]
        else:
            todo.append((order, existing.get(ext)))
    if not todo:
        return result

    old_lines = [line.id for _, row in todo if row for line in row.lines]
    reservations: dict[int, dict[str, Reservation]] = {}
    if old_lines:
        for res in session.scalars(
            select(Reservation).where(Reservation.order_line_id.in_(old_lines))
        ):
            reservations.setdefault(res.order_line_id, {})[res.sku] = res
    reserved_skus = {sku for by_sku in reservations.values() for sku in by_sku}
    if expansion is None:
        # Which SKUs are ours and what each one reserves, as PostgreSQL's look-up answers it with
        # its locks (SQLite serialises writers with BEGIN IMMEDIATE: nothing to lock here).
        line_skus = {line.sku for order, _ in todo for line in order.lines}
        line_skus |= {line.sku for _, row in todo if row for line in row.lines if line.sku}
        expansion = components_of(session, line_skus, lock_with=reserved_skus)
    ours = set(expansion)
    components = {c for parts in expansion.values() for c, _ in parts} | reserved_skus
    available, flagged_pairs = ledger_state(session, components, flagged=True)
    ledger = _Ledger(session, channel, available)
    sold_here: dict[str, int] = {}
    new = NewRows()

    # Phase 1: every order and line of the batch. Stored orders go through the ORM, and so do
    # new ones that bring the channel's parcels (recording those needs their ids); one flush
    # then gives ids to what the ORM adds. Other new orders wait for the writes at the end.
    staged: list[tuple[Order, OrderRow | None, list[OrderLine] | list[NewLine], bool]] = []
    held: list[tuple[Order, OrderRow, list[OrderLine], bool]] = []
    for order, row in todo:
        created = row is None
        lines: list[OrderLine] | list[NewLine]
        before: dict[str, int] = {}
        if created:
            result.created.append(order.external_id)
        else:
            result.updated.append(order.external_id)
        if row is None and not order.shipments:
            lines = _new_lines(order, ours)
            new.orders.append(order)
            new.lines += lines
        else:
            if row is None:
                row = OrderRow(channel_id=channel.id, external_id=order.external_id)
                session.add(row)
            else:
                before = {line.external_line_id: line.quantity for line in row.lines}
            _copy_order(row, order)
            lines = _upsert_lines(row, order, ours, new=created)
            held.append((order, row, lines, created))
        if order.is_reserving:
            # A channel's own count drops by what it sold, and a cancellation may or may not put
            # the units back (channels differ); assume it does not. Wrong that way, the belief is
            # low, so the ledger's figure is pushed again: an extra call, never a wrong count.
            for line in lines:
                sold = line.quantity - before.get(line.external_line_id, 0)
                if line.sku is not None and sold > 0:
                    sold_here[line.sku] = sold_here.get(line.sku, 0) + sold
        staged.append((order, row, lines, created))
    if held:
        session.flush()
        # New orders outside `held` have no parcels and no floors: nothing there to hold.
        hold_local_status(session, held)

    # Phase 2: reservations, in the same order the orders were written.
    for order, row, lines, created in staged:
        for line in lines:
            if line.sku is None:
                result.unmapped_lines += 1
            ref: LineRef
            if isinstance(line, OrderLine):
                ref, holding = line.id, reservations.get(line.id, {})
            else:
                ref, holding = (order.external_id, line.external_line_id), {}
            ledger.settle_line(
                line,
                ref,
                expansion.get(line.sku, []) if line.sku else [],
                holding,
                is_reserving=order.is_reserving,
                is_cancelled=order.status == OrderStatus.CANCELLED,
            )
        if row is not None:
            result.order_ids[order.external_id] = row.id
        new.events.append(
            (
                "order.created" if created else "order.updated",
                row.id if row else None,
                order.external_id,
                {"status": order.status.value, "lines": len(order.lines)},
            )
        )
    new.reservations = ledger.new

    # Every listing dirty; and what we believe this channel shows lowered by its own sales.
    # A marketplace lowers its own count when it sells: so must what we believe it holds.
    # Without this, a compare-and-swap push would read the sale as an unseen one and subtract
    # it a second time, and a rule that maps the new ledger to the old figure (a cap, a
    # percentage) would skip the push that repairs the channel. The lowered belief is still
    # confirmed by a push (`verify_belief`): without compare-and-swap an absolute push may have
    # landed after the sale and erased it. Where nothing else changed, that push waits behind
    # the channel's real changes (LANE_CONFIRM).
    written = write_rows(
        session,
        channel.id,
        new,
        ledger.touched | ours,
        lower=(channel.id, sold_here),
    )
    result.order_ids.update(written.order_ids)
    result.dirty_channels = written.dirty_channels

    # Oversold orders holding a touched SKU: known from before, unless one of ours is flagged
    # (its new reservations are not among those pairs); then the store is asked.
    flagged: set[int] | None = {o for sku, o in flagged_pairs if sku in ledger.touched}
    if any(row.is_oversold for _, row, _, created in staged if row and not created):
        flagged = None
    newly, _ = recompute_oversold(session, ledger.touched, ledger.available, flagged)
    result.newly_oversold = newly
    return result


def _look_up(
    session: Session, channel: ChannelRef, newest: dict[str, Order]
) -> tuple[dict[str, tuple[int, bool]], dict[str, list[tuple[str, int]]] | None]:
    """Stored orders among `newest` as external id -> (order id, is older than `newest`'s).

    On PostgreSQL the same statement locks the SKUs of what is to be applied and answers their
    `components_of` (second value); elsewhere that is left to the caller (None).
    """
    if session.get_bind().dialect.name != "postgresql":
        rows = run_core(session, _STORED, {"channel": channel.id, "external_ids": sorted(newest)})
        return {ext: (i, at < newest[ext].updated_at) for i, ext, at in rows}, None
    lines = [(ext, line.sku) for ext, order in sorted(newest.items()) for line in order.lines]
    params = {
        "channel": channel.id,
        "external_ids": sorted(newest),
        "updated_at": [newest[ext].updated_at for ext in sorted(newest)],
        "line_orders": [ext for ext, _ in lines],
        "skus": [sku for _, sku in lines],
    }
    stored: dict[str, tuple[int, bool]] = {}
    parts: list[tuple[str, bool, str | None, int | None]] = []
    for code, flag, component, quantity, order_id, is_wanted in run_core(
        session, ingest_lookup_statement(), params
    ):
        if order_id is not None:
            stored[code] = (int(order_id), bool(flag))
        elif is_wanted:
            parts.append((code, flag, component, quantity))
    return stored, expand_components(parts)


def _new_lines(order: Order, ours: Collection[str]) -> list[NewLine]:
    by_id = {
        incoming.external_line_id: NewLine(
            order.external_id, incoming.external_line_id, **_line_values(incoming, ours)
        )
        for incoming in order.lines
    }
    return list(by_id.values())


def _line_values(incoming: ChannelLine, ours: Collection[str]) -> dict[str, Any]:
    return {
        "channel_sku": incoming.sku,
        "sku": incoming.sku if incoming.sku in ours else None,
        "quantity": incoming.quantity,
        "quantity_cancelled": incoming.quantity_cancelled,
        "quantity_shipped": incoming.quantity_shipped,
        "unit_price": incoming.unit_price.amount if incoming.unit_price else None,
        "extra": dict(incoming.extra) or None,
    }


def _copy_order(row: OrderRow, order: Order) -> None:
    row.status = order.status
    row.currency = order.currency
    row.is_reserving = order.is_reserving
    row.channel_updated_at = order.updated_at
    if order.is_partial:
        # A summary of a change (Amazon): status and lines only; the rest stays as last read.
        row.number = order.number or row.number
        row.channel_created_at = order.created_at or row.channel_created_at
        return
    row.number = order.number
    row.total = order.total.amount if order.total else None
    row.channel_created_at = order.created_at
    if row.pii_erased_at is None:
        # Sealed, never plain (sync.sealing); a legacy plaintext ship-to goes with this write.
        ship_to = dataclasses.asdict(order.ship_to) if order.ship_to else None
        if row.ship_to is not None:
            row.ship_to = None
        row.ship_to_sealed, row.pii_key_id = seal_ship_to(
            current_keyring(), row.channel_id, row.external_id, ship_to
        )
        row.buyer_ref = order.buyer_ref


def _upsert_lines(
    row: OrderRow, order: Order, ours: Collection[str], *, new: bool = False
) -> list[OrderLine]:
    by_id: dict[str, OrderLine] = {} if new else {line.external_line_id: line for line in row.lines}
    seen = set()
    for incoming in order.lines:
        values = _line_values(incoming, ours)
        line = by_id.get(incoming.external_line_id)
        if line is None:
            line = OrderLine(external_line_id=incoming.external_line_id, **values)
            row.lines.append(line)
            by_id[incoming.external_line_id] = line
        else:
            for name, value in values.items():
                if not (order.is_partial and name == "unit_price" and value is None):
                    setattr(line, name, value)
        seen.add(incoming.external_line_id)
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
        self.new: list[NewReservation] = []  # not in the session: see sync.ingest_rows

    def settle_line(
        self,
        line: OrderLine | NewLine,
        ref: LineRef,
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
            res: Reservation | NewReservation | None = existing.get(sku)
            if res is None:
                if open_units == 0 and shipped == 0:
                    continue
                location = choose_location(
                    self.available.setdefault(sku, {}), self.channel.locations, open_units * per
                )
                res = NewReservation(ref, sku, location)
                self.new.append(res)
            self._move(
                res, reserved=open_units * per, consumed=shipped * per, released=cancelled * per
            )

    def _move(
        self, res: Reservation | NewReservation, *, reserved: int, consumed: int, released: int
    ) -> None:
        d_reserved = reserved - res.reserved
        d_consumed = consumed - res.consumed
        if d_reserved == 0 and d_consumed == 0 and res.released == released:
            return
        on_hand_change = 0
        if d_consumed:
            # Shipped units have left the building (on hand stops at zero: follow what it did).
            on_hand_change = adjust_on_hand(self.session, res.sku, res.location, -d_consumed)
        by_location = self.available.setdefault(res.sku, {})
        by_location[res.location] = by_location.get(res.location, 0) - d_reserved + on_hand_change
        res.reserved, res.consumed, res.released = reserved, consumed, released
        self.touched.add(res.sku)
