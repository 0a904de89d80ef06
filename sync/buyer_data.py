"""Buyers' personal data in the store: erased on request and after retention, facts kept.

Personal data (name, address, e-mail, phone) lives only in `orders.ship_to`, and a hash of the
buyer's identity in `orders.buyer_ref`. Erasing clears both and stamps `pii_erased_at`, so a
later ingest of the same order does not bring the data back (ingest checks the stamp). Order ids,
lines, money, dates and statuses stay: the seller's books need them and they identify no one.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, update
from sqlalchemy.orm import Session

from sync.models import Order


def erase_where(session: Session, condition: ColumnElement[bool], now: datetime) -> int:
    """Erase the personal data of the orders matching `condition`; answer how many changed."""
    result = session.execute(
        update(Order)
        .where(condition, Order.pii_erased_at.is_(None))
        .values(ship_to=None, buyer_ref=None, pii_erased_at=now)
        .execution_options(synchronize_session=False)
    )
    count = getattr(result, "rowcount", 0)
    return int(count) if isinstance(count, int) else 0


def erase_buyer(session: Session, channel_id: int, buyer_ref: str, now: datetime) -> int:
    """Erase one buyer's personal data from every order of theirs on one channel (eBay's
    account deletion); answer how many orders changed."""
    return erase_where(
        session, (Order.channel_id == channel_id) & (Order.buyer_ref == buyer_ref), now
    )
