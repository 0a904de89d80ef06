"""Reconcile's listing pass on a real store, page by page: each page bound and repaired in its own
commit and then let go, the bound listings no page showed read by `read_stock`, a push recorded
while a page was in hand not mistaken for drift, and the findings kept for the status."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from connectors.base import Capabilities, ChannelListing
from connectors.errors import RetryableError
from connectors.memory import MemoryConnector, MemoryMarketplace
from sync.db import Database
from sync.ingest import ChannelRef
from sync.listing_coverage import EVENT_KIND
from sync.models import Channel, Event, Listing, Sku, StockLevel
from sync.polling import PollChannel
from sync.reconcile import ReconcileResult, reconcile
from tests.sync import poll_worker

OVERLAP = timedelta(days=1)
PAGE = 7


class PagedConnector(MemoryConnector):
    """The reference connector listing `PAGE` listings a page, some refs hidden from its listing
    pages (readable only through read_stock), running `between(n)` before answering page n."""

    def __init__(
        self,
        market: MemoryMarketplace,
        *,
        hidden: frozenset[str] = frozenset(),
        between: Callable[[int], None] = lambda n: None,
        fail_at: int | None = None,
    ) -> None:
        super().__init__(market, name="shop", capabilities=Capabilities())
        self.hidden = hidden
        self.between = between
        self.fail_at = fail_at
        self.handed_out: list[list[weakref.ref[ChannelListing]]] = []
        self.read: list[str] = []

    async def listing_pages(self) -> AsyncIterator[Sequence[ChannelListing]]:
        refs = sorted(ref for ref in self.marketplace.stock if ref not in self.hidden)
        for n, start in enumerate(range(0, len(refs), PAGE)):
            self.between(n)
            if n == self.fail_at:
                raise RetryableError("connection reset", channel="shop", operation="listings")
            page = [
                ChannelListing(ref, ref, self.marketplace.stock[ref])
                for ref in refs[start : start + PAGE]
            ]
            self.handed_out.append([weakref.ref(listing) for listing in page])
            yield page

    async def read_stock(self, listing_refs: Sequence[str]) -> dict[str, int]:
        self.read.extend(listing_refs)
        return dict(await super().read_stock(listing_refs))


def _store(database: Database, skus: Sequence[str], believed: dict[str, int]) -> int:
    with database.session() as session:
        channel = Channel(name="shop", kind="memory")
        session.add(channel)
        session.add_all(Sku(sku=sku) for sku in skus)
        session.add_all(StockLevel(sku=sku, location="default", on_hand=9) for sku in skus)
        session.flush()
        session.add_all(
            Listing(
                channel_id=channel.id,
                sku=sku,
                external_ref=sku,
                is_dirty=False,
                last_pushed_quantity=quantity,
            )
            for sku, quantity in believed.items()
        )
        return channel.id


def _listings(database: Database) -> dict[str, tuple[int | None, bool]]:
    with database.read_session() as session:
        return {
            ref: (quantity, is_dirty)
            for ref, quantity, is_dirty in session.execute(
                select(Listing.external_ref, Listing.last_pushed_quantity, Listing.is_dirty)
            )
        }


def _run(database: Database, channel_id: int, connector: MemoryConnector) -> ReconcileResult:
    channel = PollChannel(ChannelRef(channel_id, "shop"), connector)
    return asyncio.run(
        reconcile(database, channel, overlap=OVERLAP, initial_since=poll_worker.SINCE)
    )


def test_each_page_is_bound_and_repaired_then_let_go(database: Database) -> None:
    skus = [f"S{i:02d}" for i in range(30)]
    believed = {sku: 9 for sku in skus[:20]} | {sku: 9 for sku in skus[26:]}
    channel_id = _store(database, skus, believed)
    market = MemoryMarketplace()
    for sku in skus[:26]:
        market.set_stock(sku, 9)
    market.set_stock("S03", 4)  # drift on the first page
    market.set_stock("S17", 0)  # and on the third
    for ref in ("X1", "X2"):  # the channel's SKUs we do not hold
        market.set_stock(ref, 1)
    market.set_stock("S28", 2)  # bound, hidden from the listing pages: read_stock finds it
    seen_alive: list[int] = []

    def between(n: int) -> None:
        gc.collect()
        seen_alive.append(sum(1 for page in pages.handed_out[: max(0, n - 1)] for r in page if r()))

    pages = PagedConnector(market, hidden=frozenset({"S26", "S27", "S28", "S29"}), between=between)
    result = _run(database, channel_id, pages)

    # Pages of 7 over 28 listed refs (S00-S25, X1, X2): 4 pages, and when each
    # was asked for, every page before the previous one had been let go.
    assert len(pages.handed_out) == 4
    assert seen_alive == [0, 0, 0, 0]
    assert sorted(pages.read) == ["S26", "S27", "S28", "S29"]
    assert result.to_json() | {"pages": 0, "orders": 0} == {
        "pages": 0,
        "orders": 0,
        "orders_missing": 0,
        "orders_stale": 0,
        "listings_bound": 6,  # S20-S25
        "listings_checked": 20 + 1,  # listed and believed, and S28 through read_stock
        "stock_drift": 3,  # S03, S17, S28
    }
    stored = _listings(database)
    assert {ref: stored[ref] for ref in ("S03", "S17", "S28", "S00", "S20")} == {
        "S03": (4, True),
        "S17": (0, True),
        "S28": (2, True),
        "S00": (9, False),
        "S20": (9, True),  # newly bound: believed to show what it showed, planned next
    }
    with database.read_session() as session:
        event = session.scalars(select(Event).where(Event.kind == EVENT_KIND)).one()
    assert event.data == {
        "listings": 28,
        "without_sku": 0,
        "unknown_skus": 2,
        "unknown_sample": ["X1", "X2"],
        "missing_skus": 0,  # all 30 of ours bound, hidden or not
        "missing_sample": [],
    }


def test_a_push_recorded_while_a_page_was_in_hand_is_not_taken_for_drift(
    database: Database,
) -> None:
    skus = [f"S{i:02d}" for i in range(10)]
    channel_id = _store(database, skus, dict.fromkeys(skus, 9))
    market = MemoryMarketplace()
    for sku in skus:
        market.set_stock(sku, 9)

    def push_lands(n: int) -> None:
        if n == 1:  # just before the second page (S07-S09) is read: it will show 9 for S08
            with database.session() as session:
                session.execute(
                    update(Listing)
                    .where(Listing.external_ref == "S08")
                    .values(last_pushed_quantity=5, last_pushed_seq=Listing.last_pushed_seq + 1)
                )

    result = _run(database, channel_id, PagedConnector(market, between=push_lands))
    # The push was recorded after the pass began; the page shows the figure from before it
    # reached the channel. The listing's push sequence no longer matches the one the pass
    # started from, so the page is not believed over the push.
    assert result.stock_drift == 0
    assert _listings(database)["S08"] == (5, False)


def test_a_failed_page_keeps_what_the_pages_before_it_committed(database: Database) -> None:
    skus = [f"S{i:02d}" for i in range(20)]
    channel_id = _store(database, skus, {})
    market = MemoryMarketplace()
    for sku in skus:
        market.set_stock(sku, 3)

    with pytest.raises(RetryableError):
        _run(database, channel_id, PagedConnector(market, fail_at=2))
    assert sorted(_listings(database)) == skus[: 2 * PAGE]
    again = _run(database, channel_id, PagedConnector(market))
    assert again.listings_bound == 20 - 2 * PAGE
    assert sorted(_listings(database)) == skus
