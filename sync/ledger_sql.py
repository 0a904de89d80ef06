"""Prebuilt SQL for the stock ledger's hot paths, and a lean way to run it in a session.

Building a statement and computing its cache key costs more than running it on these paths, so
each statement here is built once, with expanding bind parameters, and reused. Ingest's own
statements on PostgreSQL take their rows as arrays, one per column, and do several things at
once, to spare round trips.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    BindParameter,
    Boolean,
    CursorResult,
    Executable,
    Integer,
    LargeBinary,
    String,
    Text,
    TextClause,
    bindparam,
    func,
    literal,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Update

from sync.models import BundleComponent, Listing, Order, OrderLine, Reservation, Sku, StockLevel
from sync.types import Money, UTCDateTime


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
def mark_dirty_statement() -> Update:
    # Built once (see ledger_state_statement); `mark_dirty` adds a channel's lowered beliefs.
    wanted: BindParameter[list[str]] = bindparam("skus", expanding=True)
    reach = union_all(
        select(Sku.sku).where(Sku.sku.in_(wanted)),
        select(BundleComponent.bundle_sku).where(BundleComponent.component_sku.in_(wanted)),
    )
    return (
        update(Listing)
        .where(Listing.sku.in_(reach))
        .values(is_dirty=True)
        .returning(Listing.id, Listing.channel_id)
    )


# --- PostgreSQL: ingest in few round trips ---------------------------------------------------
#
# Each statement below has one text whatever the batch size (rows travel as arrays, one per
# column), so psycopg prepares it once and the server plans it once.

_STR_ARRAY = ARRAY(String())
_INT_ARRAY = ARRAY(Integer())
_ID_ARRAY = ARRAY(BigInteger())
_TEXT_ARRAY = ARRAY(Text())  # JSON documents, cast to json in the statement

# Listings of the SKUs in :dirty_skus and of bundles built from them become dirty; for the
# channel :sold_channel, what we believe it shows for each SKU in :sold_skus goes down by the
# units it sold and is to be confirmed by a push. `mark_dirty` in SQL.
_MARK_DIRTY = """
UPDATE listings
SET is_dirty = true,
    last_pushed_quantity = CASE
        WHEN sold.units IS NULL OR listings.last_pushed_quantity IS NULL
            THEN listings.last_pushed_quantity
        WHEN listings.last_pushed_quantity > sold.units
            THEN listings.last_pushed_quantity - sold.units
        ELSE 0
    END,
    verify_belief = CASE
        WHEN sold.units IS NOT NULL THEN true ELSE listings.verify_belief
    END
FROM listings AS target
LEFT JOIN unnest(:sold_skus, :sold_units) AS sold (sku, units)
    ON sold.sku = target.sku AND target.channel_id = :sold_channel
WHERE listings.id = target.id
  AND target.sku IN (
    SELECT skus.sku FROM skus WHERE skus.sku = ANY(:dirty_skus)
    UNION ALL
    SELECT bundle_components.bundle_sku FROM bundle_components
    WHERE bundle_components.component_sku = ANY(:dirty_skus)
  )
RETURNING listings.id, listings.channel_id
"""

_MARK_DIRTY_PARAMS = (
    bindparam("dirty_skus", type_=_STR_ARRAY),
    bindparam("sold_channel", type_=Integer()),
    bindparam("sold_skus", type_=_STR_ARRAY),
    bindparam("sold_units", type_=_INT_ARRAY),
)


def _sql(*parts: str) -> TextClause:
    # Whitespace collapsed: psycopg caches the parsing of a query text only up to 4 kB.
    return text(" ".join(" ".join(parts).split()))


@functools.cache
def mark_dirty_statement_pg() -> TextClause:
    # Built once; the same UPDATE as in ingest_write_statement().
    return _sql(_MARK_DIRTY).bindparams(*_MARK_DIRTY_PARAMS)


@functools.cache
def ingest_lookup_statement() -> TextClause:
    """Which of a batch's orders are stored (and older than the batch), and SKU locks, at once.

    Run after the orders' advisory locks, so what it reads of them is final. It locks, sorted,
    the SKU rows `components_of(..., lock_with=...)` would: the line SKUs of the orders to apply
    (new or stale) and those of their stored lines (`wanted`), their components, and whatever
    the stored lines' reservations hold. :line_orders and :skus are parallel, one per line.
    Rows: (sku, is_bundle, component, units, NULL, is_wanted) per locked SKU and component,
    then (external id, is_stale, NULL, NULL, order id, NULL) per stored order.
    """
    return _sql(
        """
