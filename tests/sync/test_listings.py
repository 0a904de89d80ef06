"""Onboarding from a channel, and the listings report: plan first, then one change or none."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connectors.base import ChannelListing
from sync.db import Database
from sync.listings import apply_onboarding, listings_report, plan_onboarding
from sync.models import BundleComponent, Channel, Listing, Sku, StockLevel


def _seed(database: Database) -> int:
    """SKUs A (5 at main, bound to shop's ref-A), B (no listing); bundle KIT = A + B."""
    with database.session() as session:
        shop = Channel(name="shop", kind="memory")
        session.add(shop)
        session.add_all([Sku(sku="A"), Sku(sku="B"), Sku(sku="KIT", is_bundle=True)])
        session.flush()
        session.add_all(
            [
                BundleComponent(bundle_sku="KIT", component_sku="A", quantity=1),
                BundleComponent(bundle_sku="KIT", component_sku="B", quantity=1),
                StockLevel(sku="A", location="main", on_hand=5),
                Listing(channel_id=shop.id, sku="A", external_ref="ref-A", is_dirty=False),
            ]
        )
        session.flush()
        return shop.id


LISTED = [
    ChannelListing("ref-A", "A", 7),
    ChannelListing("ref-N", "NEW", 3),
    ChannelListing("ref-K", "KIT", 2),
    ChannelListing("ref-X", None, 9),
    ChannelListing("ref-D1", "DUP", 1),
    ChannelListing("ref-D2", "DUP", 2),
    ChannelListing("ref-M", "NEG", -2),
    ChannelListing("ref-Q", "QUIET", 4),
]
QUANTITIES = {"ref-A": 7, "ref-N": 3, "ref-K": 2, "ref-X": 9, "ref-D1": 1, "ref-D2": 2, "ref-M": -2}


def _on_hand(session: Session) -> dict[tuple[str, str], int]:
    return {(s.sku, s.location): s.on_hand for s in session.scalars(select(StockLevel))}


def test_the_plan_says_what_changes_and_why_each_other_listing_is_left(database: Database) -> None:
    shop = _seed(database)
    with database.read_session() as session:
        plan = plan_onboarding(session, shop, "main", LISTED, QUANTITIES)
    assert plan.new_skus == ["NEW"]
    assert plan.new_bindings == [("NEW", "ref-N")]
    assert plan.changes == [("A", 5, 7), ("NEW", 0, 3)]
    skipped = dict(plan.skipped)
    assert set(skipped) == {"ref-K", "ref-X", "ref-D1", "ref-D2", "ref-M", "ref-Q"}
    assert "bundle" in skipped["ref-K"]
    assert "no SKU" in skipped["ref-X"]
    assert "2 listings carry SKU 'DUP'" in skipped["ref-D1"]
    assert "cannot be negative" in skipped["ref-M"]
    assert "did not answer" in skipped["ref-Q"]


def test_applying_the_plan_creates_binds_and_sets_on_hand_as_one_change(
    database: Database,
) -> None:
    shop = _seed(database)
    with database.read_session() as session:
        plan = plan_onboarding(session, shop, "main", LISTED, QUANTITIES)
    result = database.transact(lambda session: apply_onboarding(session, shop, plan))
    assert result.skus_changed == ["A", "NEW"]
    with database.read_session() as session:
        assert _on_hand(session) == {("A", "main"): 7, ("NEW", "main"): 3}
        bound = {
            (listing.sku, listing.external_ref): listing.is_dirty
            for listing in session.scalars(select(Listing).where(Listing.channel_id == shop))
        }
        # Every listing of a changed SKU goes out again with the new figure.
        assert bound == {("A", "ref-A"): True, ("NEW", "ref-N"): True}
        again = plan_onboarding(session, shop, "main", LISTED, QUANTITIES)
    assert again.is_empty


def test_a_binding_made_meanwhile_fails_the_whole_change(database: Database) -> None:
    shop = _seed(database)
    with database.read_session() as session:
        plan = plan_onboarding(session, shop, "main", LISTED, QUANTITIES)
    with database.session() as session:  # another process binds ref-N first
        session.add(Sku(sku="OTHER"))
        session.flush()
        session.add(Listing(channel_id=shop, sku="OTHER", external_ref="ref-N"))
    with pytest.raises(IntegrityError):
        database.transact(lambda session: apply_onboarding(session, shop, plan))
    with database.read_session() as session:
        assert _on_hand(session) == {("A", "main"): 5}
        assert session.get(Sku, "NEW") is None


def test_the_report_lists_bound_unknown_and_missing(database: Database) -> None:
    shop = _seed(database)
    with database.read_session() as session:
        report = listings_report(session, shop, "shop", LISTED)
    assert report.bound == [("A", "ref-A")]
    assert ("ref-N", "NEW") in report.unknown and ("ref-X", None) in report.unknown
    assert ("ref-A", "A") not in report.unknown and ("ref-K", "KIT") not in report.unknown
    assert report.missing == ["B"]  # a bundle is never "missing": it has no stock of its own
