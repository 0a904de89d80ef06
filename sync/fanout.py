"""Status out, the recording side: shipments and cancellations decided here, in one transaction.

`record_shipment` writes the shipment and its lines, consumes the reservations (on hand goes
down), re-derives the order's status, marks every listing of the touched SKUs dirty and enqueues
one outbox job to the order's origin channel, keyed by the shipment id. `cancel_here` does the
same for a cancellation (reservations released), keyed by the id of the event that records it.
`sync/fanout_worker.py` sends the jobs; `sync/fanout_channel.py` keeps what is decided here
standing when the channel's next update does not show it yet.

Every check runs before the first write, so a refusal writes nothing:

    FanoutInputError            the request cannot be applied as given (a ValueError)
     ├── UnknownOrderError      no such order (or none matches the reference given)
     ├── AmbiguousOrderError    the reference matches several orders: say which
     ├── UnknownLineError       the order has no line for that SKU
     ├── TooManyUnitsError      more units than the order's lines have open
     └── OrderStateError        the order cannot take it now (cancelled, nothing open, shipped
                                by the marketplace)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from connectors.base import OrderStatus
from sync.fanout_ledger import derive_status, settle_lines
from sync.models import (
    Channel,
    Event,
    JobKind,
    Order,
    Shipment,
    ShipmentLine,
    ShipmentOrigin,
    utcnow,
)
from sync.outbox import enqueue
from sync.reservations import lock_orders

SHIPMENT_KEY = "shipment:{id}"
CANCEL_KEY = "cancel:{id}"
TEXT_MAX = 128  # carrier and tracking columns are String(128)
_REASON = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class FanoutInputError(ValueError):
    """A shipment or cancellation that cannot be applied as given; the message says why."""


class UnknownOrderError(FanoutInputError):
    """No order matches."""


class AmbiguousOrderError(FanoutInputError):
    """The reference matches more than one order."""


class UnknownLineError(FanoutInputError):
    """The order has no line for a SKU asked for."""


class TooManyUnitsError(FanoutInputError):
    """More units asked for than the order has open."""


class OrderStateError(FanoutInputError):
    """The order cannot take this now."""


@dataclass(frozen=True)
class Units:
    """So many units of one SKU of an order."""

    sku: str
    quantity: int


@dataclass(frozen=True)
class Recorded:
    """What a shipment or cancellation changed; `units` per order line id."""

    order_id: int
    channel_id: int
    status: OrderStatus
    units: dict[int, int]
    record_id: int  # the shipment's id, or the cancellation event's
    dirty_channels: frozenset[int]


def record_shipment(
    session: Session,
    order_id: int,
    *,
    carrier: str | None,
    tracking: str | None,
    lines: Sequence[Units] = (),
    shipped_at: datetime | None = None,
) -> Recorded:
    """Record a parcel of our order (every open unit when `lines` is empty) and queue it for the
    order's origin channel, in the caller's transaction."""
    carrier, tracking = _check_tracking(carrier, tracking)
    order = _locked_order(session, order_id)
    if order.status is OrderStatus.CANCELLED:
        raise OrderStateError(f"order {order_id} is cancelled; there is nothing to ship")
    if not order.is_reserving:
        raise OrderStateError(
            f"order {order_id} is shipped by the marketplace from its own stock, not from here"
        )
    units = _allocate(order, lines, "ship")
    shipment = Shipment(
        order_id=order.id,
        origin=ShipmentOrigin.HERE,
        carrier=carrier,
        tracking_number=tracking,
        shipped_at=shipped_at or utcnow(),
        lines=[ShipmentLine(order_line_id=i, quantity=n) for i, n in sorted(units.items())],
    )
    session.add(shipment)
    by_id = {line.id: line for line in order.lines}
    for line_id, n in units.items():
        line = by_id[line_id]
        # Units the channel reported shipped without a parcel count as shipped before ours.
        line.shipped_floor = max(line.shipped_floor, line.quantity_shipped) + n
        line.quantity_shipped = line.shipped_floor
    order.status = derive_status(order.lines, order.status)
    dirty = settle_lines(session, order, [by_id[i] for i in units])
    session.flush()
    enqueue(
        session,
        channel_id=order.channel_id,
        kind=JobKind.SHIPMENT,
        identity_key=SHIPMENT_KEY.format(id=shipment.id),
        payload={
            "shipment_id": shipment.id,
            "order_id": order.id,
            "order_external_id": order.external_id,
            "lines": [[by_id[i].external_line_id, n] for i, n in sorted(units.items())],
            "carrier": carrier,
            "tracking": tracking,
            "shipped_at": shipment.shipped_at.isoformat(),
        },
    )
    session.add(
        Event(
            kind="shipment.recorded",
            channel_id=order.channel_id,
            order_id=order.id,
            data={"shipment_id": shipment.id, "units": sum(units.values()), "carrier": carrier},
        )
    )
    return Recorded(order.id, order.channel_id, order.status, units, shipment.id, dirty)


def cancel_here(
    session: Session, order_id: int, *, lines: Sequence[Units] = (), reason: str = "other"
) -> Recorded:
    """Cancel open units of our order (every one when `lines` is empty), release them and queue
    the cancellation for the order's origin channel, in the caller's transaction."""
    if not _REASON.match(reason):
        raise FanoutInputError(
            f"reason: {reason[:40]!r} is not a reason code (lower case letters, digits, _)"
        )
    order = _locked_order(session, order_id)
    if order.status is OrderStatus.CANCELLED:
        raise OrderStateError(f"order {order_id} is already cancelled")
    units = _allocate(order, lines, "cancel")
    by_id = {line.id: line for line in order.lines}
    nothing_shipped = not any(line.quantity_shipped for line in order.lines)
    for line_id, n in units.items():
        line = by_id[line_id]
        line.cancelled_floor = max(line.cancelled_floor, line.quantity_cancelled) + n
        line.quantity_cancelled = line.cancelled_floor
    order.status = derive_status(order.lines, order.status)
    dirty = settle_lines(session, order, [by_id[i] for i in units])
    event = Event(
        kind="order.cancelled_here",
        channel_id=order.channel_id,
        order_id=order.id,
        data={"units": sum(units.values()), "reason": reason},
    )
    session.add(event)
    session.flush()
    # The whole order when nothing of it is left and nothing shipped: the one cancel every
    # channel takes. Otherwise only these units, so that a shipment of this order still on its
    # way to the channel finds its units open there, whichever lands first.
    is_whole = nothing_shipped and order.status is OrderStatus.CANCELLED
    enqueue(
        session,
        channel_id=order.channel_id,
        kind=JobKind.CANCEL,
        identity_key=CANCEL_KEY.format(id=event.id),
        payload={
            "event_id": event.id,
            "order_id": order.id,
            "order_external_id": order.external_id,
            "lines": []
            if is_whole
            else [[by_id[i].external_line_id, n] for i, n in sorted(units.items())],
            "cancelled": {by_id[i].external_line_id: by_id[i].quantity_cancelled for i in units},
            "reason": reason,
        },
    )
    return Recorded(order.id, order.channel_id, order.status, units, event.id, dirty)


def note_fulfillment(session: Session, shipment_id: int, channel_ref: str) -> bool:
    """Keep the channel's id of a shipment we pushed; False when another parcel of the order
    already holds that id (the channel's id is then not kept, and the clash is logged as an
    event for an operator)."""
    shipment = session.get(Shipment, shipment_id)
    if shipment is None or shipment.external_id == channel_ref:
        return shipment is not None
    clash = session.scalar(
        select(Shipment.id).where(
            Shipment.order_id == shipment.order_id,
            Shipment.external_id == channel_ref,
            Shipment.id != shipment.id,
        )
    )
    if clash is not None:
        session.add(
            Event(
                kind="shipment.id_clash",
                order_id=shipment.order_id,
                data={"shipment_id": shipment.id, "other_shipment_id": clash},
            )
        )
        return False
    shipment.external_id = channel_ref
    return True


def resolve_order(session: Session, reference: str, channel: str | None = None) -> int:
    """Our order id for `reference`: our id, or the channel's order id or number (`id:N` for
    ours only; `channel` narrows to one channel's orders)."""
    reference = reference.strip()
    if not reference:
        raise UnknownOrderError("the order reference is empty")
    names = dict(session.execute(select(Channel.id, Channel.name)).all())
    channel_id = None
    if channel is not None:
        channel_id = next((i for i, name in names.items() if name == channel), None)
        if channel_id is None:
            raise UnknownOrderError(f"no channel named {channel!r}")
    ours = reference.removeprefix("id:")
    ours_only = ours != reference
    clauses = []
    if ours.isascii() and ours.isdigit() and len(ours) < 19 and channel_id is None:
        clauses.append(Order.id == int(ours))
    if not ours_only:
        numbers = [reference, f"#{reference}"]
        clauses += [Order.external_id == reference, Order.number.in_(numbers)]
    query = select(Order.id, Order.channel_id, Order.external_id, Order.number)
    if channel_id is not None:
        query = query.where(Order.channel_id == channel_id)
    found = session.execute(query.where(or_(*clauses)).order_by(Order.id)).all() if clauses else []
    if not found:
        raise UnknownOrderError(f"no order matches {reference!r}")
    if len(found) > 1:
        listed = "; ".join(
            f"our order {i} ({names.get(c)} order {ext}, number {num or '-'})"
            for i, c, ext, num in found
        )
        raise AmbiguousOrderError(
            f"{reference!r} matches {len(found)} orders: {listed}. "
            "Give our order id as id:N, or name the channel"
        )
    return int(found[0][0])


