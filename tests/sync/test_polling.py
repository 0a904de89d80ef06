"""Polling and reconcile on a real store against the reference connector.

The checkpoint moves with each page's commit and never past a page that was not committed (a
poller SIGKILLed between a page's fetch and its commit reads that page again); reconcile finds
what polling cannot (late writes before the checkpoint, listings never bound, quantities changed
on the channel behind our back), repairs it and counts every repair.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from connectors.base import Capabilities, OrderPage, OrderStatus, OrderVersion, OrderVersionPage
from connectors.base import Order as ChannelOrder
from connectors.errors import BulkListRefusedError, RetryableError, SkipRecordError
from connectors.memory import MemoryConnector, MemoryMarketplace
from sync.db import Database
from sync.ingest import ChannelRef
from sync.metrics import Metrics
from sync.models import (
    Channel,
    JobKind,
    Listing,
    Order,
    PollCheckpoint,
    Sku,
    StockLevel,
    utcnow,
)
from sync.outbox import enqueue
from sync.polling import PollChannel, advance_checkpoint, poll_orders, read_checkpoint
from sync.reconcile import reconcile
from sync.stock_push import STOCK_KEY
from tests.sync import poll_worker
from tests.sync.engine_harness import (
    ChannelSpec,
    StoreSpec,
    build_store,
    push_until_idle,
    start_in_sync,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SINCE = poll_worker.SINCE
OVERLAP = timedelta(days=1)


def _shop(database: Database, skus: tuple[str, ...] = ("A", "B")) -> int:
    with database.session() as session:
        channel = Channel(name="shop", kind="memory")
        session.add(channel)
        session.add_all(Sku(sku=sku) for sku in skus)
        session.add_all(StockLevel(sku=sku, location="default", on_hand=100) for sku in skus)
        session.flush()
        return channel.id


def _stored(database: Database) -> dict[str, tuple[datetime, OrderStatus]]:
    with database.read_session() as session:
        return {
            ext: (at, status)
            for ext, at, status in session.execute(
                select(Order.external_id, Order.channel_updated_at, Order.status)
            )
        }


def _checkpoint(database: Database, channel_id: int) -> tuple[datetime | None, str | None]:
    with database.read_session() as session:
        return read_checkpoint(session, channel_id)


class _Recording(MemoryConnector):
    """The reference connector, noting every fetch it was asked for."""

    def __init__(self, market: MemoryMarketplace, *, fail_at: int | None = None) -> None:
        super().__init__(
            market, name="shop", capabilities=Capabilities(), page_size=poll_worker.PAGE_SIZE
        )
        self.asked: list[tuple[datetime, str | None]] = []
        self.fail_at = fail_at

    async def fetch_orders(self, updated_since: datetime, cursor: str | None) -> OrderPage:
        self.asked.append((updated_since, cursor))
        if len(self.asked) == self.fail_at:
            raise RetryableError("connection reset", channel="shop", operation="fetch_orders")
        return await super().fetch_orders(updated_since, cursor)


def test_a_poll_commits_page_by_page_and_resumes_at_the_newest_order(database: Database) -> None:
    channel_id = _shop(database)
    market = poll_worker.seeded_marketplace()
    connector = _Recording(market)
    channel = PollChannel(ChannelRef(channel_id, "shop"), connector)
    metrics = Metrics("test")

    first = asyncio.run(poll_orders(database, channel, initial_since=SINCE, metrics=metrics))
    newest = max(order.updated_at for order in market.orders.values())
    assert (first.pages, first.orders, first.created) == (4, 7, 7)
    assert _checkpoint(database, channel_id) == (newest, None)
    assert set(_stored(database)) == set(market.orders)
    assert metrics.orders_ingested.labels("shop")._value.get() == 7

    # The next poll asks from the newest order, inclusive: it sees it again and changes nothing.
    market.cancel("O-3")
    second = asyncio.run(poll_orders(database, channel, initial_since=SINCE))
    assert connector.asked[4] == (newest, None)
    assert (second.created, second.updated) == (0, 1)
    assert _stored(database)["O-3"][1] is OrderStatus.CANCELLED


def test_a_failed_page_keeps_the_pages_before_it_and_the_next_poll_goes_on_from_there(
    database: Database,
) -> None:
    channel_id = _shop(database)
    market = poll_worker.seeded_marketplace()
    failing = _Recording(market, fail_at=3)
    channel = PollChannel(ChannelRef(channel_id, "shop"), failing)
    try:
        asyncio.run(poll_orders(database, channel, initial_since=SINCE))
    except RetryableError:
        pass
    else:
        raise AssertionError("the third page should have failed")
    assert len(_stored(database)) == 4  # pages 1 and 2
    assert _checkpoint(database, channel_id) == failing.asked[2]  # the page that failed

    again = _Recording(market)
    asyncio.run(poll_orders(database, replace(channel, connector=again), initial_since=SINCE))
    assert again.asked[0] == failing.asked[2]
    assert set(_stored(database)) == set(market.orders)


def test_a_cursor_the_channel_no_longer_takes_reads_again_from_the_position(
    database: Database,
) -> None:
    channel_id = _shop(database)
    database.transact(lambda s: advance_checkpoint(s, channel_id, SINCE, "expired-cursor"))
    market = poll_worker.seeded_marketplace()
    connector = _Recording(market)
    channel = PollChannel(ChannelRef(channel_id, "shop"), connector)
    result = asyncio.run(poll_orders(database, channel, initial_since=SINCE))
    assert connector.asked[:2] == [(SINCE, "expired-cursor"), (SINCE, None)]
    assert result.created == 7


def test_a_poller_killed_between_fetch_and_commit_reads_that_page_again(
    database: Database, tmp_path: Path
) -> None:
    channel_id = _shop(database)
    with (tmp_path / "worker.stderr").open("wb") as stderr:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.sync.poll_worker", database.url, str(channel_id), "3"],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        assert worker.stdout is not None
        line = worker.stdout.readline()  # the worker prints it once page 3 is fetched
        assert line.startswith("FETCHED "), (tmp_path / "worker.stderr").read_text()
        worker.kill()
    finally:
        worker.kill()
        worker.wait(timeout=30)
        assert worker.stdout is not None
        worker.stdout.close()
    _, since, cursor = line.split()
    fetched = (datetime.fromisoformat(since), None if cursor == "-" else cursor)

    # Pages 1 and 2 were committed, page 3 was not: the checkpoint is the request for page 3.
    assert len(_stored(database)) == 4
    assert _checkpoint(database, channel_id) == fetched

    # The restarted poller's first request is that page again; every order ends stored once.
    market = poll_worker.seeded_marketplace()
    restarted = _Recording(market)
    channel = PollChannel(ChannelRef(channel_id, "shop"), restarted)
    asyncio.run(poll_orders(database, channel, initial_since=SINCE))
    assert restarted.asked[0] == fetched
    assert set(_stored(database)) == set(market.orders)
    with database.read_session() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == poll_worker.ORDERS


def test_reconcile_finds_late_writes_behind_the_checkpoint_and_counts_them(
    database: Database,
) -> None:
    channel_id = _shop(database)
    market = poll_worker.seeded_marketplace()
    channel = PollChannel(ChannelRef(channel_id, "shop"), _Recording(market))
    asyncio.run(poll_orders(database, channel, initial_since=SINCE))
    # The channel shows, late, a change and an order dated before what was polled: a write
    # that became visible after its time, or a webhook that never came.
    first, second = market.orders["O-1"], market.orders["O-2"]
    market.orders["O-1"] = replace(
        first, status=OrderStatus.CANCELLED, updated_at=first.updated_at + timedelta(microseconds=1)
    )
    late = replace(
        second, external_id="O-LATE", updated_at=second.updated_at + timedelta(microseconds=1)
    )
    market.orders["O-LATE"] = late
    polled = asyncio.run(poll_orders(database, channel, initial_since=SINCE))
    assert (polled.created, polled.updated) == (0, 0)  # polling cannot see behind its checkpoint

    metrics = Metrics("test")
    result = asyncio.run(
        reconcile(database, channel, overlap=OVERLAP, initial_since=SINCE, metrics=metrics)
    )
    assert (result.orders_missing, result.orders_stale) == (1, 1)
    stored = _stored(database)
    assert stored["O-1"][1] is OrderStatus.CANCELLED and "O-LATE" in stored
    repairs = metrics.reconcile_repairs
    assert repairs.labels("shop", "order_missing")._value.get() == 1
    assert repairs.labels("shop", "order_stale")._value.get() == 1
    again = asyncio.run(reconcile(database, channel, overlap=OVERLAP, initial_since=SINCE))
    assert (again.orders_missing, again.orders_stale) == (0, 0)


def test_reconcile_binds_channel_listings_whose_sku_we_know(database: Database) -> None:
    channel_id = _shop(database, ("A", "B"))
    with database.session() as session:
        session.add(
            Listing(
                channel_id=channel_id,
                sku="A",
                external_ref="A",
                is_dirty=False,
                last_pushed_quantity=5,
            )
        )
    market = MemoryMarketplace()
    for ref, quantity in {"A": 5, "B": 2, "NOT-OURS": 1}.items():
        market.set_stock(ref, quantity)
    channel = PollChannel(ChannelRef(channel_id, "shop"), _Recording(market))
    metrics = Metrics("test")

    result = asyncio.run(
        reconcile(database, channel, overlap=OVERLAP, initial_since=SINCE, metrics=metrics)
    )
    assert (result.listings_bound, result.listings_checked, result.stock_drift) == (1, 1, 0)
    with database.read_session() as session:
        bound = {
            listing.external_ref: (listing.sku, listing.last_pushed_quantity, listing.is_dirty)
            for listing in session.scalars(select(Listing))
        }
    # B is bound, believed to show what the channel showed, and dirty so the ledger's figure goes
    # out; A stays as it was; a listing whose SKU is none of ours is left unbound.
    assert bound == {"A": ("A", 5, False), "B": ("B", 2, True)}
    assert metrics.listings_bound.labels("shop")._value.get() == 1
    again = asyncio.run(reconcile(database, channel, overlap=OVERLAP, initial_since=SINCE))
    assert again.listings_bound == 0


def test_reconcile_repairs_a_quantity_changed_on_the_channel_and_the_pusher_sets_it_right(
    database: Database,
) -> None:
    store = build_store(
        database,
        StoreSpec(
            channels=[ChannelSpec("shop")],
            skus=["A", "B"],
            on_hand={("A", "default"): 10, ("B", "default"): 4},
        ),
    )
    start_in_sync(store)
    shop = store.channels["shop"]
    # Someone edits both figures in the channel's own admin; B already has a push queued.
    shop.market.set_stock("A", 7)
    shop.market.set_stock("B", 1)
    with database.session() as session:
        b = session.scalars(select(Listing).where(Listing.sku == "B")).one()
        enqueue(
            session,
            channel_id=shop.id,
            kind=JobKind.STOCK,
            identity_key=STOCK_KEY.format(listing_id=b.id),
            payload={"listing_id": b.id, "listing_ref": "B", "quantity": 4, "seq": 1, "extra": {}},
        )
        b.target_seq = 1
    metrics = Metrics("test")
    channel = PollChannel(shop.ref, shop.connector)
    result = asyncio.run(
        reconcile(database, channel, overlap=OVERLAP, initial_since=SINCE, metrics=metrics)
    )
    assert (result.listings_checked, result.stock_drift) == (2, 1)  # B's push is on its way
    assert metrics.reconcile_repairs.labels("shop", "stock_drift")._value.get() == 1
    with database.read_session() as session:
        a = session.scalars(select(Listing).where(Listing.sku == "A")).one()
        assert (a.last_pushed_quantity, a.is_dirty) == (7, True)

    started = time.monotonic()
    asyncio.run(push_until_idle(store))
    assert shop.market.snapshot() == {"A": 10, "B": 4}
    assert time.monotonic() - started < 30


class _Versioned(_Recording):
    """Lists versions first (as Shopify's ids page), counting the orders read in full."""

    def __init__(self, market: MemoryMarketplace) -> None:
        super().__init__(market)
        self.read: list[str] = []

    async def fetch_order_versions(
        self, updated_since: datetime, cursor: str | None
    ) -> OrderVersionPage:
        page = await MemoryConnector.fetch_orders(self, updated_since, cursor)
        versions = [OrderVersion(o.external_id, o.updated_at) for o in page.orders]
        return OrderVersionPage(versions, page.next_cursor)

    async def fetch_order(self, external_id: str) -> ChannelOrder:
        self.read.append(external_id)
        return await super().fetch_order(external_id)


def test_a_poll_reads_in_full_only_the_orders_the_store_lacks_at_their_version(
    database: Database,
) -> None:
    """A window gone back (an outage, a pass cut by kills) costs a page of versions per page,
    not a read of every order in it; the checkpoint still moves to the newest change listed."""
    channel_id = _shop(database)
    market = poll_worker.seeded_marketplace()
    connector = _Versioned(market)
    channel = PollChannel(ChannelRef(channel_id, "shop"), connector)
    newest = max(order.updated_at for order in market.orders.values())

    first = asyncio.run(poll_orders(database, channel, initial_since=SINCE))
    assert (first.created, sorted(connector.read)) == (7, sorted(market.orders))
    assert _checkpoint(database, channel_id) == (newest, None)

    def window_back() -> None:  # the checkpoint only moves forward: set it back by hand
        with database.session() as session:
            session.execute(
                update(PollCheckpoint)
                .where(PollCheckpoint.channel_id == channel_id)
                .values(position_at=SINCE, cursor=None)
            )

    window_back()
    connector.read.clear()
    again = asyncio.run(poll_orders(database, channel, initial_since=SINCE))
    assert (again.pages, connector.read) == (4, [])  # every version already stored
    assert _checkpoint(database, channel_id) == (newest, None)

    market.cancel("O-3")
    window_back()
    third = asyncio.run(poll_orders(database, channel, initial_since=SINCE))
    assert (connector.read, third.updated) == (["O-3"], 1)
    assert _stored(database)["O-3"][1] is OrderStatus.CANCELLED


def test_an_order_the_connector_cannot_read_is_left_out_with_a_warning_naming_it(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    channel_id = _shop(database)
    market = poll_worker.seeded_marketplace()

    class _Malformed(_Versioned):
        async def fetch_order(self, external_id: str) -> ChannelOrder:
            if external_id == "O-2":
                raise SkipRecordError("order is malformed: missing field 'lines'", channel="shop")
            return await super().fetch_order(external_id)

    channel = PollChannel(ChannelRef(channel_id, "shop"), _Malformed(market))
    with caplog.at_level(logging.WARNING, logger="sync.polling"):
        asyncio.run(poll_orders(database, channel, initial_since=SINCE))
    assert set(_stored(database)) == set(market.orders) - {"O-2"}
    assert "O-2" in caplog.text and "malformed" in caplog.text


def test_a_connector_whose_pages_carry_the_orders_completes_the_listed_one(
    database: Database,
) -> None:
    """eBay's getOrders pages hold each order but its parcels: an order the store lacks is
    read with `fetch_listed_order`, from the version listed, not with a fresh `fetch_order`."""
    channel_id = _shop(database)
    market = poll_worker.seeded_marketplace()

    class _Listed(_Versioned):
        def __init__(self, market: MemoryMarketplace) -> None:
            super().__init__(market)
            self.completed: list[OrderVersion] = []

        async def fetch_listed_order(self, version: OrderVersion) -> ChannelOrder:
            self.completed.append(version)
            return await MemoryConnector.fetch_order(self, version.external_id)

    connector = _Listed(market)
    channel = PollChannel(ChannelRef(channel_id, "shop"), connector)
    asyncio.run(poll_orders(database, channel, initial_since=SINCE))
    assert connector.read == []
    assert {v.external_id: v.updated_at for v in connector.completed} == {
        o.external_id: o.updated_at for o in market.orders.values()
    }
    assert set(_stored(database)) == set(market.orders)


class _Reported(_Recording):
    """Lists versions in bulk (as Amazon's order report), one list for the whole window, read
    in pages of two; counts the lists made and the orders read in full."""

    def __init__(self, market: MemoryMarketplace, *, bulk_after: timedelta | None = None) -> None:
        super().__init__(market)
        self.read: list[str] = []
        self.lists = 0
        self.bulk_after = bulk_after
        self.fail_bulk_at: str | None = None
        self.refused = False

    async def bulk_order_versions(
        self, updated_since: datetime, cursor: str | None
    ) -> OrderVersionPage:
        if self.refused:
            raise BulkListRefusedError("createReport refused: HTTP 403", channel="shop")
        if cursor is None:
            self.lists += 1
        if cursor is not None and cursor == self.fail_bulk_at:
            self.fail_bulk_at = None
            raise RetryableError("connection reset", channel="shop", operation="report")
        start = int(cursor or 0)
        listed = sorted(
            (o for o in self.marketplace.orders.values() if o.updated_at >= updated_since),
            key=lambda o: (o.updated_at, o.external_id),
        )
        versions = [OrderVersion(o.external_id, o.updated_at) for o in listed[start : start + 2]]
        more = start + 2 < len(listed)
        return OrderVersionPage(versions, str(start + 2) if more else None)

    async def fetch_order(self, external_id: str) -> ChannelOrder:
        self.read.append(external_id)
        return await super().fetch_order(external_id)


def test_a_reconcile_lists_changes_in_bulk_and_reads_only_what_the_store_lacks(
    database: Database,
) -> None:
    """Amazon's case: polls page through full orders (searchOrders); a reconcile takes the
    window's list of changes from one report and reads in full only the missing and stale."""
    channel_id = _shop(database)
    market = poll_worker.seeded_marketplace()
    connector = _Reported(market)
    channel = PollChannel(ChannelRef(channel_id, "shop"), connector)
    asyncio.run(poll_orders(database, channel, initial_since=SINCE))
    assert (connector.lists, connector.read) == (0, [])  # polls never use the bulk list
    assert set(_stored(database)) == set(market.orders)

    first = market.orders["O-1"]
    market.orders["O-1"] = replace(
        first, status=OrderStatus.CANCELLED, updated_at=first.updated_at + timedelta(microseconds=1)
    )
    late = replace(first, external_id="O-LATE", updated_at=first.updated_at)
    market.orders["O-LATE"] = late
    result = asyncio.run(reconcile(database, channel, overlap=OVERLAP, initial_since=SINCE))
    assert connector.lists == 1
    assert sorted(connector.read) == ["O-1", "O-LATE"]
    assert (result.orders_missing, result.orders_stale) == (1, 1)
    assert _stored(database)["O-1"][1] is OrderStatus.CANCELLED
    assert len(connector.asked) == 4  # the poll's four pages; the reconcile asked for none


def test_a_poll_that_has_not_finished_for_long_reads_its_window_from_the_bulk_list(
    database: Database,
) -> None:
    """Amazon with notifications: a searchOrders pass over a busy window never ends, so a poll
    left unfinished past `bulk_after` starts again from its position with the report, keeps
    to it across a restart, and reads in full only what the notices did not store."""
    channel_id = _shop(database)
    market = poll_worker.seeded_marketplace()
    connector = _Reported(market, bulk_after=timedelta(minutes=10))
    channel = PollChannel(ChannelRef(channel_id, "shop"), connector)
    asyncio.run(poll_orders(database, channel, initial_since=SINCE))
    assert connector.lists == 0  # a new channel's first poll pages
    newest = max(order.updated_at for order in market.orders.values())

    # A pass cut after its first page, its last finished poll 11 minutes ago; meanwhile one
    # order was cancelled and one placed whose notices never came.
    with database.session() as session:
        session.execute(
            update(PollCheckpoint)
            .where(PollCheckpoint.channel_id == channel_id)
            .values(position_at=SINCE, cursor="2")
        )
        session.execute(
            update(Channel)
            .where(Channel.id == channel_id)
            .values(last_poll_at=utcnow() - timedelta(minutes=11))
        )
    market.cancel("O-3")
    late = replace(market.orders["O-1"], external_id="O-LATE", updated_at=newest)
    market.orders["O-LATE"] = late
    connector.asked.clear()
    connector.fail_bulk_at = "4"  # the bulk pass is cut at its third page
    with pytest.raises(RetryableError):
        asyncio.run(poll_orders(database, channel, initial_since=SINCE))
    assert _checkpoint(database, channel_id) == (SINCE, "bulk:4")

    done = asyncio.run(poll_orders(database, channel, initial_since=SINCE))
    assert (connector.asked, connector.lists) == ([], 1)  # no searchOrders page; one report
    assert sorted(connector.read) == ["O-3", "O-LATE"]
    assert done.is_complete and _checkpoint(database, channel_id)[1] is None
    stored = _stored(database)
    assert "O-LATE" in stored and stored["O-3"][1] is OrderStatus.CANCELLED


def test_a_channel_whose_first_poll_never_finished_goes_to_the_bulk_list_too(
    database: Database,
) -> None:
    """A channel polled from its start under a load its pages never catch up with (the chaos
    run's Amazon: every pass cut by a kill) has no finished poll to go by: its age counts."""
    channel_id = _shop(database)
    market = poll_worker.seeded_marketplace()
    connector = _Reported(market, bulk_after=timedelta(minutes=10))
    channel = PollChannel(ChannelRef(channel_id, "shop"), connector)
    with database.session() as session:
        session.execute(
            update(Channel)
            .where(Channel.id == channel_id)
            .values(created_at=utcnow() - timedelta(minutes=11))
        )
    done = asyncio.run(poll_orders(database, channel, initial_since=SINCE))
    assert (connector.lists, connector.asked, done.is_complete) == (1, [], True)
    assert set(_stored(database)) == set(market.orders)


def test_a_refused_bulk_list_leaves_reconciles_and_late_polls_to_pages(database: Database) -> None:
    """An Amazon app without the reports role: the reconcile and a poll that fell behind read
    searchOrders pages as before, and find what was missing."""
    channel_id = _shop(database)
    market = poll_worker.seeded_marketplace()
    connector = _Reported(market, bulk_after=timedelta(minutes=10))
    connector.refused = True
    channel = PollChannel(ChannelRef(channel_id, "shop"), connector)
    asyncio.run(poll_orders(database, channel, initial_since=SINCE))
    first = market.orders["O-1"]
    market.orders["O-1"] = replace(
        first, status=OrderStatus.CANCELLED, updated_at=first.updated_at + timedelta(microseconds=1)
    )
    connector.asked.clear()
    result = asyncio.run(reconcile(database, channel, overlap=OVERLAP, initial_since=SINCE))
    assert (result.orders_stale, len(connector.asked), connector.lists) == (1, 4, 0)

    with database.session() as session:
        session.execute(
            update(Channel)
            .where(Channel.id == channel_id)
            .values(last_poll_at=utcnow() - timedelta(minutes=11))
        )
        session.execute(
            update(PollCheckpoint)
            .where(PollCheckpoint.channel_id == channel_id)
            .values(position_at=SINCE, cursor=None)
        )
    market.orders["O-LATE"] = replace(first, external_id="O-LATE")
    connector.asked.clear()
    connector.fail_at = 2  # cut after the first page: the saved cursor is a page's
    with pytest.raises(RetryableError):
        asyncio.run(poll_orders(database, channel, initial_since=SINCE))
    position, cursor = _checkpoint(database, channel_id)
    assert position == SINCE and cursor is not None and not cursor.startswith("bulk:")
    asyncio.run(poll_orders(database, channel, initial_since=SINCE))
    assert "O-LATE" in _stored(database)


def test_a_reconcile_leaves_to_a_poll_reading_the_bulk_list_what_is_past_its_position(
    database: Database,
) -> None:
    """Amazon's poll and reconcile both reading one window from reports read each lacking order
    twice at 0.5 getOrder a second (the long chaos run's end phase)."""
    channel_id = _shop(database)
    market = poll_worker.seeded_marketplace()
    connector = _Reported(market)
    channel = PollChannel(ChannelRef(channel_id, "shop"), connector)
    asyncio.run(poll_orders(database, channel, initial_since=SINCE))
    position = max(order.updated_at for order in market.orders.values())
    with database.session() as session:
        session.execute(
            update(PollCheckpoint)
            .where(PollCheckpoint.channel_id == channel_id)
            .values(position_at=position, cursor="bulk:2")
        )
    first = market.orders["O-1"]
    market.orders["O-1"] = replace(
        first, status=OrderStatus.CANCELLED, updated_at=first.updated_at + timedelta(microseconds=1)
    )
    ahead = position + timedelta(seconds=1)
    market.orders["O-AHEAD"] = replace(first, external_id="O-AHEAD", updated_at=ahead)
    asyncio.run(reconcile(database, channel, overlap=OVERLAP, initial_since=SINCE))
    assert connector.read == ["O-1"]  # O-AHEAD is the poll's

    with database.session() as session:  # the poll's pass ended: the reconcile reads all
        session.execute(update(PollCheckpoint).values(cursor=None))
    asyncio.run(reconcile(database, channel, overlap=OVERLAP, initial_since=SINCE))
    assert connector.read == ["O-1", "O-AHEAD"]
