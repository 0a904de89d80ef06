"""The rows an ingest adds, written after every read: one statement on PostgreSQL, a few on SQLite.

Ingest first decides everything (which orders are new, which reservations each line needs,
which listings go dirty) and only then writes what it added. New orders and their lines are not
ORM objects: nothing in the transaction reads them back as objects, and the unit of work is the
cost here. A new line is named by (order external id, external line id) until the insert gives
it an id; a reservation refers to its line by that pair, or by id when the line was stored.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from connectors.base import Order
from sync.ledger_sql import ingest_write_statement, run_core
from sync.models import Event, OrderLine, Reservation, utcnow
from sync.models import Order as OrderRow
from sync.reservations import forget_dirty_listings, mark_dirty, mark_dirty_params
from sync.sealing import current_keyring, seal_ship_to

LineRef = int | tuple[str, str]  # a stored line's id, or (order external id, external line id)


@dataclass(slots=True)
class NewLine:
    """A line of a new order, as it will be stored."""

    order_external_id: str
    external_line_id: str
    channel_sku: str
    sku: str | None  # None: not one of our SKUs (unmapped)
    quantity: int
    quantity_cancelled: int
    quantity_shipped: int
    unit_price: Decimal | None
    extra: dict[str, Any] | None


@dataclass(slots=True)
class NewReservation:
    """A reservation row this ingest creates, before it is inserted."""

    line: LineRef
    sku: str
    location: str
    reserved: int = 0
    consumed: int = 0
    released: int = 0


@dataclass
class NewRows:
    """What one ingest adds, in the order it decided it (ids grow in this order)."""

    orders: list[Order] = field(default_factory=list)
    lines: list[NewLine] = field(default_factory=list)
    reservations: list[NewReservation] = field(default_factory=list)
    # (kind, order id, or None for a new order named by its external id, data)
    events: list[tuple[str, int | None, str, dict[str, Any]]] = field(default_factory=list)


@dataclass(frozen=True)
class Written:
    """What the writes answered."""

    order_ids: dict[str, int]  # new orders: external id -> id
    dirty_channels: set[int]


def write_rows(
    session: Session,
    channel_id: int,
    rows: NewRows,
    dirty_skus: Iterable[str],
    lower: tuple[int, Mapping[str, int]],
) -> Written:
    """Insert the new rows and do `mark_dirty(session, dirty_skus, lower=lower)`."""
    if session.get_bind().dialect.name == "postgresql":
        return _write_postgresql(session, channel_id, rows, dirty_skus, lower)
    order_ids = _insert_sqlite(session, channel_id, rows)
    return Written(order_ids, mark_dirty(session, dirty_skus, lower=lower))


def _write_postgresql(
    session: Session,
    channel_id: int,
    rows: NewRows,
    dirty_skus: Iterable[str],
    lower: tuple[int, Mapping[str, int]],
) -> Written:
    orders, lines, reservations = rows.orders, rows.lines, rows.reservations
    new_line = [r.line if isinstance(r.line, tuple) else (None, None) for r in reservations]
    sealed_ship_to = [_sealed_ship_to(channel_id, o) for o in orders]
    params: dict[str, Any] = {
        "channel": channel_id,
        "now": utcnow(),
        "o_external_id": [o.external_id for o in orders],
        "o_number": [o.number for o in orders],
        "o_status": [o.status.value for o in orders],
        "o_currency": [o.currency for o in orders],
        "o_total": [o.total.amount if o.total else None for o in orders],
        "o_is_reserving": [o.is_reserving for o in orders],
        "o_ship_to_sealed": [sealed for sealed, _ in sealed_ship_to],
        "o_pii_key_id": [key for _, key in sealed_ship_to],
        "o_buyer_ref": [o.buyer_ref for o in orders],
        "o_created_at": [o.created_at for o in orders],
        "o_updated_at": [o.updated_at for o in orders],
        "l_order": [line.order_external_id for line in lines],
        "l_external_line_id": [line.external_line_id for line in lines],
        "l_channel_sku": [line.channel_sku for line in lines],
        "l_sku": [line.sku for line in lines],
        "l_quantity": [line.quantity for line in lines],
        "l_cancelled": [line.quantity_cancelled for line in lines],
        "l_shipped": [line.quantity_shipped for line in lines],
        "l_unit_price": [line.unit_price for line in lines],
        "l_extra": [json.dumps(line.extra) for line in lines],
        "r_line_id": [r.line if isinstance(r.line, int) else None for r in reservations],
        "r_order": [order for order, _ in new_line],
        "r_external_line_id": [line for _, line in new_line],
        "r_sku": [r.sku for r in reservations],
        "r_location": [r.location for r in reservations],
        "r_reserved": [r.reserved for r in reservations],
        "r_consumed": [r.consumed for r in reservations],
        "r_released": [r.released for r in reservations],
        "e_kind": [kind for kind, _, _, _ in rows.events],
        "e_order_id": [order_id for _, order_id, _, _ in rows.events],
        "e_order": [ext if order_id is None else None for _, order_id, ext, _ in rows.events],
        "e_data": [json.dumps(data) for _, _, _, data in rows.events],
        **mark_dirty_params(dirty_skus, lower),
    }
    order_ids: dict[str, int] = {}
    dirty: list[tuple[int, int]] = []
    for row_id, external_id, dirty_channel in run_core(session, ingest_write_statement(), params):
        if external_id is not None:
            order_ids[external_id] = int(row_id)
        else:
            dirty.append((int(row_id), int(dirty_channel)))
    lowering = bool(lower[1])
    return Written(order_ids, forget_dirty_listings(session, dirty, lowering=lowering))


def _insert_sqlite(session: Session, channel_id: int, rows: NewRows) -> dict[str, int]:
    # No round trips to save in-process: plain multi-row inserts, ids matched by natural key
    # (SQLite does not promise RETURNING rows in insert order).
    connection = session.connection()
    order_ids: dict[str, int] = {}
    if rows.orders:
        orders = connection.execute(
            insert(OrderRow).returning(OrderRow.id, OrderRow.external_id),
            [
                {
                    "channel_id": channel_id,
                    "external_id": o.external_id,
                    "number": o.number,
                    "status": o.status,
                    "currency": o.currency,
                    "total": o.total.amount if o.total else None,
                    "is_reserving": o.is_reserving,
                    **_sealed_columns(channel_id, o),
                    "buyer_ref": o.buyer_ref,
                    "channel_created_at": o.created_at,
                    "channel_updated_at": o.updated_at,
                }
                for o in rows.orders
            ],
        )
        order_ids = {external_id: order_id for order_id, external_id in orders}
    line_ids: dict[tuple[str, str], int] = {}
    if rows.lines:
        inserted = connection.execute(
            insert(OrderLine).returning(
                OrderLine.id, OrderLine.order_id, OrderLine.external_line_id
            ),
            [
                {
                    "order_id": order_ids[line.order_external_id],
                    **{f.name: getattr(line, f.name) for f in _LINE_FIELDS},
                }
                for line in rows.lines
            ],
        )
        external = {order_id: external_id for external_id, order_id in order_ids.items()}
        line_ids = {(external[order], line): line_id for line_id, order, line in inserted}
    if rows.reservations:
        connection.execute(
            insert(Reservation),
            [
                {
                    "order_line_id": r.line if isinstance(r.line, int) else line_ids[r.line],
                    "sku": r.sku,
                    "location": r.location,
                    "reserved": r.reserved,
                    "consumed": r.consumed,
                    "released": r.released,
                }
                for r in rows.reservations
            ],
        )
    if rows.events:
        connection.execute(
            insert(Event),
            [
                {
                    "kind": kind,
                    "channel_id": channel_id,
                    "order_id": order_ids[ext] if order_id is None else order_id,
                    "data": data,
                }
                for kind, order_id, ext, data in rows.events
            ],
        )
    return order_ids


# The columns a NewLine gives its row (all but the order, which the insert resolves).
_LINE_FIELDS = [f for f in dataclasses.fields(NewLine) if f.name != "order_external_id"]


def _sealed_columns(channel_id: int, order: Order) -> dict[str, Any]:
    sealed, key_id = _sealed_ship_to(channel_id, order)
    return {"ship_to_sealed": sealed, "pii_key_id": key_id}


def _sealed_ship_to(channel_id: int, order: Order) -> tuple[bytes | None, str | None]:
    """(sealed ship-to, key id): buyer data is never written in plain text."""
    ship_to = dataclasses.asdict(order.ship_to) if order.ship_to else None
    return seal_ship_to(current_keyring(), channel_id, order.external_id, ship_to)
