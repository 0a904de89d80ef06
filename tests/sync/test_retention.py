"""Housekeeping: what the retention job deletes, and what it keeps, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from sync.db import Database
from sync.inbox import record_delivery
from sync.models import Channel, Event, InboxState, WebhookDelivery
from sync.retention import purge_expired

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _deliveries(database: Database, ages: dict[str, tuple[int, InboxState]]) -> None:
    with database.session() as session:
        channel = Channel(name="shop", kind="memory")
        session.add(channel)
        session.flush()
        for delivery_id, (days, state) in ages.items():
            received = NOW - timedelta(days=days)
            body = b'{"buyer": "someone"}'
            assert record_delivery(
                session,
                channel_id=channel.id,
                delivery_id=delivery_id,
                topic="orders/create",
                body=body,
                now=received,
            )
            row = session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.delivery_id == delivery_id)
            ).one()
            row.state, row.received_at = state, received
        session.add(Event(at=NOW - timedelta(days=100), kind="old"))
        session.add(Event(at=NOW - timedelta(days=10), kind="recent"))


def test_processed_go_after_their_days_failed_after_the_buyer_data_days_received_never(
    database: Database,
) -> None:
    _deliveries(
        database,
        {
            "processed-old": (15, InboxState.PROCESSED),
            "processed-new": (13, InboxState.PROCESSED),
            "failed-past-buyer-days": (31, InboxState.FAILED),
            "failed-within-buyer-days": (20, InboxState.FAILED),  # kept for the operator
            "received-ancient": (400, InboxState.RECEIVED),  # work not done yet
        },
    )
    counts = database.transact(
        lambda session: purge_expired(
            session, NOW, inbox_days=14, events_days=90, buyer_data_days=30
        )
    )
    assert counts == (2, 1)
    with database.read_session() as session:
        left = set(session.scalars(select(WebhookDelivery.delivery_id)))
        events = set(session.scalars(select(Event.kind)))
    assert left == {"processed-new", "failed-within-buyer-days", "received-ancient"}
    assert events == {"recent"}
