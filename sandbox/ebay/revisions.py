"""Revising listings' quantity and price, as both stock APIs do it, under eBay's daily cap.

A revision that changes nothing is redundant (eBay answers a warning) and does not count. One
call counts one revision per listing it changes, however many of that listing's variations it
touches. A listing with no revisions left today refuses every change; an ended listing refuses
every revision.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sandbox.ebay.model import Listing
from sandbox.ebay.quotas import DailyLimits
from sandbox.ebay.store import EbayStore


class Outcome(enum.StrEnum):
    """What became of one requested change."""

    REVISED = "revised"
    REDUNDANT = "redundant"  # same quantity and price as now
    LIMIT = "limit"  # the listing's revisions for today are used up
    ENDED = "ended"  # the listing is no longer on sale


@dataclass(frozen=True)
class Change:
    """A new quantity and/or price for one listing (or variation)."""

    listing: Listing
    quantity: int | None
    price: Decimal | None = None

    def is_redundant(self) -> bool:
        """Whether the listing already shows this quantity and price."""
        listing = self.listing
        return (self.quantity is None or self.quantity == listing.quantity) and (
            self.price is None or self.price == listing.price
        )


def revise(store: EbayStore, limits: DailyLimits, changes: Sequence[Change]) -> list[Outcome]:
    """Apply the changes one call asks for; the outcome of each, in order."""
    outcomes: list[Outcome] = []
    counted: set[str] = set()
    for change in changes:
        listing = change.listing
        if listing.ended:
            outcomes.append(Outcome.ENDED)
            continue
        if change.is_redundant():
            outcomes.append(Outcome.REDUNDANT)
            continue
        item = listing.item_id
        if item not in counted and limits.revisions_left(item) <= 0:
            outcomes.append(Outcome.LIMIT)
            continue
        if item not in counted:
            limits.count_revision(item)
            counted.add(item)
        if change.price is not None:
            listing.price = change.price
        if change.quantity is not None:
            store.set_quantity(listing, change.quantity)
        outcomes.append(Outcome.REVISED)
    return outcomes
