"""Buyers' personal data in the store: erased on request and after retention, facts kept.

Personal data (name, address, e-mail, phone) lives only in `orders.ship_to_sealed` (sealed,
sync/sealing.py; `orders.ship_to` for a legacy plain value not yet sealed), and the buyer's
identity (a hash) in `orders.buyer_ref`. Erasing clears them all, with the key id,
and stamps `pii_erased_at`, so a later ingest of the same order does not bring the data back
(ingest checks the stamp). Order ids, lines, money, dates and statuses stay: the seller's books
need them and they identify no one.

Retention (Amazon's Data Protection Policy: delete within 30 days after delivery): an order's
data goes `retention.buyer_data_days` after it was delivered, taken as the moment it became
shipped or cancelled. The store keeps no such timestamp, and needs none: a shipped or cancelled
order that has not changed, here (`updated_at`) or on the channel (`channel_updated_at`), for N
days became final at least N days ago. An order the channel still changes (a return, a late
delivery scan) keeps its data until it has been quiet for N days.

Erasing takes the same per-order advisory locks as ingest (PostgreSQL), and re-checks its
condition after them: an ingest that loaded the order before the erasure cannot write the data
back after it. The purge is idempotent and cheap (a read of the orders table, then one short
transaction per chunk of due orders), so every instance runs it on its own schedule, without a
lease: whichever comes second finds nothing left to erase.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from connectors.base import OrderStatus
from sync.db import Database
from sync.models import Order
from sync.reservations import lock_orders
from sync.sealing import current_keyring, open_json, ship_to_context

__all__ = [
    "DELIVERED_STATUSES",
    "PURGE_CHUNK",
    "erase_buyer",
    "erase_where",
    "is_past_retention",
    "purge_buyer_data",
    "ship_to_of",
]

DELIVERED_STATUSES = (OrderStatus.SHIPPED, OrderStatus.CANCELLED)
"""Statuses after which an order's buyer data is only kept for the retention period."""

PURGE_CHUNK = 500
"""Orders erased per transaction by the purge: short row locks beside a busy ingest."""


def ship_to_of(order: Order) -> dict[str, Any] | None:
    """The order's ship-to, opened (a legacy plain one as it is, until it is sealed).

    Raises sync.sealing.SealingError (naming the key id, never the data) when it cannot open.
    """
    if order.ship_to_sealed is not None:
        context = ship_to_context(order.channel_id, order.external_id)
        return open_json(current_keyring(), order.ship_to_sealed, context)
    return order.ship_to


def erase_where(
    session: Session, condition: ColumnElement[bool], now: datetime, *, limit: int | None = None
) -> int:
    """Erase the personal data of the orders matching `condition` (at most `limit` of them, by
    id); answer how many changed."""
    return _erase(session, condition, now, limit)[1]


def erase_buyer(session: Session, channel_id: int, buyer_ref: str, now: datetime) -> int:
    """Erase one buyer's personal data from every order of theirs on one channel (eBay's
    account deletion); answer how many orders changed."""
    return erase_where(
        session, (Order.channel_id == channel_id) & (Order.buyer_ref == buyer_ref), now
    )


def is_past_retention(now: datetime, days: int) -> ColumnElement[bool]:
    """Orders shipped or cancelled, unchanged here and on the channel for `days` days."""
    cutoff = now - timedelta(days=days)
    return (
        Order.status.in_(DELIVERED_STATUSES)
        & (Order.updated_at < cutoff)
        & (Order.channel_updated_at < cutoff)
    )


def purge_buyer_data(db: Database, now: datetime, *, days: int, chunk: int = PURGE_CHUNK) -> int:
    """Erase the buyer data of every order past retention, `chunk` orders per transaction;
    answer how many orders were erased."""
    condition = is_past_retention(now, days)
    total = 0
    while True:
        found, erased = db.transact(lambda session: _erase(session, condition, now, chunk))
        total += erased
        # An order whose re-check failed no longer matches: it is not found again.
        if found < chunk:
            return total


def _erase(
    session: Session, condition: ColumnElement[bool], now: datetime, limit: int | None
) -> tuple[int, int]:
    """(orders found, orders erased) for `erase_where`."""
    pending = condition & Order.pii_erased_at.is_(None)
    query = select(Order.id, Order.channel_id, Order.external_id).where(pending).order_by(Order.id)
    if limit is not None:
        query = query.limit(limit)
    rows = session.execute(query).all()
    if not rows:
        return 0, 0
    # Ingest's lock, in its order (sorted keys), before any row lock: an ingest holding it has
    # read the order and will write it; after it, the UPDATE's own snapshot sees its commit.
    lock_orders(session, ((channel_id, external_id) for _, channel_id, external_id in rows))
    result = session.execute(
        update(Order)
        .where(Order.id.in_([order_id for order_id, _, _ in rows]), pending)
        .values(
            ship_to=None, ship_to_sealed=None, pii_key_id=None, buyer_ref=None, pii_erased_at=now
        )
        .execution_options(synchronize_session=False)
    )
    count = getattr(result, "rowcount", 0)
    return len(rows), int(count) if isinstance(count, int) else 0
