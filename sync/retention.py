"""Housekeeping: forget processed webhook deliveries and old events after their retention.

A delivery that failed is kept for the operator to look into, but not for ever: its body holds
the buyer's data (sealed), so it goes once the buyer-data retention is past too, like the data
of the order it was about.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_
from sqlalchemy.orm import Session

from sync.models import Event, InboxState, WebhookDelivery


def purge_expired(
    session: Session,
    now: datetime,
    *,
    inbox_days: int,
    events_days: int,
    buyer_data_days: int | None = None,
) -> tuple[int, int]:
    """Delete processed inbox rows and events past retention, and failed inbox rows past the
    longer of both retentions; answer how many deliveries and events went."""
    # A delivery still "received" is work not yet done, however old: it stays.
    failed_days = max(inbox_days, buyer_data_days or inbox_days)
    inbox = session.execute(
        delete(WebhookDelivery).where(
            or_(
                and_(
                    WebhookDelivery.state == InboxState.PROCESSED,
                    WebhookDelivery.received_at < now - timedelta(days=inbox_days),
                ),
                and_(
                    WebhookDelivery.state == InboxState.FAILED,
                    WebhookDelivery.received_at < now - timedelta(days=failed_days),
                ),
            )
        )
    )
    events = session.execute(delete(Event).where(Event.at < now - timedelta(days=events_days)))
    return _rowcount(inbox), _rowcount(events)


def _rowcount(result: object) -> int:
    count = getattr(result, "rowcount", 0)
    return int(count) if isinstance(count, int) else 0
