"""Orders in by polling: each page committed with the checkpoint that moves past it.

Poll: the checkpoint (stream `orders` in `poll_checkpoints`) is the next request to make:
`fetch_orders(position_at, cursor)`. Each page is ingested and the checkpoint moved past it in
one transaction, so a process killed between a page's fetch and its commit reads that page
again, and nothing committed is read for nothing. At the last page the position becomes the
newest `updated_at` seen; the next poll asks from there with `>=`, so the boundary repeats and
ingest absorbs it (at-least-once, as the Singer bookmarks do).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from connectors.base import (
    Connector,
    ListsOrderVersionsInBulk,
    Order,
    OrderVersion,
    OrderVersionPage,
    ReadsListedOrders,
    ReadsOrderVersions,
)
from connectors.errors import (
    BulkListRefusedError,
    ConnectorError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    SkipRecordError,
)
from sync.db import Database
from sync.ingest import ChannelRef, IngestResult, ingest_orders
from sync.metrics import Metrics
from sync.models import Channel, ChannelState, PollCheckpoint, utcnow
from sync.models import Order as OrderRow

log = logging.getLogger(__name__)

T = TypeVar("T")
ORDERS_STREAM = "orders"
_IN_CHUNK = 1000
_ERROR_MAX = 500


@dataclass(frozen=True)
class PollChannel:
    """A channel as the poller needs it: how ingest sees it, and its connector."""

    ref: ChannelRef
    connector: Connector

    @property
    def name(self) -> str:
        """The channel's name."""
        return self.ref.name


@dataclass
class PollResult:
    """What one poll read and changed."""

    pages: int = 0
    orders: int = 0
    created: int = 0
    updated: int = 0
    newly_oversold: int = 0
    position_at: datetime | None = None
    is_complete: bool = False  # read to the last page (not stopped between pages)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["position_at"] = self.position_at.isoformat() if self.position_at else None
        return data


# Store side: each function runs in the caller's transaction.


def read_checkpoint(
    session: Session, channel_id: int, stream: str = ORDERS_STREAM
) -> tuple[datetime | None, str | None]:
    """(position_at, cursor) of a channel's stream; (None, None) before its first commit."""
    row = session.execute(
        select(PollCheckpoint.position_at, PollCheckpoint.cursor).where(
            PollCheckpoint.channel_id == channel_id, PollCheckpoint.stream == stream
        )
    ).one_or_none()
    return (row.position_at, row.cursor) if row is not None else (None, None)


def advance_checkpoint(
    session: Session,
    channel_id: int,
    position_at: datetime,
    cursor: str | None,
    stream: str = ORDERS_STREAM,
) -> bool:
    """Set the next request to make; never moves the position back (answers whether it moved)."""
    created = session.scalar(
        insert_for(session)(PollCheckpoint)
        .values(
            channel_id=channel_id,
            stream=stream,
            position_at=position_at,
            cursor=cursor,
            updated_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[PollCheckpoint.channel_id, PollCheckpoint.stream])
        .returning(PollCheckpoint.stream)
    )
    if created is not None:
        return True
    row = session.scalars(
        select(PollCheckpoint)
        .where(PollCheckpoint.channel_id == channel_id, PollCheckpoint.stream == stream)
        .with_for_update()
    ).one()
    if row.position_at is not None and position_at < row.position_at:
        return False  # another run (a manual sync elsewhere) already read further
    row.position_at = position_at
    row.cursor = cursor
    row.updated_at = utcnow()
    session.flush()
    return True


def commit_page(
    session: Session,
    channel: ChannelRef,
    orders: Sequence[Order],
    next_position: tuple[datetime, str | None] | None,
) -> IngestResult:
    """Ingest one page and, in the same transaction, move the checkpoint past it."""
    result = ingest_orders(session, channel, orders)
    if next_position is not None:
        advance_checkpoint(session, channel.id, *next_position)
    return result


def record_poll_ok(session: Session, channel_id: int, at: datetime) -> None:
    """A poll read to the end: its time is the channel's last successful poll."""
    session.execute(update(Channel).where(Channel.id == channel_id).values(last_poll_at=at))
    session.execute(
        update(Channel)
        .where(Channel.id == channel_id, Channel.state == ChannelState.DEGRADED)
        .values(state=ChannelState.OK)
    )


def record_job_failure(session: Session, channel_id: int, error: str) -> None:
    """A poll or reconcile failed: the channel is degraded (unless worse), with the reason."""
    session.execute(
        update(Channel).where(Channel.id == channel_id).values(last_error=error[:_ERROR_MAX])
    )
    session.execute(
        update(Channel)
        .where(Channel.id == channel_id, Channel.state == ChannelState.OK)
        .values(state=ChannelState.DEGRADED)
    )


# Channel side: the calls, with the store transactions between them.


