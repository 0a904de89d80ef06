"""The webhook inbox: raw deliveries persisted before the channel is answered, then processed.

Bodies are stored sealed (sync/sealing.py, bound to their channel and delivery id) and opened
with `delivery_body`: a raw order delivery holds the buyer's name and address.

A receiver verifies a delivery, calls `record_delivery` and commits, and only then answers 200
(durable before visible); `sync/http/commit_queue.py` records the deliveries that arrive together
in one transaction. Channels deliver at least once, so the same delivery id can arrive
twice, even at two instances at the same moment: the unique (channel, delivery id) key keeps one
row and `record_delivery` says whether this call stored it. A processor claims received rows
oldest first (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so instances share the work), ingests them
in the same transaction and marks them processed; a delivery whose processing failed is retried
up to `max_attempts` times and then left `failed` for an operator.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sync.models import InboxState, WebhookDelivery, utcnow
from sync.sealing import current_keyring, inbox_context

MAX_ATTEMPTS = 5
ERROR_MAX = 2000


_INSERT_ROWS = 250  # rows per INSERT: 8 parameters each, far under SQLite's 32,766


@dataclass(frozen=True)
class NewDelivery:
    """A verified delivery to store: the channel's id for it, its topic, its raw body."""

    channel_id: int
    delivery_id: str
    topic: str
    body: bytes


def record_delivery(
    session: Session,
    *,
    channel_id: int,
    delivery_id: str,
    topic: str,
    body: bytes,
    now: datetime | None = None,
) -> bool:
    """Store a verified delivery unless this channel already sent this delivery id; True if new."""
    return record_deliveries(session, [NewDelivery(channel_id, delivery_id, topic, body)], now=now)[
        0
    ]


def record_deliveries(
    session: Session, deliveries: Sequence[NewDelivery], *, now: datetime | None = None
) -> list[bool]:
    """Store verified deliveries, each unless its channel already sent its delivery id (or it
    came earlier in `deliveries`); per delivery, True if it was new.

    One multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING: the webhook group commit's
    statement, whose time holds every waiting request's 200 (a statement per delivery was a
    fifth of the daemon's write-lock time at 200 deliveries/s)."""
    for delivery in deliveries:
        if not delivery.delivery_id:
            raise ValueError("a delivery needs the channel's delivery id to be deduplicated")
    if not deliveries:
        return []
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # A delivery names its buyer (an order's address): only the sealed body is written.
    keyring = current_keyring()
    received_at = now or utcnow()
    stored: set[tuple[int, str]] = set()
    for start in range(0, len(deliveries), _INSERT_ROWS):
        chunk = deliveries[start : start + _INSERT_ROWS]
        stmt = (
            insert(WebhookDelivery)
            .values(
                [
                    {
                        "channel_id": d.channel_id,
                        "delivery_id": d.delivery_id,
                        "topic": d.topic,
                        "body": keyring.seal(d.body, inbox_context(d.channel_id, d.delivery_id)),
                        "key_id": keyring.current_id,
                        "state": InboxState.RECEIVED,
                        "attempts": 0,
                        "received_at": received_at,
                    }
                    for d in chunk
                ]
            )
            .on_conflict_do_nothing(index_elements=["channel_id", "delivery_id"])
            .returning(WebhookDelivery.channel_id, WebhookDelivery.delivery_id)
        )
        # A concurrent insert of the same key waits for the other transaction, then does
        # nothing; a key twice in the chunk is inserted by its first row only.
        stored.update((row.channel_id, row.delivery_id) for row in session.execute(stmt))
    answers = []
    for delivery in deliveries:
        key = (delivery.channel_id, delivery.delivery_id)
        answers.append(key in stored)
        stored.discard(key)  # a repeat later in the list is not new
    return answers


def delivery_body(delivery: WebhookDelivery) -> bytes:
    """The delivery's body as the channel sent it, opened (a legacy plain body as it is).

    Raises sync.sealing.SealingError (naming the key id, never the body) when it cannot open.
    """
    if delivery.key_id is None:
        return delivery.body
    context = inbox_context(delivery.channel_id, delivery.delivery_id)
    return current_keyring().open(delivery.body, context)


def claim_deliveries(
    session: Session,
    limit: int,
    *,
    channel_id: int | None = None,
    excluding: Collection[int] = (),
) -> list[WebhookDelivery]:
    """Received deliveries, oldest first, locked for this transaction (skipping others' rows
    and the ids in `excluding`: those this process is working on outside a transaction).

    Only deliveries this process can open: one sealed under a key it lacks (another instance's
    generated key) is left for an instance that holds it.
    """
    openable = WebhookDelivery.key_id.is_(None) | WebhookDelivery.key_id.in_(
        sorted(current_keyring().key_ids)
    )
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.state == InboxState.RECEIVED, openable)
        .order_by(WebhookDelivery.received_at, WebhookDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if channel_id is not None:
        query = query.where(WebhookDelivery.channel_id == channel_id)
    if excluding:
        query = query.where(WebhookDelivery.id.not_in(sorted(excluding)))
    return list(session.scalars(query))


def mark_processed(session: Session, ids: Sequence[int], *, now: datetime | None = None) -> None:
    """Mark deliveries processed (in the transaction that applied them)."""
    if ids:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(list(ids)))
            .values(state=InboxState.PROCESSED, processed_at=now or utcnow(), error=None)
        )


def mark_failed(
    session: Session,
    delivery: WebhookDelivery,
    error: str,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    now: datetime | None = None,
) -> InboxState:
    """Count a failed try: keep the delivery for another, or give up (failed) after max_attempts.

    `delivery` may come from a transaction that was rolled back: the row is re-read and locked
    here, so the count is right however many processors failed on it.
    """
    row = session.get(WebhookDelivery, delivery.id, with_for_update=True, populate_existing=True)
    if row is None:
        raise LookupError(f"webhook delivery {delivery.id} is gone")
    if row.state != InboxState.RECEIVED:
        return row.state  # another processor finished or gave up on it meanwhile
    row.attempts += 1
    row.error = error[:ERROR_MAX]
    if row.attempts >= max_attempts:
        row.state = InboxState.FAILED
        row.processed_at = now or utcnow()
    session.flush()
    return row.state
