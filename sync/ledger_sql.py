"""Prebuilt SQL for the stock ledger's hot paths, and a lean way to run it in a session.

Building a statement and computing its cache key costs more than running it on these paths, so
each statement here is built once, with expanding bind parameters, and reused.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    BindParameter,
    CursorResult,
    Executable,
    and_,
    bindparam,
    case,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Update

from sync.models import BundleComponent, Listing, Order, OrderLine, Reservation, Sku, StockLevel


def run_core(
    session: Session, statement: Executable, params: Mapping[str, Any] | None = None
) -> CursorResult[*tuple[Any, ...]]:
    """Run a Core statement on the session's connection after flushing what is pending.

    What autoflush would do, without the ORM's per-statement bookkeeping.
    """
    session.flush()
    return session.connection().execute(statement, params)


@functools.cache
def components_statement(locking: bool) -> Executable:
    # Built once (see ledger_state_statement).
    bc = BundleComponent
    wanted: BindParameter[list[str]] = bindparam("skus", expanding=True)
    statement = select(Sku.sku, Sku.is_bundle, bc.component_sku, bc.quantity).outerjoin(
        bc, bc.bundle_sku == Sku.sku
    )
    if not locking:
        return statement.where(Sku.sku.in_(wanted)).order_by(Sku.sku, bc.component_sku)
    reach = select(bc.component_sku).where(bc.bundle_sku.in_(wanted))
    also: BindParameter[list[str]] = bindparam("lock_with", expanding=True)
    return (
        statement.where(or_(Sku.sku.in_(also), Sku.sku.in_(reach)))
        .order_by(Sku.sku, bc.component_sku)
        .with_for_update(of=Sku)
    )


@functools.cache
def ledger_state_statement(flagged: bool) -> Executable:
    # Built once: constructing and keying a statement costs more than running it here.
    wanted: BindParameter[list[str]] = bindparam("skus", expanding=True)
    parts = [
        select(
            StockLevel.sku, StockLevel.location, StockLevel.on_hand.label("units"), literal(0)
        ).where(StockLevel.sku.in_(wanted)),
        select(
            Reservation.sku,
            Reservation.location,
            func.sum(Reservation.reserved).label("units"),
            literal(1),
        )
        .where(Reservation.sku.in_(wanted))
        .group_by(Reservation.sku, Reservation.location),
    ]
    if flagged:
        parts.append(
            select(Reservation.sku, literal(""), OrderLine.order_id.label("units"), literal(2))
            .join(OrderLine, Reservation.order_line_id == OrderLine.id)
            .join(Order, OrderLine.order_id == Order.id)
            .where(Order.is_oversold.is_(True), Reservation.sku.in_(wanted))
        )
    return union_all(*parts)


@functools.cache
def mark_dirty_statement(lowering: bool) -> Update:
    # Built once (see ledger_state_statement); `lowering`: this channel's belief becomes None.
    wanted: BindParameter[list[str]] = bindparam("skus", expanding=True)
    reach = union_all(
        select(Sku.sku).where(Sku.sku.in_(wanted)),
        select(BundleComponent.bundle_sku).where(BundleComponent.component_sku.in_(wanted)),
    )
    statement = (
        update(Listing)
        .where(Listing.sku.in_(reach))
        .values(is_dirty=True)
        .returning(Listing.id, Listing.channel_id)
    )
    if lowering:
        ours = and_(
            Listing.channel_id == bindparam("channel"),
            Listing.sku.in_(bindparam("sold", expanding=True)),
        )
        statement = statement.values(
            last_pushed_quantity=case((ours, null()), else_=Listing.last_pushed_quantity)
        )
    return statement
