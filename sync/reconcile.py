"""Reconcile: re-read a channel and repair what drifted from the store, counting every repair.

Orders again from the poll checkpoint minus an overlap (a channel's late writes, a webhook we
lost); the listings the channel has, binding those whose SKU we know; and the quantities of bound
listings against what we believe the channel shows (`listings.last_pushed_quantity`). A wrong
belief is replaced by what the channel showed and the listing marked dirty, so the stock pusher
sends the ledger's figure if the two differ: the repair goes through the one push path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from connectors.base import ChannelListing
from connectors.errors import PermanentError
from sync.db import Database
from sync.listing_coverage import record_listings_checked
from sync.metrics import Metrics
from sync.models import JobState, Listing, OutboxJob, Sku, utcnow
from sync.polling import (
    PollChannel,
    call_channel,
    chunks,
    commit_page,
    fetch_page,
    insert_for,
    note_ingest,
    read_checkpoint,
    read_only,
)
from sync.stock_push import STOCK_KEY

log = logging.getLogger(__name__)

READ_STOCK_CHUNK = 50


@dataclass
class ReconcileResult:
    """What one reconcile read and repaired."""

    pages: int = 0
    orders: int = 0
    orders_missing: int = 0  # covered by the checkpoint, yet not in the store
    orders_stale: int = 0  # in the store, but older than what the channel shows
    listings_bound: int = 0
    listings_checked: int = 0
    stock_drift: int = 0  # the channel shows other than what we believe it was told

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def bind_listings(
    session: Session, channel_id: int, listings: Sequence[ChannelListing]
) -> list[tuple[str, str]]:
    """Create a listing for each channel listing whose SKU we know and that is not bound yet.

    Answers (sku, listing_ref) of the new bindings. What the channel shows becomes what we
    believe it holds, and the listing is dirty, so the next planning round pushes the ledger's
    figure if it differs. A binding made meanwhile elsewhere is left as it is.
    """
    wanted = {c.listing_ref: c for c in listings if c.sku}
    if not wanted:
        return []
    known: set[str] = set()
    bound: set[str] = set()
    skus = sorted({c.sku for c in wanted.values() if c.sku})
    for chunk in chunks(skus):
        known.update(session.scalars(select(Sku.sku).where(Sku.sku.in_(chunk))))
    for chunk in chunks(sorted(wanted)):
        bound.update(
            session.scalars(
                select(Listing.external_ref).where(
                    Listing.channel_id == channel_id, Listing.external_ref.in_(chunk)
                )
            )
        )
    insert = insert_for(session)
    created = []
    for ref, listing in sorted(wanted.items()):
        if ref in bound or listing.sku not in known:
            continue
        shows = listing.quantity if listing.quantity is not None and listing.quantity >= 0 else None
        done = session.scalar(
            insert(Listing)
            .values(
                channel_id=channel_id,
                sku=listing.sku,
                external_ref=ref,
                extra=dict(listing.extra) or None,
                is_dirty=True,
                last_pushed_quantity=shows,
            )
            .on_conflict_do_nothing(index_elements=[Listing.channel_id, Listing.external_ref])
            .returning(Listing.id)
        )
        if done is not None:
            created.append((str(listing.sku), ref))
    return created


@dataclass(frozen=True)
class _Belief:
    listing_id: int
    ref: str
    quantity: int | None
    pushed_seq: int


def bound_listings(session: Session, channel_id: int) -> list[_Belief]:
    """Every listing bound on a channel with what we believe it shows, as of now."""
    return [
        _Belief(listing_id, ref, quantity, seq)
        for listing_id, ref, quantity, seq in session.execute(
            select(
                Listing.id,
                Listing.external_ref,
                Listing.last_pushed_quantity,
                Listing.last_pushed_seq,
            )
            .where(Listing.channel_id == channel_id)
            .order_by(Listing.id)
        )
    ]


def repair_drift(session: Session, beliefs: Sequence[_Belief], shows: Mapping[str, int]) -> int:
    """Believe what the channel showed where it differs, and mark those listings dirty.

    Skipped: a listing with a push pending or in flight (it is about to change anyway) and one
    whose push landed after `beliefs` were read. Answers how many known beliefs were wrong.
    """
    by_id = {b.listing_id: b for b in beliefs if b.ref in shows}
    if not by_id:
        return 0
    busy: set[str] = set()
    for chunk in chunks(sorted(by_id)):
        keys = [STOCK_KEY.format(listing_id=i) for i in chunk]
        busy.update(
            session.scalars(
                select(OutboxJob.identity_key).where(
                    OutboxJob.identity_key.in_(keys),
                    OutboxJob.state.in_([JobState.PENDING, JobState.RUNNING]),
                )
            )
        )
    repairs = 0
    for listing_id, belief in by_id.items():
        if STOCK_KEY.format(listing_id=listing_id) in busy:
            continue
        actual = shows[belief.ref]
        if actual == belief.quantity:
            continue
        changed = session.scalar(
            update(Listing)
            .where(Listing.id == listing_id, Listing.last_pushed_seq == belief.pushed_seq)
            .values(
                last_pushed_quantity=actual if actual >= 0 else None,
                verify_belief=False,
                is_dirty=True,
            )
            .returning(Listing.id)
        )
        if changed is not None and belief.quantity is not None:
            repairs += 1
    return repairs


async def reconcile(
    db: Database,
    channel: PollChannel,
    *,
    overlap: timedelta,
    initial_since: datetime,
    metrics: Metrics | None = None,
    on_change: Callable[[], None] = lambda: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> ReconcileResult:
    """Re-read orders (checkpoint minus `overlap`) and listings; repair and bind; count it all.

    `on_change` is called after a commit that left listings dirty (wake the stock pusher).
    """
    ref = channel.ref
    result = ReconcileResult()
    position, _ = await asyncio.to_thread(read_only, db, lambda s: read_checkpoint(s, ref.id))
    since = (position or initial_since) - overlap
    cursor: str | None = None
    while not should_stop():
        page = await fetch_page(channel, since, cursor, metrics)
        ingest = await asyncio.to_thread(
            db.transact, lambda s, p=page: commit_page(s, ref, p.orders, None)
        )
        result.pages += 1
        result.orders += len(page.orders)
        if position is not None:
            # Only what the checkpoint says was read is a repair; newer orders are the poll's.
            covered = {o.external_id for o in page.orders if o.updated_at <= position}
            result.orders_missing += len(covered.intersection(ingest.created))
            result.orders_stale += len(covered.intersection(ingest.updated))
        note_ingest(ingest, channel.name, metrics)
        if ingest.dirty_channels:
            on_change()
        if page.next_cursor is None:
            break
        if page.next_cursor == cursor:
            raise PermanentError("the channel answered the same cursor again", channel=ref.name)
        cursor = page.next_cursor
    if should_stop():
        return result

    beliefs = await asyncio.to_thread(read_only, db, lambda s: bound_listings(s, ref.id))
    listed = await call_channel(
        channel, "list_listings", metrics, channel.connector.list_listings()
    )

    def bind(session: Session) -> list[tuple[str, str]]:
        record_listings_checked(session, ref.id, listed, utcnow())
        return bind_listings(session, ref.id, listed)

    bound = await asyncio.to_thread(db.transact, bind)
    result.listings_bound = len(bound)
    for sku, listing_ref in bound:
        log.info("channel %s: bound listing %s to SKU %s", ref.name, listing_ref, sku)
    shows = {c.listing_ref: c.quantity for c in listed if c.quantity is not None}
    unread = [b.ref for b in beliefs if b.ref not in shows]
    for start in range(0, len(unread), READ_STOCK_CHUNK):
        chunk = unread[start : start + READ_STOCK_CHUNK]
        shows.update(
            await call_channel(channel, "read_stock", metrics, channel.connector.read_stock(chunk))
        )
    known = {b.ref for b in beliefs}
    result.listings_checked = len(known.intersection(shows))
    result.stock_drift = await asyncio.to_thread(
        db.transact, lambda s: repair_drift(s, beliefs, shows)
    )
    if bound or result.stock_drift:
        on_change()
    if metrics is not None:
        for kind, count in (
            ("order_missing", result.orders_missing),
            ("order_stale", result.orders_stale),
            ("stock_drift", result.stock_drift),
        ):
            if count:
                metrics.reconcile_repairs.labels(ref.name, kind).inc(count)
        if result.listings_bound:
            metrics.listings_bound.labels(ref.name).inc(result.listings_bound)
    if result.orders_missing or result.orders_stale or result.stock_drift:
        log.warning(
            "channel %s: reconcile repaired %d missing and %d stale orders, %d listing quantities",
            ref.name,
            result.orders_missing,
            result.orders_stale,
            result.stock_drift,
        )
    return result
