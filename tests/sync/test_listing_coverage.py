"""The listings a channel lacks and the SKUs of its we do not know, as the status shows them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from connectors.base import Capabilities
from connectors.memory import MemoryConnector, MemoryMarketplace
from sync.db import Database
from sync.ingest import ChannelRef
from sync.listing_coverage import coverage, coverages
from sync.models import BundleComponent, Channel, Listing, Sku, StockLevel
from sync.polling import PollChannel
from sync.reconcile import reconcile
from sync.status import channel_statuses
from tests.sync import poll_worker


def _store(database: Database) -> int:
    with database.session() as session:
        channel = Channel(name="shop", kind="memory")
        session.add(channel)
        session.add_all(Sku(sku=sku) for sku in ("A", "B", "C", "KIT"))
        session.add_all(StockLevel(sku=sku, location="default", on_hand=9) for sku in "ABC")
        session.flush()
        session.add(BundleComponent(bundle_sku="KIT", component_sku="A", quantity=2))
        return channel.id


def test_reconcile_reports_our_skus_the_channel_lacks_and_its_skus_we_do_not_know(
    database: Database,
) -> None:
    channel_id = _store(database)
    with database.read_session() as session:
        before = coverage(session, channel_id)
    # Nothing is known of the channel's listings before its first reconcile read them.
    assert (before.bound, before.missing_skus, before.checked_at) == (0, None, None)
    assert before.to_json()["missing_sample"] == []

    market = MemoryMarketplace()
    for ref, quantity in {"A": 5, "B": 2, "NOT-OURS": 1, "ALSO-NOT": 4}.items():
        market.set_stock(ref, quantity)
    connector = MemoryConnector(market, name="shop", capabilities=Capabilities())
    channel = PollChannel(ChannelRef(channel_id, "shop"), connector)
    asyncio.run(
        reconcile(database, channel, overlap=timedelta(days=1), initial_since=poll_worker.SINCE)
    )

    with database.read_session() as session:
        found = coverage(session, channel_id)
    # A and B are bound; C is ours and not listed (the bundle KIT is never listed as such);
    # two SKUs of the channel are not in the catalogue.
    assert (found.bound, found.missing_skus, found.missing_sample) == (2, 1, ["C"])
    assert (found.listings, found.unknown_skus) == (4, 2)
    assert found.unknown_sample == ["ALSO-NOT", "NOT-OURS"]
    assert found.checked_at is not None
    assert found.to_json()["unknown_sample"] == ["ALSO-NOT", "NOT-OURS"]
    with database.read_session() as session:
        shown = {s.name: s.to_json() for s in channel_statuses(session, datetime.now(UTC))}
    assert shown["shop"]["listings"]["missing_sample"] == ["C"]
    assert shown["shop"]["listings"]["unknown_skus"] == 2


def test_what_a_channel_lacks_is_as_of_its_last_reconcile_and_the_bound_count_is_live(
    database: Database,
) -> None:
    channel_id = _store(database)
    with database.session() as session:
        other = Channel(name="other", kind="memory")
        session.add(other)
        # Flagged a bundle without components yet: still never listed as itself.
        session.add(Sku(sku="SET", is_bundle=True))
        session.flush()
        other_id = other.id
    market = MemoryMarketplace()
    market.set_stock("A", 5)
    connector = MemoryConnector(market, name="shop", capabilities=Capabilities())
    channel = PollChannel(ChannelRef(channel_id, "shop"), connector)
    asyncio.run(
        reconcile(database, channel, overlap=timedelta(days=1), initial_since=poll_worker.SINCE)
    )
    with database.read_session() as session:
        found = coverages(session, [channel_id, other_id])
    assert (found[channel_id].bound, found[channel_id].missing_skus) == (1, 2)
    assert found[channel_id].missing_sample == ["B", "C"]  # KIT and SET are bundles
    assert (found[other_id].bound, found[other_id].missing_skus) == (0, None)

    # The channel lists B too: bound by the next reconcile, and only then no longer missing.
    market.set_stock("B", 1)
    with database.session() as session:
        session.add(Listing(channel_id=channel_id, sku="B", external_ref="B", is_dirty=False))
    with database.read_session() as session:
        between = coverage(session, channel_id)
    assert (between.bound, between.missing_skus) == (2, 2)
    asyncio.run(
        reconcile(database, channel, overlap=timedelta(days=1), initial_since=poll_worker.SINCE)
    )
    with database.read_session() as session:
        after = coverage(session, channel_id)
    assert (after.bound, after.missing_skus, after.missing_sample) == (2, 1, ["C"])
