"""Which SKUs a channel lacks and which of its SKUs we do not know, for `/api/status`.

Reconcile reads every listing of the channel and, once it has, keeps what it found as an event
(`listings_checked`): the listings it read, those without a SKU, the channel's SKUs the catalogue
lacks, and our plain SKUs no listing of the channel is bound to (`lacking_skus`: the one rule,
which the listings report uses too). The status shows the newest such event per channel, plus
the listings bound now.

Why a figure kept by reconcile and not a query per status: the live view reads the status twice
a second, and "our SKUs the channel lacks" is an anti-join of the catalogue against the
channel's listings (about 0.4 s per channel at 100,000 SKUs on SQLite). Reconcile pays it once
per run, on a read snapshot, outside any write transaction. Before a channel's first reconcile
the figure is unknown (None), as are the channel's own counts.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, exists, func, select
from sqlalchemy.orm import Session

from sync.models import BundleComponent, Event, Listing, Sku

EVENT_KIND = "listings_checked"
SAMPLE = 20  # SKUs named in the status; the counts say how many in all


def is_plain() -> Any:
    """SQL predicate on `Sku`: a SKU the channels list as itself. A bundle (flagged as one, or
    made of components) never is: its quantity derives from its components'."""
    return and_(
        Sku.is_bundle.is_(False),
        ~exists().where(BundleComponent.bundle_sku == Sku.sku),
    )


def plain_skus() -> Select[str]:
    """Our plain SKUs (see `is_plain`)."""
    return select(Sku.sku).where(is_plain())


def lacking_skus(channel_id: int) -> Select[str]:
    """Our plain SKUs no listing of the channel is bound to, in SKU order.

    NOT IN, not a correlated NOT EXISTS: SQLite answers the former from one list of the
    channel's SKUs built once, the latter by searching the listings index on channel id for
    every SKU (100,000 x 100,000 rows at scale). `listings.sku` is never NULL."""
    carried = select(Listing.sku).where(Listing.channel_id == channel_id)
    return plain_skus().where(Sku.sku.not_in(carried)).order_by(Sku.sku)


@dataclass(frozen=True)
class Lacking:
    """Our plain SKUs no listing of a channel is bound to: how many, and the first few."""

    count: int
    sample: list[str]


def read_lacking(session: Session, channel_id: int) -> Lacking:
    """`lacking_skus` of the channel, counted and sampled (run it on a read snapshot)."""
    query = lacking_skus(channel_id)
    count = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    sample = list(session.scalars(query.limit(SAMPLE))) if count else []
    return Lacking(count, sample)


def record_listings_checked(
    session: Session,
    channel_id: int,
    *,
    listings: int,
    without_sku: int,
    unknown: Collection[str],
    lacking: Lacking,
    now: datetime,
) -> None:
    """Keep what one reconcile found among the channel's listings: how many it read, how many
    carry no SKU, the channel's SKUs the catalogue does not hold, and ours it lacks (each
    counted, a few named)."""
    session.add(
        Event(
            at=now,
            kind=EVENT_KIND,
            channel_id=channel_id,
            data={
                "listings": listings,
                "without_sku": without_sku,
                "unknown_skus": len(unknown),
                "unknown_sample": sorted(unknown)[:SAMPLE],
                "missing_skus": lacking.count,
                "missing_sample": lacking.sample,
            },
        )
    )


@dataclass(frozen=True)
class Coverage:
    """One channel's listings against the catalogue."""

    bound: int  # now
    missing_skus: int | None  # as of checked_at
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
    """The channel's bound listings, and what its last reconcile found (see the module)."""
    return coverages(session, [channel_id])[channel_id]


def coverages(session: Session, channel_ids: Collection[int]) -> dict[int, Coverage]:
    """`coverage` of several channels: one grouped count of their listings (an index scan) and
    each one's newest `listings_checked` event."""
    wanted = sorted(set(channel_ids))
    if not wanted:
        return {}
    bound: dict[int, int] = {
        channel_id: int(count)
        for channel_id, count in session.execute(
            select(Listing.channel_id, func.count())
            .where(Listing.channel_id.in_(wanted))
            .group_by(Listing.channel_id)
        )
    }
    found = {}
    for channel_id in wanted:
        last = session.scalars(
            select(Event)
            .where(Event.kind == EVENT_KIND, Event.channel_id == channel_id)
            .order_by(Event.id.desc())
            .limit(1)
        ).first()
        data = (last.data or {}) if last is not None else {}
        found[channel_id] = Coverage(
            bound=bound.get(channel_id, 0),
            missing_skus=data.get("missing_skus"),
            missing_sample=list(data.get("missing_sample", [])),
            checked_at=last.at if last is not None else None,
            listings=data.get("listings"),
            without_sku=data.get("without_sku"),
            unknown_skus=data.get("unknown_skus"),
            unknown_sample=list(data.get("unknown_sample", [])),
        )
    return found
