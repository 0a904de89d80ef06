"""Reconcile: re-read a channel and repair what drifted from the store, counting every repair.

Orders again from the poll checkpoint minus an overlap (a channel's late writes, a webhook we
lost); the listings the channel has, binding those whose SKU we know; and the quantities of bound
listings against what we believe the channel shows (`listings.last_pushed_quantity`). A wrong
belief is replaced by what the channel showed and the listing marked dirty, so the stock pusher
sends the ledger's figure if the two differ: the repair goes through the one push path.

Listings are read a page at a time and each page is compared and repaired in its own short
transaction (sync/reconcile_listings.py), so a 100,000-listing channel neither sits in memory
nor holds the store's write lock for longer than a page.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from connectors.errors import PermanentError
from sync.db import Database
from sync.listing_coverage import read_lacking, record_listings_checked
from sync.metrics import Metrics
from sync.models import utcnow
from sync.polling import (
    PollChannel,
    call_channel,
    commit_page,
    fetch_page,
    is_bulk,
    note_ingest,
    read_checkpoint,
    read_only,
)
from sync.reconcile_listings import (
    READ_STOCK_CHUNK,
    BoundSnapshot,
    ListingTally,
    apply_page,
    bind_listings,
    repair_drift,
    unread_beliefs,
)

__all__ = ["ReconcileResult", "bind_listings", "reconcile"]

log = logging.getLogger(__name__)


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
    position, poll_cursor = await asyncio.to_thread(
        read_only, db, lambda s: read_checkpoint(s, ref.id)
    )
    since = (position or initial_since) - overlap
    # A poll reading the bulk list reads every order it lists after its position: reading them
    # here too doubled each read of the slowest call (Amazon's getOrder, 0.5/s).
    read_until = position if is_bulk(poll_cursor) else None
    cursor: str | None = None
    bulk = True  # until the channel refuses its bulk list: then its pages, cursor and all
    while not should_stop():
        page = await fetch_page(
            channel, since, cursor, metrics, db, bulk=bulk, read_until=read_until
        )
        bulk = page.is_bulk
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
    tally = await _reconcile_listings(db, channel, metrics, on_change, should_stop)
    if tally is None:
        return result
    result.listings_bound = tally.bound
    result.listings_checked = tally.checked
    result.stock_drift = tally.drift
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


async def _reconcile_listings(
    db: Database,
    channel: PollChannel,
    metrics: Metrics | None,
    on_change: Callable[[], None],
    should_stop: Callable[[], bool],
) -> ListingTally | None:
    """The listing pass: each page of the channel's listings bound and repaired in a
    transaction of its own, then the bound listings no page showed read by `read_stock`.
    None when stopped between pages (what was committed stays)."""
    ref = channel.ref
    snapshot = await asyncio.to_thread(read_only, db, lambda s: BoundSnapshot.read(s, ref.id))
    tally = ListingTally()
    pages = channel.connector.listing_pages()
    try:
        while True:
            if should_stop():
                return None
            try:
                page = await call_channel(channel, "list_listings", metrics, anext(pages))
            except StopAsyncIteration:
                break
            outcome = await asyncio.to_thread(
                db.transact, lambda s, p=page: apply_page(s, ref.id, p, snapshot)
            )
            outcome.add_to(tally)
            for sku, listing_ref in outcome.bound:
                log.info("channel %s: bound listing %s to SKU %s", ref.name, listing_ref, sku)
            if outcome.bound or outcome.drift:
                on_change()
    finally:
        if isinstance(pages, AsyncGenerator):  # stopped early: let the connector clean up
            await pages.aclose()
    unread = snapshot.unseen_ids()
    for start in range(0, len(unread), READ_STOCK_CHUNK):
        if should_stop():
            return None
        ids = unread[start : start + READ_STOCK_CHUNK]
        beliefs = await asyncio.to_thread(
            read_only, db, lambda s, i=ids: unread_beliefs(s, i, snapshot)
        )
        shows = await call_channel(
            channel, "read_stock", metrics, channel.connector.read_stock([b.ref for b in beliefs])
        )
        tally.checked += sum(1 for b in beliefs if b.ref in shows)
        drift = await asyncio.to_thread(
            db.transact, lambda s, b=beliefs, q=shows: repair_drift(s, b, q)
        )
        tally.drift += drift
        if drift:
            on_change()
    # Our SKUs the channel lacks: an anti-join over the catalogue, read on a snapshot so the
    # write lock is held only to add the event.
    lacking = await asyncio.to_thread(read_only, db, lambda s: read_lacking(s, ref.id))
    now = utcnow()
    await asyncio.to_thread(
        db.transact,
        lambda s: record_listings_checked(
            s,
            ref.id,
            listings=tally.listings,
            without_sku=tally.without_sku,
            unknown=tally.unknown_skus,
            lacking=lacking,
            now=now,
        ),
    )
    return tally
