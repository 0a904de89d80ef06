"""Reconcile's listing pass: the channel's listings read page by page, each page compared with
the store and repaired in a short transaction of its own, then dropped.

Memory stays flat whatever the catalogue: what outlives a page is a snapshot of the channel's
bound listings taken before the first page (two integer arrays: listing id and the push sequence
it had, sorted by id, plus one byte per listing marking those a page showed), the channel's SKUs
the catalogue lacks (few), and counters. A 100,000-listing channel costs about 1.7 MB here where
holding its listings and beliefs as objects cost hundreds.

Why the snapshot keeps the push sequence: a channel page is read before the store is, so a push
recorded in between would look like drift (the channel showed the older figure). Repairs are
made only where the listing's `last_pushed_seq` still equals the snapshot's, the guard the whole
channel read had before it was paged.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from connectors.base import ChannelListing
from sync.models import JobState, Listing, OutboxJob, Sku
from sync.polling import chunks, insert_for
from sync.stock_push import STOCK_KEY

READ_STOCK_CHUNK = 50  # listings per read_stock call for those the listing pages left unread


@dataclass(frozen=True)
class Belief:
    """What we believe one bound listing shows, and the push sequence that belief comes from."""

    listing_id: int
    ref: str
    quantity: int | None
    pushed_seq: int


class BoundSnapshot:
    """The channel's bound listings when the pass began: id -> push sequence, compactly."""

    def __init__(self, rows: Iterable[tuple[int, int]]) -> None:
        self.ids = array("q")
        self.seqs = array("q")
        for listing_id, seq in rows:  # ordered by id (see `read`)
            self.ids.append(listing_id)
            self.seqs.append(seq)
        self.seen = bytearray(len(self.ids))

    @classmethod
    def read(cls, session: Session, channel_id: int) -> BoundSnapshot:
        """Every listing bound on the channel now, streamed from the store in id order."""
        rows = session.execute(
            select(Listing.id, Listing.last_pushed_seq)
            .where(Listing.channel_id == channel_id)
            .order_by(Listing.id)
            .execution_options(yield_per=5000)
        )
        return cls((int(i), int(s)) for i, s in rows)

    def __len__(self) -> int:
        return len(self.ids)

    def position(self, listing_id: int) -> int | None:
        """Where the listing sits in the snapshot; None when it was bound after it was taken."""
        at = bisect.bisect_left(self.ids, listing_id)
        return at if at < len(self.ids) and self.ids[at] == listing_id else None

    def unseen_ids(self) -> list[int]:
        """Listings of the snapshot no page showed a quantity for."""
        return [self.ids[i] for i, was_seen in enumerate(self.seen) if not was_seen]


@dataclass
class ListingTally:
    """What the pass read and repaired so far; what the status keeps of it at the end."""

    listings: int = 0
    without_sku: int = 0
    unknown_skus: set[str] = field(default_factory=set)  # the channel's SKUs we do not hold
    bound: int = 0  # listings bound by this pass (each logged as its page commits)
    checked: int = 0
    drift: int = 0


def bind_listings(
    session: Session,
    channel_id: int,
    listings: Sequence[ChannelListing],
    *,
    known: set[str] | None = None,
) -> list[tuple[str, str]]:
    """Create a listing for each channel listing whose SKU we know and that is not bound yet.

    Answers (sku, listing_ref) of the new bindings. What the channel shows becomes what we
    believe it holds, and the listing is dirty, so the next planning round pushes the ledger's
    figure if it differs. A binding made meanwhile elsewhere is left as it is. `known`: the
    SKUs of `listings` the catalogue holds, when the caller has read them already.
    """
    wanted = {c.listing_ref: c for c in listings if c.sku}
    if not wanted:
        return []
    if known is None:
        known = known_skus(session, {str(c.sku) for c in wanted.values()})
    bound: set[str] = set()
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


def known_skus(session: Session, skus: Iterable[str]) -> set[str]:
    """Those of `skus` the catalogue holds."""
    known: set[str] = set()
    for chunk in chunks(sorted(set(skus))):
        known.update(session.scalars(select(Sku.sku).where(Sku.sku.in_(chunk))))
    return known


def repair_drift(session: Session, beliefs: Sequence[Belief], shows: Mapping[str, int]) -> int:
    """Believe what the channel showed where it differs, and mark those listings dirty.

    Skipped: a listing with a push pending or in flight (it is about to change anyway) and one
    whose push landed after its belief's sequence was read. Answers how many known beliefs were
    wrong.
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


@dataclass(frozen=True)
class PageOutcome:
    """What one page changed in the store; added to the tally once its transaction commits."""

    listings: int
    without_sku: int
    unknown_skus: frozenset[str]
    bound: list[tuple[str, str]]
    checked: int
    drift: int

    def add_to(self, tally: ListingTally) -> None:
        """Count this page in `tally`."""
        tally.listings += self.listings
        tally.without_sku += self.without_sku
        tally.unknown_skus.update(self.unknown_skus)
        tally.bound += len(self.bound)
        tally.checked += self.checked
        tally.drift += self.drift


def apply_page(
    session: Session, channel_id: int, page: Sequence[ChannelListing], snapshot: BoundSnapshot
) -> PageOutcome:
    """One page of the channel's listings against the store, in the caller's (short)
    transaction: bind what is new, repair the beliefs it contradicts. Safe to run again whole
    when the transaction is retried (marking the snapshot seen is idempotent)."""
    skus = {str(item.sku) for item in page if item.sku}
    known = known_skus(session, skus)
    bound = bind_listings(session, channel_id, page, known=known)
    shows = {item.listing_ref: item.quantity for item in page if item.quantity is not None}
    beliefs = _beliefs(session, channel_id, shows, snapshot)
    return PageOutcome(
        listings=len(page),
        without_sku=sum(1 for item in page if not item.sku),
        unknown_skus=frozenset(skus - known),
        bound=bound,
        checked=len(beliefs),
        drift=repair_drift(session, beliefs, shows),
    )


def _beliefs(
    session: Session, channel_id: int, refs: Iterable[str], snapshot: BoundSnapshot
) -> list[Belief]:
    """The snapshot's listings among `refs`, marked seen, with what we believe they show now."""
    beliefs = []
    for chunk in chunks(sorted(refs)):
        rows = session.execute(
            select(Listing.id, Listing.external_ref, Listing.last_pushed_quantity).where(
                Listing.channel_id == channel_id, Listing.external_ref.in_(chunk)
            )
        )
        for listing_id, ref, quantity in rows:
            at = snapshot.position(listing_id)
            if at is None:
                continue  # bound by this pass (or meanwhile): what it shows is its belief
            snapshot.seen[at] = 1
            beliefs.append(Belief(listing_id, ref, quantity, snapshot.seqs[at]))
    return beliefs


def unread_beliefs(session: Session, ids: Sequence[int], snapshot: BoundSnapshot) -> list[Belief]:
    """Beliefs of snapshot listings (by id) that no listing page showed a quantity for."""
    beliefs = []
    rows = session.execute(
        select(Listing.id, Listing.external_ref, Listing.last_pushed_quantity).where(
            Listing.id.in_(ids)
        )
    )
    for listing_id, ref, quantity in rows:
        at = snapshot.position(listing_id)
        if at is not None:
            beliefs.append(Belief(listing_id, ref, quantity, snapshot.seqs[at]))
    return beliefs
