"""The ledger side of status out: an order's status from its lines, and its reservations moved to
what its lines now say after a shipment or cancellation decided here.

Ingest settles the lines a channel reports; this settles the lines changed here, by the same
rule (open units reserved, shipped units consumed, cancelled units released; consumed units leave
on hand), under the same locks: the order first, then its SKUs in sorted order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import OrderStatus
from sync.models import Order, OrderLine, Reservation
from sync.reservations import (
    adjust_on_hand,
    components_of,
    lock_skus,
    mark_dirty,
    recompute_oversold,
)

_NOT_STARTED = (OrderStatus.PENDING, OrderStatus.OPEN)


def derive_status(lines: Sequence[OrderLine], current: OrderStatus) -> OrderStatus:
    """The order's status from its lines' figures; a cancelled order stays cancelled."""
    if current is OrderStatus.CANCELLED:
        return current
    live = [(line.quantity - line.quantity_cancelled, line.quantity_shipped) for line in lines]
    if all(units == 0 for units, _ in live):
        return OrderStatus.CANCELLED
    if not any(shipped for _, shipped in live):
        return current if current in _NOT_STARTED else OrderStatus.OPEN
    if all(shipped >= units for units, shipped in live):
        return OrderStatus.SHIPPED
    return OrderStatus.PARTIALLY_SHIPPED


def settle_lines(session: Session, order: Order, lines: Sequence[OrderLine]) -> frozenset[int]:
    """Move the reservations of `lines` (of the locked `order`) to what the lines say; re-derive
    oversold flags and mark the listings of the touched SKUs dirty; answer their channel ids."""
    if not order.is_reserving or not lines:
        return frozenset()
    session.flush()
    held: dict[int, list[Reservation]] = defaultdict(list)
    for res in session.scalars(
        select(Reservation)
        .where(Reservation.order_line_id.in_([line.id for line in lines]))
        .order_by(Reservation.id)
    ):
        held[res.order_line_id].append(res)
    skus = {res.sku for found in held.values() for res in found}
    if not skus:
        return frozenset()
    # Reservations of this order change only under its lock; on hand needs the SKU locks.
    lock_skus(session, skus)
    parts = components_of(session, {line.sku for line in lines if line.sku})
    is_cancelled = order.status is OrderStatus.CANCELLED
    for line in lines:
        per_unit = dict(parts.get(line.sku, [])) if line.sku else {}
        shipped = line.quantity_shipped
        cancelled = line.quantity - shipped if is_cancelled else line.quantity_cancelled
        open_units = line.quantity - cancelled - shipped
        for res in held.get(line.id, []):
            per = per_unit.get(res.sku)
            if per is None:
                continue  # the line no longer maps to this SKU: ingest lets it go
            consumed = shipped * per
            if consumed != res.consumed:
                # Shipped units have left the building (on hand stops at zero).
                adjust_on_hand(session, res.sku, res.location, res.consumed - consumed)
            res.reserved, res.consumed, res.released = open_units * per, consumed, cancelled * per
    recompute_oversold(session, skus)
    return frozenset(mark_dirty(session, skus))
