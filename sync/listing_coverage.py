"""Which SKUs a channel lacks and which of its SKUs we do not know, for `/api/status`.

Reconcile reads every listing of the channel; what it found that the catalogue lacks is kept as
an event (`listings_checked`), the newest of which the status shows. What the channel lacks is
read from the store when asked: our plain SKUs (bundles are never listed as such) that no
listing of the channel is bound to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connectors.base import ChannelListing
from sync.models import BundleComponent, Event, Listing, Sku

EVENT_KIND = "listings_checked"
SAMPLE = 20  # SKUs named in the status; the counts say how many in all
CHUNK = 500  # SKUs per IN (...): well under SQLite's bound-parameter limit


def record_listings_checked(
    session: Session, channel_id: int, listed: Sequence[ChannelListing], now: datetime
) -> int:
    """Keep what one reconcile found among the channel's listings; answer how many SKUs of the
    channel the catalogue does not hold."""
    skus = {item.sku for item in listed if item.sku}
    known: set[str] = set()
    ordered = sorted(skus)
    for start in range(0, len(ordered), CHUNK):
        chunk = ordered[start : start + CHUNK]
        known.update(session.scalars(select(Sku.sku).where(Sku.sku.in_(chunk))))
    unknown = sorted(skus - known)
    session.add(
        Event(
            at=now,
            kind=EVENT_KIND,
            channel_id=channel_id,
            data={
                "listings": len(listed),
                "without_sku": sum(1 for item in listed if not item.sku),
                "unknown_skus": len(unknown),
                "unknown_sample": unknown[:SAMPLE],
            },
        )
    )
    return len(unknown)


@dataclass(frozen=True)
class Coverage:
    """One channel's listings against the catalogue."""

    bound: int
    missing_skus: int
    missing_sample: list[str]
    checked_at: datetime | None  # the last reconcile that read the channel's listings
    listings: int | None
    without_sku: int | None
    unknown_skus: int | None
    unknown_sample: list[str]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form, times as ISO 8601."""
        return {
            "bound": self.bound,
            "missing_skus": self.missing_skus,
            "missing_sample": self.missing_sample,
            "checked_at": self.checked_at.isoformat() if self.checked_at else None,
            "listings": self.listings,
            "without_sku": self.without_sku,
            "unknown_skus": self.unknown_skus,
            "unknown_sample": self.unknown_sample,
        }


def coverage(session: Session, channel_id: int) -> Coverage:
    """The channel's bound listings, our SKUs it lacks, and its last reconcile's findings."""
    bound = session.scalar(
        select(func.count()).select_from(Listing).where(Listing.channel_id == channel_id)
    )
    carried = select(Listing.sku).where(Listing.channel_id == channel_id)
    bundles = select(BundleComponent.bundle_sku)
    lacking = select(Sku.sku).where(Sku.sku.not_in(carried), Sku.sku.not_in(bundles))
    missing = session.scalar(select(func.count()).select_from(lacking.subquery())) or 0
    sample = list(session.scalars(lacking.order_by(Sku.sku).limit(SAMPLE)))
    last = session.scalars(
        select(Event)
        .where(Event.kind == EVENT_KIND, Event.channel_id == channel_id)
        .order_by(Event.id.desc())
        .limit(1)
    ).first()
    data = (last.data or {}) if last is not None else {}
    return Coverage(
        bound=bound or 0,
        missing_skus=missing,
        missing_sample=sample,
        checked_at=last.at if last is not None else None,
        listings=data.get("listings"),
        without_sku=data.get("without_sku"),
        unknown_skus=data.get("unknown_skus"),
        unknown_sample=list(data.get("unknown_sample", [])),
    )
