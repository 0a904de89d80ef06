"""Which of a channel's listings carry which of our SKUs: the report, and onboarding from it.

A seller whose stock is right on one channel starts there: every listing of that channel with a
SKU becomes a SKU of ours (when new) bound to that listing, and the quantity the channel shows
becomes on hand at one location. The plan is computed first, shown, and applied as one change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import ChannelListing
from sync.listing_coverage import is_plain, plain_skus
from sync.models import Listing, Sku, StockLevel
from sync.stock_ops import ImportResult, apply_on_hand

SKU_MAX = 128  # Sku.sku is String(128)
REF_MAX = 255  # Listing.external_ref is String(255)


@dataclass(frozen=True)
class ListingsReport:
    """One channel's listings against our catalogue."""

    channel: str
    bound: list[tuple[str, str]]  # (sku, listing ref), bound in the store
    unknown: list[tuple[str, str | None]]  # (listing ref, its SKU) the catalogue does not hold
    missing: list[str]  # our plain SKUs (listing_coverage.is_plain) no listing carries


def listings_report(
    session: Session, channel_id: int, channel: str, listed: Sequence[ChannelListing]
) -> ListingsReport:
    """Compare what the channel lists with the SKUs and bindings in the store."""
    ours = {sku for (sku,) in session.execute(select(Sku.sku))}
    bound = sorted(
        (sku, ref)
        for sku, ref in session.execute(
            select(Listing.sku, Listing.external_ref).where(Listing.channel_id == channel_id)
        )
    )
    carried = {item.sku for item in listed if item.sku} | {sku for sku, _ in bound}
    plain = set(session.scalars(plain_skus()))
    return ListingsReport(
        channel=channel,
        bound=bound,
        unknown=sorted(
            ((item.listing_ref, item.sku) for item in listed if item.sku not in ours),
            key=lambda pair: pair[0],
        ),
        missing=sorted(plain - carried),
    )


@dataclass
class OnboardingPlan:
    """What importing a channel's quantities would change."""

    location: str
    new_skus: list[str] = field(default_factory=list)
    new_bindings: list[tuple[str, str]] = field(default_factory=list)  # (sku, listing ref)
    on_hand: list[tuple[str, int, int]] = field(default_factory=list)  # (sku, old, new)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (listing ref, why)

    @property
    def changes(self) -> list[tuple[str, int, int]]:
        """On-hand figures that move."""
        return [(sku, old, new) for sku, old, new in self.on_hand if old != new]

    @property
    def is_empty(self) -> bool:
        """True when applying would change nothing."""
        return not (self.new_skus or self.new_bindings or self.changes)


def plan_onboarding(
    session: Session,
    channel_id: int,
    location: str,
    listed: Sequence[ChannelListing],
    quantities: Mapping[str, int],
) -> OnboardingPlan:
    """What to create and set so our store matches the channel (`quantities`: listing ref ->
    what the channel's stock read answered). Nothing is written."""
    plan = OnboardingPlan(location=location)
    bundles = _bundles(session)
    known = {sku for (sku,) in session.execute(select(Sku.sku))}
    bound = {
        ref: sku
        for ref, sku in session.execute(
            select(Listing.external_ref, Listing.sku).where(Listing.channel_id == channel_id)
        )
    }
    per_sku = Counter(item.sku.strip() for item in listed if item.sku and item.sku.strip())
    on_hand = {
        sku: qty
        for sku, qty in session.execute(
            select(StockLevel.sku, StockLevel.on_hand).where(StockLevel.location == location)
        )
    }
    for item in sorted(listed, key=lambda listing: listing.listing_ref):
        ref, sku = item.listing_ref, (item.sku or "").strip()
        problem = _problem(item, sku, per_sku, bundles, bound, quantities)
        if problem:
            plan.skipped.append((ref, problem))
            continue
        if sku not in known:
            plan.new_skus.append(sku)
        if ref not in bound:
            plan.new_bindings.append((sku, ref))
        plan.on_hand.append((sku, on_hand.get(sku, 0), quantities[ref]))
    return plan


def apply_onboarding(session: Session, channel_id: int, plan: OnboardingPlan) -> ImportResult:
    """Create the SKUs and bindings of `plan` and set its on-hand figures, in the caller's
    transaction. A binding made meanwhile by another process makes the insert fail, and the
    whole change with it: plan again."""
    session.add_all(Sku(sku=sku) for sku in plan.new_skus)
    session.flush()
    session.add_all(
        Listing(channel_id=channel_id, sku=sku, external_ref=ref, is_dirty=True)
        for sku, ref in plan.new_bindings
    )
    session.flush()
    rows = [(sku, plan.location, new) for sku, _, new in plan.on_hand]
    return apply_on_hand(session, rows, source="channel") if rows else ImportResult(())


def _problem(
    item: ChannelListing,
    sku: str,
    per_sku: Counter[str],
    bundles: set[str],
    bound: Mapping[str, str],
    quantities: Mapping[str, int],
) -> str | None:
    ref = item.listing_ref
    if not sku:
        return "the listing has no SKU on the channel"
    if len(sku) > SKU_MAX or len(ref) > REF_MAX:
        return f"SKU longer than {SKU_MAX} or listing reference longer than {REF_MAX} characters"
    if per_sku[sku] > 1:
        return f"{per_sku[sku]} listings carry SKU {sku!r}: which quantity is right is unclear"
    if sku in bundles:
        return f"SKU {sku!r} is a bundle here: its stock derives from its components"
    if ref in bound and bound[ref] != sku:
        return f"bound to SKU {bound[ref]!r} here but carries {sku!r} on the channel"
    if ref not in quantities:
        return "the channel's stock read did not answer for it"
    if quantities[ref] < 0:
        return f"the channel shows {quantities[ref]}; on hand cannot be negative, set it by hand"
    return None


def _bundles(session: Session) -> set[str]:
    """Our SKUs that are not plain (listing_coverage.is_plain: the one rule for both)."""
    return set(session.scalars(select(Sku.sku).where(~is_plain())))