WITH incoming (external_id, updated_at) AS (
    SELECT * FROM unnest(:external_ids, :updated_at)
),
stored AS MATERIALIZED (
    SELECT orders.id, orders.external_id, orders.channel_updated_at < incoming.updated_at AS is_stale
    FROM orders JOIN incoming ON incoming.external_id = orders.external_id
    WHERE orders.channel_id = :channel AND orders.external_id = ANY(:external_ids)
),
old_lines AS (
    SELECT order_lines.id, order_lines.sku
    FROM order_lines JOIN stored ON stored.id = order_lines.order_id
    WHERE stored.is_stale
),
wanted (sku) AS (
    SELECT incoming_lines.sku
    FROM unnest(:line_orders, :skus) AS incoming_lines (external_id, sku)
    WHERE NOT EXISTS (
        SELECT FROM stored
        WHERE stored.external_id = incoming_lines.external_id AND NOT stored.is_stale)
    UNION
    SELECT old_lines.sku FROM old_lines WHERE old_lines.sku IS NOT NULL
),
to_lock (sku) AS (
    SELECT wanted.sku FROM wanted
    UNION
    SELECT bundle_components.component_sku
    FROM bundle_components JOIN wanted ON wanted.sku = bundle_components.bundle_sku
    UNION
    SELECT reservations.sku
    FROM reservations JOIN old_lines ON old_lines.id = reservations.order_line_id
),
locked AS MATERIALIZED (
    SELECT skus.sku, skus.is_bundle, bundle_components.component_sku, bundle_components.quantity
    FROM skus LEFT OUTER JOIN bundle_components ON bundle_components.bundle_sku = skus.sku
    WHERE skus.sku IN (SELECT to_lock.sku FROM to_lock)
    ORDER BY skus.sku, bundle_components.component_sku
    FOR UPDATE OF skus
)
SELECT locked.sku, locked.is_bundle, locked.component_sku, locked.quantity, NULL AS order_id,
       locked.sku IN (SELECT wanted.sku FROM wanted) AS is_wanted
