"""Housekeeping: forget processed webhook deliveries and old events after their retention."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from sync.models import Event, InboxState, WebhookDelivery


def purge_expired(
    session: Session, now: datetime, *, inbox_days: int, events_days: int
) -> tuple[int, int]:
    """Delete processed inbox rows and events past retention; answer how many of each went."""
    # Only processed deliveries go: one still "received" is work not yet done, however old.
    inbox = session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.state == InboxState.PROCESSED,
            WebhookDelivery.received_at < now - timedelta(days=inbox_days),
        )
    )
    events = session.execute(delete(Event).where(Event.at < now - timedelta(days=events_days)))
    return _rowcount(inbox), _rowcount(events)


def _rowcount(result: object) -> int:
    count = getattr(result, "rowcount", 0)
    return int(count) if isinstance(count, int) else 0
