"""Status out, the channel's side: what a channel reports never undoes what was decided here, and
the parcels it reports become shipments once.

Ingest calls `hold_local_status` with the orders it is writing, after their lines hold the
channel's figures and before their reservations are settled:
- a parcel the channel shows (the seller shipped in the marketplace's own admin) becomes a
  shipment of channel origin, once per (order, channel's id); one we pushed is the same parcel,
  known by the id the channel answered, or (when its answer was lost) by its tracking and lines;
- a line's shipped units are the larger of the channel's figure and its `shipped_floor` (the
  parcels recorded here), its cancelled units the larger of the channel's figure and its
  `cancelled_floor` (cancelled here), shipping winning where both cannot hold;
- where that changed a line, the order's status is derived from its lines again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import Order as ChannelOrder
from sync.fanout_ledger import derive_status
from sync.models import Order, OrderLine, Shipment, ShipmentLine, ShipmentOrigin

Staged = Sequence[tuple[ChannelOrder, Order, Sequence[OrderLine], bool]]
"""(the channel's order, its row, its lines, whether the row is new), as ingest holds them."""

_TEXT_MAX = 128
_URL_MAX = 1024


def hold_local_status(session: Session, staged: Staged) -> None:
    """Record the channel's new parcels and keep the floors of what was decided here (the rows
    and lines must have their ids: call after a flush)."""
    with_parcels = [item for item in staged if item[0].shipments]
    if with_parcels:
        _import_parcels(session, with_parcels)
    for _, row, lines, _created in staged:
        if _apply_floors(lines):
            row.status = derive_status(lines, row.status)


def _import_parcels(session: Session, staged: Staged) -> None:
    stored = [row.id for _, row, _, created in staged if not created]
    known: set[tuple[int, str]] = set()
    unanswered: dict[int, list[Shipment]] = defaultdict(list)
    if stored:
        for shipment in session.scalars(
            select(Shipment).where(Shipment.order_id.in_(stored)).order_by(Shipment.id)
        ):
            if shipment.external_id is not None:
                known.add((shipment.order_id, shipment.external_id))
            elif shipment.origin is ShipmentOrigin.HERE:
                unanswered[shipment.order_id].append(shipment)
    for order, row, lines, _created in staged:
        by_external = {line.external_line_id: line for line in lines}
        for parcel in order.shipments:
            if (row.id, parcel.external_id) in known:
                continue
            known.add((row.id, parcel.external_id))
            units: dict[int, int] = defaultdict(int)
            for part in parcel.lines:
                line = by_external.get(part.external_line_id)
                if line is not None:
                    units[line.id] += part.quantity
            ours = _ours(unanswered[row.id], parcel.tracking_number, units)
            if ours is not None:
                # Our push landed but its answer was lost (or is not recorded yet): same parcel.
                ours.external_id = parcel.external_id
                unanswered[row.id].remove(ours)
                continue
            session.add(
                Shipment(
                    order_id=row.id,
                    origin=ShipmentOrigin.CHANNEL,
                    external_id=parcel.external_id,
                    carrier=_clip(parcel.carrier, _TEXT_MAX),
                    tracking_number=_clip(parcel.tracking_number, _TEXT_MAX),
                    tracking_url=_clip(parcel.tracking_url, _URL_MAX),
                    shipped_at=parcel.shipped_at,
                    lines=[ShipmentLine(order_line_id=i, quantity=n) for i, n in units.items()],
                )
            )
            for line in lines:
                line.shipped_floor += units.get(line.id, 0)


def _ours(
    candidates: list[Shipment], tracking: str | None, units: dict[int, int]
) -> Shipment | None:
    wanted = _normal(tracking)
    for shipment in candidates:
        if _normal(shipment.tracking_number) == wanted and {
            part.order_line_id: part.quantity for part in shipment.lines
        } == dict(units):
            return shipment
    return None


def _apply_floors(lines: Sequence[OrderLine]) -> bool:
    changed = False
    for line in lines:
        if not (line.shipped_floor or line.cancelled_floor):
            continue
        shipped = min(line.quantity, max(line.quantity_shipped, line.shipped_floor))
        cancelled = min(line.quantity - shipped, max(line.quantity_cancelled, line.cancelled_floor))
        if (shipped, cancelled) != (line.quantity_shipped, line.quantity_cancelled):
            line.quantity_shipped, line.quantity_cancelled = shipped, cancelled
            changed = True
    return changed


def _normal(tracking: str | None) -> str | None:
    return tracking.strip().casefold() or None if tracking else None


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if value else value