def _check_tracking(carrier: str | None, tracking: str | None) -> tuple[str | None, str | None]:
    carrier = (carrier or "").strip() or None
    tracking = (tracking or "").strip() or None
    if carrier is not None and tracking is None:
        raise FanoutInputError(f"tracking: empty; a shipment with carrier {carrier!r} needs one")
    if tracking is not None and carrier is None:
        raise FanoutInputError("carrier: empty; a tracking number needs its carrier")
    for name, value in (("carrier", carrier), ("tracking", tracking)):
        if value is not None and len(value) > TEXT_MAX:
            raise FanoutInputError(f"{name}: longer than {TEXT_MAX} characters")
    return carrier, tracking


def _locked_order(session: Session, order_id: int) -> Order:
    # The order lock first (ingest takes it too, then the SKUs): one global order, no deadlock.
    key = session.execute(
        select(Order.channel_id, Order.external_id).where(Order.id == order_id)
    ).first()
    if key is None:
        raise UnknownOrderError(f"no order {order_id}")
    lock_orders(session, [(key[0], key[1])])
    # Loaded only now, under the lock, so that its lines are what the last writer committed.
    return session.get_one(Order, order_id, populate_existing=True)


def _allocate(order: Order, wanted: Sequence[Units], verb: str) -> dict[int, int]:
    """Order line id -> units for `wanted` (by SKU, spread over the SKU's lines in order), or
    every open unit when nothing is asked for."""
    open_units = {
        line.id: line.quantity - line.quantity_cancelled - line.quantity_shipped
        for line in order.lines
    }
    if not wanted:
        units = {i: n for i, n in open_units.items() if n > 0}
        if not units:
            raise OrderStateError(
                f"order {order.id} has nothing left to {verb}: every unit is shipped or cancelled"
            )
        return units
    units = {}
    seen: set[str] = set()
    for want in wanted:
        if want.sku in seen:
            raise FanoutInputError(f"lines: SKU {want.sku!r} is given more than once")
        seen.add(want.sku)
        if want.quantity < 1:
            raise FanoutInputError(f"lines: SKU {want.sku!r}: quantity must be at least 1")
        ids = [line.id for line in order.lines if want.sku in (line.channel_sku, line.sku)]
        if not ids:
            raise UnknownLineError(f"order {order.id} has no line for SKU {want.sku!r}")
        available = sum(open_units[i] for i in ids)
        if want.quantity > available:
            raise TooManyUnitsError(
                f"SKU {want.sku!r}: {want.quantity} units asked to {verb}, "
                f"order {order.id} has {available} open"
            )
        left = want.quantity
        for i in ids:
            take = min(left, open_units[i])
            if take:
                units[i] = take
                left -= take
    return units