async def poll_orders(
    db: Database,
    channel: PollChannel,
    *,
    initial_since: datetime,
    metrics: Metrics | None = None,
    on_change: Callable[[], None] = lambda: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> PollResult:
    """Read every order updated since the checkpoint, page by page, each page committed with it.

    Stops between pages when `should_stop()` says so (the checkpoint already says where to
    resume). Raises the connector's error; pages committed before it stay committed.
    `on_change` is called after a commit that left listings dirty (wake the stock pusher).

    A channel whose last complete poll is older than its connector's `bulk_after` is read from
    its bulk list (`ListsOrderVersionsInBulk`) instead, from the same position: a pass of
    Amazon's searchOrders over a busy window takes longer than the orders take to arrive, and
    never ends. Such a pass keeps `bulk:` on its cursor, so a restart goes on with it.
    """
    ref = channel.ref
    since, cursor, last_ok = await asyncio.to_thread(
        read_only, db, lambda s: (*read_checkpoint(s, ref.id), _last_poll_at(s, ref.id))
    )
    since = since or initial_since
    bulk = is_bulk(cursor) or _is_behind(channel.connector, last_ok)
    if bulk and not is_bulk(cursor):
        log.info(
            "channel %s: no poll finished since %s; the window goes from the channel's bulk list",
            ref.name,
            last_ok.isoformat(),
        )
        cursor = None
    elif cursor is not None and is_bulk(cursor):
        cursor = cursor.removeprefix(BULK_CURSOR)
    result = PollResult(position_at=since)
    newest = since
    while not should_stop():
        try:
            page = await fetch_page(channel, since, cursor, metrics, db, bulk=bulk)
        except PermanentError:
            if cursor is None:
                raise
            # A cursor the channel no longer takes (expired): read again from the position.
            log.warning("channel %s refused the saved cursor; reading from its position", ref.name)
            cursor = None
            await asyncio.to_thread(
                db.transact, lambda s: advance_checkpoint(s, ref.id, since, None)
            )
            continue
        if page.next_cursor is not None and page.next_cursor == cursor:
            raise PermanentError("the channel answered the same cursor again", channel=ref.name)
        newest = max([newest, *page.seen])
        bulk = page.is_bulk  # a refused bulk list went on with pages
        saved = f"{BULK_CURSOR}{page.next_cursor}" if bulk else page.next_cursor
        position = (since, saved) if page.next_cursor else (newest, None)
        ingest = await asyncio.to_thread(
            db.transact, lambda s, p=page, n=position: commit_page(s, ref, p.orders, n)
        )
        result.pages += 1
        result.orders += len(page.orders)
        result.created += len(ingest.created)
        result.updated += len(ingest.updated)
        result.newly_oversold += len(ingest.newly_oversold)
        note_ingest(ingest, channel.name, metrics)
        if ingest.dirty_channels:
            on_change()
        result.position_at = position[0]
        if page.next_cursor is None:
            result.is_complete = True
            break
        cursor = page.next_cursor
    return result


BULK_CURSOR = "bulk:"
"""Prefix of a saved cursor of a pass that reads the connector's bulk list."""


def is_bulk(cursor: str | None) -> bool:
    """Whether a saved cursor is that of a poll pass reading the bulk list."""
    return cursor is not None and cursor.startswith(BULK_CURSOR)


def _is_behind(connector: Connector, last_ok: datetime) -> bool:
    """Whether the connector's bulk list should read this poll's window: no poll finished since
    `last_ok`, longer ago than the connector says its pages can catch up from."""
    if not isinstance(connector, ListsOrderVersionsInBulk):
        return False
    after = connector.bulk_after
    return after is not None and utcnow() - last_ok > after


def _last_poll_at(session: Session, channel_id: int) -> datetime:
    """When the channel's last poll finished; when it was added, before its first."""
    last, created = session.execute(
        select(Channel.last_poll_at, Channel.created_at).where(Channel.id == channel_id)
    ).one()
    return last or created


@dataclass(frozen=True)
class _Page:
    """A poll page: the orders to ingest, and the change times of every order it listed."""

    orders: Sequence[Order]
    next_cursor: str | None
    seen: Sequence[datetime]
    is_bulk: bool = False  # from the bulk list: its cursor is the bulk list's


async def fetch_page(
    channel: PollChannel,
    since: datetime,
    cursor: str | None,
    metrics: Metrics | None,
    db: Database | None = None,
    *,
    bulk: bool = False,
    read_until: datetime | None = None,
) -> _Page:
    """One page of the channel's orders, counted. A connector that lists versions first
    (`ReadsOrderVersions`, or for a reconcile, `bulk`, `ListsOrderVersionsInBulk`) has only the
    orders read that the store lacks at that version: a poll whose window went back far (after
    an outage, or kills mid-pass) re-read every order in it, one query each on Shopify, for
    hours; a reconcile on Amazon read its window at 100 orders every 3 minutes. `read_until`:
    orders of the bulk list changed later are left to a poll that is reading them."""
    connector = channel.connector
    if db is not None and bulk and isinstance(connector, ListsOrderVersionsInBulk):
        try:
            listed = await call_channel(
                channel,
                "bulk_order_versions",
                metrics,
                connector.bulk_order_versions(since, cursor),
            )
        except BulkListRefusedError as err:
            if cursor is not None:
                raise
            log.warning("channel %s: %s; reading page by page", channel.name, err.reason)
        else:
            page = await _read_lacking(channel, listed, metrics, db, read_until)
            return replace(page, is_bulk=True)
    if db is not None and isinstance(connector, ReadsOrderVersions):
        listed = await call_channel(
            channel, "fetch_order_versions", metrics, connector.fetch_order_versions(since, cursor)
        )
        return await _read_lacking(channel, listed, metrics, db)
    full = await call_channel(
        channel, "fetch_orders", metrics, connector.fetch_orders(since, cursor)
    )
    return _Page(full.orders, full.next_cursor, [order.updated_at for order in full.orders])


async def _read_lacking(
    channel: PollChannel,
    listed: OrderVersionPage,
    metrics: Metrics | None,
    db: Database,
    read_until: datetime | None = None,
) -> _Page:
    """The page of orders the listing names that the store lacks at the version listed (and,
    with `read_until`, changed no later than that)."""
    stored = await asyncio.to_thread(
        read_only, db, lambda s: _stored_versions(s, channel.ref.id, listed.versions)
    )
    wanted = [
        version
        for version in listed.versions
        if (version.external_id not in stored or stored[version.external_id] < version.updated_at)
        and (read_until is None or version.updated_at <= read_until)
    ]
    orders = await _read_orders(channel, wanted, metrics)
    return _Page(orders, listed.next_cursor, [v.updated_at for v in listed.versions])


_READS_AT_ONCE = 4  # order reads of one poll page in flight; the channel's limiter paces them


async def _read_orders(
    channel: PollChannel, versions: Sequence[OrderVersion], metrics: Metrics | None
) -> list[Order]:
    """The orders listed, each read in full; one gone meanwhile is left out, and one the
    connector cannot read is left out with a warning naming it and what is wrong."""
    slots = asyncio.Semaphore(_READS_AT_ONCE)
    connector = channel.connector

    def read(version: OrderVersion) -> Awaitable[Order]:
        if isinstance(connector, ReadsListedOrders):
            return connector.fetch_listed_order(version)
        return connector.fetch_order(version.external_id)

    async def one(version: OrderVersion) -> Order | None:
        external_id = version.external_id
        async with slots:
            try:
                return await call_channel(channel, "fetch_order", metrics, read(version))
            except NotFoundError:
                return None
            except SkipRecordError as err:
                log.warning(
                    "channel %s: order %s left out: %s", channel.name, external_id[:80], err
                )
                return None

    found = await asyncio.gather(*(one(version) for version in versions))
    return [order for order in found if order is not None]


def _stored_versions(
    session: Session, channel_id: int, versions: Sequence[OrderVersion]
) -> dict[str, datetime]:
    """external id -> the channel's change time of the version stored, for the listed orders
    the store holds."""
    ids = [version.external_id for version in versions]
    if not ids:
        return {}
    rows = session.execute(
        select(OrderRow.external_id, OrderRow.channel_updated_at).where(
            OrderRow.channel_id == channel_id, OrderRow.external_id.in_(ids)
        )
    )
    return {external_id: updated_at for external_id, updated_at in rows}


async def call_channel(
    channel: PollChannel, operation: str, metrics: Metrics | None, call: Awaitable[T]
) -> T:
    """Await one connector call, counting it and any throttle in the channel's metrics."""
    if metrics is not None:
        metrics.api_calls.labels(channel.name, operation).inc()
    try:
        return await call
    except ConnectorError as exc:
        if metrics is not None and isinstance(exc, RateLimitedError):
            metrics.throttles.labels(channel.name).inc()
        raise


def note_ingest(ingest: IngestResult, channel: str, metrics: Metrics | None) -> None:
    """Count what an ingest changed in the channel's metrics."""
    if metrics is not None:
        changed = len(ingest.created) + len(ingest.updated)
        if changed:
            metrics.orders_ingested.labels(channel).inc(changed)
        if ingest.newly_oversold:
            metrics.oversells.labels(channel).inc(len(ingest.newly_oversold))


def read_only(db: Database, fn: Callable[[Session], T]) -> T:
    """Run `fn` in a read-only snapshot (for asyncio.to_thread)."""
    with db.read_session() as session:
        return fn(session)


def insert_for(session: Session) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (both dialects spell it alike)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    """Slices short enough for an IN list on either database."""
    return [items[i : i + _IN_CHUNK] for i in range(0, len(items), _IN_CHUNK)]