FROM locked
UNION ALL
SELECT stored.external_id, stored.is_stale, NULL, NULL, stored.id, NULL
FROM stored
"""
    ).bindparams(
        bindparam("channel", type_=Integer()),
        bindparam("external_ids", type_=_STR_ARRAY),
        bindparam("updated_at", type_=ARRAY(UTCDateTime())),
        bindparam("line_orders", type_=_STR_ARRAY),
        bindparam("skus", type_=_STR_ARRAY),
    )


_WRITE_CTES = """
WITH new_orders AS (
    INSERT INTO orders (channel_id, external_id, number, status, currency, total, is_reserving,
                        is_oversold, ship_to_sealed, pii_key_id, buyer_ref,
                        channel_created_at, channel_updated_at, ingested_at, updated_at)
    SELECT :channel, o.external_id, o.number, o.status, o.currency, o.total, o.is_reserving,
           false, o.sealed, o.kid, o.buyer_ref, o.ca, o.ua, :now, :now
    FROM unnest(:o_external_id, :o_number, :o_status, :o_currency, :o_total, :o_is_reserving,
                :o_ship_to_sealed, :o_pii_key_id, :o_buyer_ref, :o_created_at, :o_updated_at)
         WITH ORDINALITY
         AS o (external_id, number, status, currency, total, is_reserving, sealed, kid,
               buyer_ref, ca, ua, n)
    ORDER BY o.n
    RETURNING orders.id, orders.external_id
),
new_lines AS (
    INSERT INTO order_lines (order_id, external_line_id, channel_sku, sku, quantity,
                             quantity_cancelled, quantity_shipped, unit_price, extra)
    SELECT new_orders.id, l.external_line_id, l.channel_sku, l.sku, l.quantity, l.cancelled,
           l.shipped, l.unit_price, CAST(l.extra AS json)
    FROM unnest(:l_order, :l_external_line_id, :l_channel_sku, :l_sku, :l_quantity,
                :l_cancelled, :l_shipped, :l_unit_price, :l_extra) WITH ORDINALITY
         AS l (order_ext, external_line_id, channel_sku, sku, quantity, cancelled,
               shipped, unit_price, extra, n)
    JOIN new_orders ON new_orders.external_id = l.order_ext
    ORDER BY l.n
    RETURNING order_lines.id, order_lines.order_id, order_lines.external_line_id
),
new_reservations AS (
    INSERT INTO reservations (order_line_id, sku, location, reserved, consumed, released,
                              updated_at)
    SELECT COALESCE(r.line_id, new_lines.id), r.sku, r.location, r.reserved, r.consumed,
           r.released, :now
    FROM unnest(:r_line_id, :r_order, :r_external_line_id, :r_sku, :r_location, :r_reserved,
                :r_consumed, :r_released) WITH ORDINALITY
         AS r (line_id, order_ext, line_ext, sku, location, reserved, consumed, released, n)
    LEFT JOIN new_orders ON new_orders.external_id = r.order_ext
    LEFT JOIN new_lines
        ON new_lines.order_id = new_orders.id
       AND new_lines.external_line_id = r.line_ext
    ORDER BY r.n
),
new_events AS (
    INSERT INTO events (at, kind, channel_id, order_id, data)
    SELECT :now, e.kind, :channel, COALESCE(e.order_id, new_orders.id), CAST(e.data AS json)
    FROM unnest(:e_kind, :e_order_id, :e_order, :e_data) WITH ORDINALITY
         AS e (kind, order_id, order_ext, data, n)
    LEFT JOIN new_orders ON new_orders.external_id = e.order_ext
    ORDER BY e.n
),
"""

_WRITE_ANSWER = """
SELECT new_orders.id, new_orders.external_id, NULL AS channel_id FROM new_orders
UNION ALL
SELECT dirty.id, NULL, dirty.channel_id FROM dirty
"""


@functools.cache
def ingest_write_statement() -> TextClause:
    """Everything an ingest writes after its reads, in one statement.

    New orders, their lines, new reservations (of new lines, found by (order external id,
    external line id), or of stored lines, by id), one event per order, and `mark_dirty`. Rows
    go in in the order given (ORDER BY the ordinality), so ids grow as they did one by one.
    Answers (order id, external id, NULL) per new order and (listing id, NULL, channel id) per
    listing made dirty. Orders and lines that already exist are written by the ORM before this.
    """
    return _sql(_WRITE_CTES, "dirty AS (", _MARK_DIRTY, ")", _WRITE_ANSWER).bindparams(
        bindparam("channel", type_=Integer()),
        bindparam("now", type_=UTCDateTime()),
        bindparam("o_external_id", type_=_STR_ARRAY),
        bindparam("o_number", type_=_STR_ARRAY),
        bindparam("o_status", type_=_STR_ARRAY),
        bindparam("o_currency", type_=_STR_ARRAY),
        bindparam("o_total", type_=ARRAY(Money())),
        bindparam("o_is_reserving", type_=ARRAY(Boolean())),
        bindparam("o_ship_to_sealed", type_=ARRAY(LargeBinary())),  # sync.sealing
        bindparam("o_pii_key_id", type_=_STR_ARRAY),
        bindparam("o_buyer_ref", type_=_STR_ARRAY),
        bindparam("o_created_at", type_=ARRAY(UTCDateTime())),
        bindparam("o_updated_at", type_=ARRAY(UTCDateTime())),
        bindparam("l_order", type_=_STR_ARRAY),
        bindparam("l_external_line_id", type_=_STR_ARRAY),
        bindparam("l_channel_sku", type_=_STR_ARRAY),
        bindparam("l_sku", type_=_STR_ARRAY),
        bindparam("l_quantity", type_=_INT_ARRAY),
        bindparam("l_cancelled", type_=_INT_ARRAY),
        bindparam("l_shipped", type_=_INT_ARRAY),
        bindparam("l_unit_price", type_=ARRAY(Money())),
        bindparam("l_extra", type_=_TEXT_ARRAY),
        bindparam("r_line_id", type_=_ID_ARRAY),
        bindparam("r_order", type_=_STR_ARRAY),
        bindparam("r_external_line_id", type_=_STR_ARRAY),
        bindparam("r_sku", type_=_STR_ARRAY),
        bindparam("r_location", type_=_STR_ARRAY),
        bindparam("r_reserved", type_=_INT_ARRAY),
        bindparam("r_consumed", type_=_INT_ARRAY),
        bindparam("r_released", type_=_INT_ARRAY),
        bindparam("e_kind", type_=_STR_ARRAY),
        bindparam("e_order_id", type_=_ID_ARRAY),
        bindparam("e_order", type_=_STR_ARRAY),
        bindparam("e_data", type_=_TEXT_ARRAY),
        *_MARK_DIRTY_PARAMS,
    )
