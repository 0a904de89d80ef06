"""Stock out: dirty listings -> channel quantities -> coalesced outbox jobs -> batched pushes.

Planning (in a store transaction) turns every dirty listing into the quantity its channel's rules
give for the ledger now, drops it when that equals what the channel holds or is about to be told,
and otherwise enqueues a stock job with a higher sequence number, replacing any pending one.
Pushing claims up to the connector's batch maximum of a channel's due stock jobs and sends them
in one call. A listing's applied sequence only grows, and a job at or below it is dropped
unsent, so no channel receives an older target after a newer one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from connectors.base import PushOutcome, StockPushResult, StockTarget
from sync.models import (
    LANE_CONFIRM,
    LANE_NORMAL,
    LANE_SCARCE,
    LANE_SOLD_OUT,
    JobKind,
    JobState,
    Listing,
    OutboxJob,
    utcnow,
)
from sync.outbox import RetrySchedule, back_to_pending, complete, enqueue_many, fail
from sync.reservations import StockRules, channel_available

STOCK_KEY = "stock:{listing_id}"
MAX_CAS_ROUNDS = 5
_LESSON = ("unseen", "expected", "believed")  # what a conflict adds to a job's payload


SCARCE_UNITS = 3
"""A push that lowers a listing to this many units or fewer goes in the outbox's scarce lane,
ahead of the channel's other stock pushes: while a channel's rate limit holds a queue of
changes, a listing with many units left can wait a few seconds, the last units cannot."""


@dataclass(frozen=True)
class ChannelStockPlan:
    """What planning needs to know of one channel."""

    channel_id: int
    rules: StockRules
    locations: tuple[str, ...]


def push_lane(quantity: int, told: int | None) -> int:
    """The outbox lane of a push of `quantity` to a listing the channel was last told `told`."""
    if told is not None and quantity < told and quantity <= SCARCE_UNITS:
        return LANE_SOLD_OUT if quantity == 0 else LANE_SCARCE
    if quantity == told and quantity > SCARCE_UNITS:
        return LANE_CONFIRM  # nothing changed: it confirms the belief, after the rest
    return LANE_NORMAL


class Planned(NamedTuple):
    """What planning gave one channel."""

    jobs: int  # stock jobs enqueued or replaced
    urgent: int  # of them, pushes to a listing's last units (lanes before LANE_NORMAL)


def plan_targets(
    session: Session, channels: Mapping[int, ChannelStockPlan], *, limit: int = 5000
) -> dict[int, Planned]:
    """Turn dirty listings into stock jobs; answer channel id -> what each channel was given."""
    if not channels:
        return {}
    listings = session.scalars(
        select(Listing)
        .where(Listing.is_dirty.is_(True), Listing.channel_id.in_(channels))
        .order_by(Listing.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not listings:
        return {}
    queued = _queued_quantities(session, [listing.id for listing in listings])
    by_channel: dict[int, list[Listing]] = defaultdict(list)
    for listing in listings:
        by_channel[listing.channel_id].append(listing)

    enqueued: dict[int, Planned] = {}
    now = utcnow()
    for channel_id, channel_listings in by_channel.items():
        plan = channels[channel_id]
        available = channel_available(
            session, {lst.sku for lst in channel_listings}, plan.locations
        )
        jobs: list[tuple[str, dict[str, Any]]] = []
        lanes: dict[str, int] = {}
        for listing in channel_listings:
            listing.is_dirty = False
            quantity = plan.rules.apply(available.get(listing.sku, 0))
            # A queued push carries the belief as its expectation when it is sent: it verifies.
            verify = listing.verify_belief and listing.id not in queued
            listing.verify_belief = False
            told = queued.get(listing.id, listing.last_pushed_quantity)
            if quantity == told and not verify:
                continue
            key, payload = _next_target(listing, quantity)
            lanes[key] = push_lane(quantity, told)
            jobs.append((key, payload))
        # One statement for the channel's jobs: thousands of dirty listings (a reconcile that
        # found drift everywhere, a catalogue import) must not hold SQLite's write lock for
        # minutes, which made every other writer fail with "database is locked".
        enqueue_many(
            session,
            channel_id=channel_id,
            kind=JobKind.STOCK,
            jobs=jobs,
            now=now,
            lanes=lanes,
        )
        if jobs:
            urgent = sum(lane < LANE_NORMAL for lane in lanes.values())
            enqueued[channel_id] = Planned(len(jobs), urgent)
    session.flush()
    return enqueued


def _next_target(listing: Listing, quantity: int) -> tuple[str, dict[str, Any]]:
    """A stock job's identity key and payload for `quantity`, at the listing's next sequence."""
    listing.target_seq += 1
    payload = {
        "listing_id": listing.id,
        "listing_ref": listing.external_ref,
        "quantity": quantity,
        "seq": listing.target_seq,
        "extra": listing.extra or {},
    }
    return STOCK_KEY.format(listing_id=listing.id), payload


def _queued_quantities(session: Session, listing_ids: Sequence[int]) -> dict[int, int]:
    """listing id -> quantity the channel is about to be told (pending beats running)."""
    keys = {STOCK_KEY.format(listing_id=i): i for i in listing_ids}
    queued: dict[int, int] = {}
    rows = session.execute(
        select(OutboxJob.identity_key, OutboxJob.state, OutboxJob.payload).where(
            OutboxJob.identity_key.in_(keys),
            OutboxJob.state.in_([JobState.PENDING, JobState.RUNNING]),
        )
    )
    # Pending sorts last, so it wins; then the newest of the running (a push to a listing's
    # last units may be in flight beside an older, slow one: see `outbox.claim`).
    for key, _state, payload in sorted(
        rows, key=lambda r: (r[1] == JobState.PENDING, int(r[2]["seq"]))
    ):
        queued[keys[key]] = int(payload["quantity"])
    return queued


def forget_beliefs(session: Session, listing_ids: Sequence[int]) -> None:
    """We no longer know what the channel shows for these listings (an unclear outcome)."""
    if listing_ids:
        session.execute(
            update(Listing).where(Listing.id.in_(listing_ids)).values(last_pushed_quantity=None)
        )


@dataclass
class PushBatch:
    """Claimed stock jobs of one channel, ready to send, and what was dropped as stale."""

    jobs: list[OutboxJob]
    targets: list[StockTarget]
    stale: list[int]


def prepare_batch(
    session: Session, jobs: Sequence[OutboxJob], *, compare_and_swap: bool
) -> PushBatch:
    """Build targets for claimed jobs; drop (complete) those a newer push already overtook."""
    listings = {
        listing.id: listing
        for listing in session.scalars(
            select(Listing).where(Listing.id.in_([j.payload["listing_id"] for j in jobs]))
        )
    }
    batch = PushBatch(jobs=[], targets=[], stale=[])
    for job in jobs:
        listing = listings.get(job.payload["listing_id"])
        if listing is None or job.payload["seq"] <= listing.last_pushed_seq:
            batch.stale.append(job.id)
            continue
        if "unseen" in job.payload and job.payload.get("believed") != listing.last_pushed_quantity:
            # Sales ingested since a conflict taught us about unseen ones moved the belief: that
            # lesson is stale (they may be the same sales); compare-and-swap learns afresh.
            job.payload = {k: v for k, v in job.payload.items() if k not in _LESSON}
        # The belief when this push left: sales ingested while it is in flight lower it, and
        # the result needs to know by how much.
        job.payload = {**job.payload, "belief_at_claim": listing.last_pushed_quantity}
        unseen = int(job.payload.get("unseen", 0))
        expected = job.payload.get("expected", listing.last_pushed_quantity)
        batch.jobs.append(job)
        batch.targets.append(
            StockTarget(
                listing_ref=job.payload["listing_ref"],
                quantity=max(0, int(job.payload["quantity"]) - unseen),
                expected=expected if compare_and_swap else None,
                extra=job.payload.get("extra") or {},
                urgent=job.lane < LANE_NORMAL,
            )
        )
    complete(session, batch.stale, note="superseded by a newer target")
    return batch


@dataclass
class PushOutcomeSummary:
    """Counts of what one batch did, for metrics and logs."""

    applied: int = 0
    conflicts: int = 0
    rejected: int = 0
    retried: int = 0


def record_results(
    session: Session,
    batch: PushBatch,
    results: Sequence[StockPushResult],
    *,
    now: datetime | None = None,
    schedule: RetrySchedule | None = None,
) -> PushOutcomeSummary:
    """Apply a channel's per-listing answers to listings and jobs.

    On a compare-and-swap conflict the channel holds `actual` where we believed `expected`: the
    difference is sales we have not ingested yet, so the target drops by as much and the job goes
    straight back with the channel's figure as the new expectation.
    """
    now = now or utcnow()
    schedule = schedule or RetrySchedule()
    summary = PushOutcomeSummary()
    by_ref = {r.listing_ref: r for r in results}
    listings = {
        listing.id: listing
        for listing in session.scalars(
            select(Listing).where(Listing.id.in_([j.payload["listing_id"] for j in batch.jobs]))
        )
    }
    overtaken = _overtaken(session, batch.jobs, listings)
    done: list[int] = []
    for job, target in zip(batch.jobs, batch.targets, strict=True):
        listing = listings[job.payload["listing_id"]]
        result = by_ref.get(target.listing_ref)
        if result is None:
            summary.retried += 1
            fail(
                session,
                job,
                "the channel did not answer for this listing",
                now=now,
                schedule=schedule,
            )
        elif result.outcome == PushOutcome.APPLIED and job.id in overtaken:
            summary.applied += 1
            _push_again(session, job, listing, overtaken[job.id], now)
            done.append(job.id)
        elif result.outcome == PushOutcome.APPLIED:
            summary.applied += 1
            listing.last_pushed_quantity = _belief_after_apply(job, listing, target)
            listing.last_pushed_seq = max(listing.last_pushed_seq, int(job.payload["seq"]))
            listing.last_pushed_at = now
            done.append(job.id)
        elif result.outcome == PushOutcome.CONFLICT and result.actual is not None:
            summary.conflicts += 1
            _retarget_after_conflict(session, job, listing, target, result.actual, now)
        elif result.outcome == PushOutcome.REJECTED:
            summary.rejected += 1
            fail(
                session,
                job,
                result.error or "rejected by the channel",
                permanent=True,
                now=now,
                schedule=schedule,
            )
        else:
            summary.retried += 1
            fail(
                session,
                job,
                result.error or "the channel asked to retry",
                now=now,
                schedule=schedule,
            )
    complete(session, done)
    return summary


class _Overtaken(NamedTuple):
    """A slow push that landed after a newer push of its listing went beside it."""

    newer: OutboxJob | None  # that newer push while it is still running; None once it landed
    pending: bool  # a job of the listing waits already, with the newest figure


def _overtaken(
    session: Session, jobs: Sequence[OutboxJob], listings: Mapping[int, Listing]
) -> dict[int, _Overtaken]:
    """Of `jobs`, the overtakable ones a newer push of their listing went beside (see
    `outbox.claim`), by job id; one query for all of them, none when none is overtakable."""
    slow = [job for job in jobs if job.overtakable]
    if not slow:
        return {}
    running: dict[str, OutboxJob] = {}
    pending: set[str] = set()
    for other in session.scalars(
        select(OutboxJob).where(
            OutboxJob.identity_key.in_({job.identity_key for job in slow}),
            OutboxJob.state.in_([JobState.RUNNING, JobState.PENDING]),
            OutboxJob.id.not_in([job.id for job in jobs]),
        )
    ):
        if other.state == JobState.PENDING:
            pending.add(other.identity_key)
            continue
        newest = running.get(other.identity_key)
        if newest is None or other.payload["seq"] > newest.payload["seq"]:
            running[other.identity_key] = other
    overtaken: dict[int, _Overtaken] = {}
    for job in slow:
        seq = int(job.payload["seq"])
        newer = running.get(job.identity_key)
        waits = job.identity_key in pending
        if newer is not None and int(newer.payload["seq"]) > seq:
            overtaken[job.id] = _Overtaken(newer, waits)
        elif listings[job.payload["listing_id"]].last_pushed_seq > seq:
            overtaken[job.id] = _Overtaken(None, waits)
    return overtaken


def _push_again(
    session: Session, job: OutboxJob, listing: Listing, overtaken: _Overtaken, now: datetime
) -> None:
    """A slow push landed after a newer push of its listing went: the channel may have applied
    the older figure last, so the newest goes again, after the newer one lands (a pending job
    waits for it; one already pending carries the newest figure by itself). Its lane is judged
    against the older figure, which the channel may be showing."""
    if overtaken.pending:
        return
    newer = overtaken.newer
    quantity = listing.last_pushed_quantity if newer is None else int(newer.payload["quantity"])
    if quantity is None:
        listing.is_dirty = True  # what the channel holds is unknown: planning pushes the ledger's
        return
    key, payload = _next_target(listing, quantity)
    enqueue_many(
        session,
        channel_id=job.channel_id,
        kind=JobKind.STOCK,
        jobs=[(key, payload)],
        now=now,
        lanes={key: push_lane(quantity, int(job.payload["quantity"]))},
    )


def _belief_after_apply(job: OutboxJob, listing: Listing, target: StockTarget) -> int:
    """What we believe the channel holds once it applied `target`.

    The belief counts the channel's sales we have not ingested yet as not made (`unseen` adds
    them back), so each sale is subtracted exactly once: by ingest, whichever path noticed it
    first. With compare-and-swap a push applies only if nothing sold since we read the channel,
    so the sales ingested while it was in flight came after it and are subtracted too. Without
    it an absolute set may have erased such a sale: assume it did, so the next planning round
    pushes the ledger's figure rather than skipping a needed correction.
    """
    if target.expected is None:
        return target.quantity
    believed = target.quantity + int(job.payload.get("unseen", 0))
    at_claim = job.payload.get("belief_at_claim")
    now = listing.last_pushed_quantity
    in_flight_sales = max(0, int(at_claim) - now) if at_claim is not None and now is not None else 0
    return max(0, believed - in_flight_sales)


def _retarget_after_conflict(
    session: Session,
    job: OutboxJob,
    listing: Listing,
    target: StockTarget,
    actual: int,
    now: datetime,
) -> None:
    """The channel holds `actual` where we believed more: sales we have not ingested yet."""
    believed = listing.last_pushed_quantity if listing.last_pushed_quantity is not None else actual
    # Only units that vanished are sales; a channel holding more than we believe (a manual
    # edit there) does not make us show more than the ledger allows.
    unseen = max(0, believed - actual)
    rounds = int(job.payload.get("cas_rounds", 0)) + 1
    if rounds > MAX_CAS_ROUNDS:
        fail(session, job, f"compare-and-swap lost {rounds - 1} times in a row", now=now)
        return
    if max(0, int(job.payload["quantity"]) - unseen) == actual:
        # The channel already shows what we want: nothing left to send. The belief never rises
        # above what it is: sales ingested after the channel answered (when the answer is
        # recorded late) lowered it already, and `actual` predates them.
        listing.last_pushed_quantity = min(actual + unseen, believed)
        listing.last_pushed_seq = max(listing.last_pushed_seq, int(job.payload["seq"]))
        complete(session, [job.id], note="channel already at the target after a conflict")
        return
    adjustment: dict[str, Any] = {
        "unseen": unseen,
        "expected": actual,
        "believed": listing.last_pushed_quantity,
        "cas_rounds": rounds,
    }
    # A channel at 0 may have sold more than it could show (some oversell and stop at 0): the
    # unseen sales are then at least `unseen`. Ingesting them later lowers the belief below what
    # the channel holds, and the belief is verified then (see `verify_belief`), never trusted.
    job.payload = {**job.payload, **adjustment}
    if back_to_pending(session, job, run_after=now):
        return
    # A newer target for this listing is pending already: it goes out with what this conflict
    # taught us (the index decided which job is pending; this one ended as superseded).
    newer = session.scalar(
        select(OutboxJob).where(
            OutboxJob.identity_key == job.identity_key, OutboxJob.state == JobState.PENDING
        )
    )
    if newer is not None:
        newer.payload = {**newer.payload, **adjustment}
