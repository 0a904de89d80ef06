"""The store side of a channel's stock pushes: one transaction records what landed, then claims.

A drain step of the pusher is one call to `record_and_claim`: the answers of every push that
landed since the last step are recorded as one batch, and as many batches as the channel has free
in-flight slots for are claimed, in the same transaction. Recording locks its listings first and
never waits for them (see `_lock_listings`); a landed push whose listings another transaction
holds is handed back, to be recorded at the next step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from connectors.base import Capabilities, PushOutcome, StockPushResult, StockTarget
from connectors.errors import (
    AuthError,
    ConnectorError,
    PermanentError,
    RateLimitedError,
    UncertainOutcomeError,
)
from sync.models import LANE_CONFIRM, LANE_NORMAL, JobKind, JobState, Listing, OutboxJob, utcnow
from sync.outbox import RetrySchedule, claim, count_due, fail, oldest_due, release
from sync.stock_push import (
    PushBatch,
    PushOutcomeSummary,
    forget_beliefs,
    prepare_batch,
    record_results,
)

log = logging.getLogger(__name__)

AUTH_RETRY_S = 60.0
OUTCOMES = ("applied", "conflicts", "rejected", "retried")


@dataclass
class Landed:
    """A push that came back: the channel's answers, or the error it raised."""

    batch: PushBatch
    results: Sequence[StockPushResult] | None = None
    error: ConnectorError | None = None


@dataclass
class Step:
    """What one store transaction of a channel's drain did."""

    batches: list[PushBatch]
    left: int  # due jobs not claimed (at least 1 when some may remain)
    summary: PushOutcomeSummary
    deferred: list[Landed]  # landed pushes whose listings another transaction held
    # Only confirmations are due, held this many more seconds for a change to ride with.
    hold_s: float | None = None


@dataclass(frozen=True)
class Claimant:
    """One channel as its drain claims for it: who holds the jobs, and how failures retry."""

    channel_id: int
    capabilities: Capabilities
    hold_full: bool
    owner: str
    lease: timedelta
    retry: RetrySchedule
    # Targets per batch given how many are due (`StockClaimSizing`); None: the capabilities'
    # maximum. A channel whose small pushes are one call per listing at a paced rate (Amazon
    # patches, 5/s) claims no more than it can send soon: targets claimed early go out stale
    # and are pushed again, while those still pending take every newer figure for free.
    batch_size: Callable[[int], int] | None = None
    # How long confirmations (LANE_CONFIRM) wait for a change to ride with when nothing else
    # is due (`Coalescing.confirm_hold_s`); 0: they go like any other push.
    confirm_hold_s: float = 0.0
    # How the connector parts a batch into pushes of their own (`StockPushParts`); None: one.
    parts: Callable[[Sequence[StockTarget]], list[list[int]]] | None = None
    # Which pushes the channel takes minutes to land (`SlowStockPushes`); None: none.
    slow: Callable[[Sequence[StockTarget]], bool] | None = None


def record_and_claim(
    session: Session,
    claimant: Claimant,
    landed: Sequence[Landed],
    *,
    free: int,
    send_partial: bool = True,
    urgent_only: bool = False,
) -> Step:
    """Record `landed`, then claim up to `free` batches (only full ones unless `send_partial`;
    with `urgent_only`, one batch if a push to a listing's last units is due, whatever else)."""
    # Recording comes first, and takes its locks before it changes any job.
    ids = [job.payload["listing_id"] for one in landed for job in one.batch.jobs]
    locked = _lock_listings(session, ids) if ids else set()
    summary = PushOutcomeSummary()
    ours: list[Landed] = []
    deferred: list[Landed] = []
    for one in landed:
        mine, theirs = _split(one, locked)
        ours += [mine] if mine is not None else []
        deferred += [theirs] if theirs is not None else []
    # Every answered push of the step is recorded as one batch: one pass, not one each.
    answered = [one for one in ours if one.error is None]
    failed = [one for one in ours if one.error is not None]
    for one in ([_merge(answered)] if answered else []) + failed:
        done = _record(session, one, claimant.retry, claimant.owner)
        for name in OUTCOMES:
            setattr(summary, name, getattr(summary, name) + getattr(done, name))
    if urgent_only:
        return Step(_claim_urgent(session, claimant), 1, summary, deferred)
    batches, left, hold_s = _claim(session, claimant, free=free, send_partial=send_partial)
    return Step(batches, left, summary, deferred, hold_s=hold_s)


def _confirmations_held(session: Session, claimant: Claimant) -> float | None:
    """When only confirmations are due: the seconds they wait yet, if the oldest of them has
    waited less than the claimant's `confirm_hold_s`; else None.

    A confirmation repeats what the channel should show already (after its own sale, which it
    counted itself): alone, it would cost a call per sale of the channel, as many as every
    other channel's sales need together. Held, it rides in the next call a change makes, or
    goes with the others held beside it; it is never a listing's last units (those are
    pushed at once: see `push_lane`)."""
    if claimant.confirm_hold_s <= 0:
        return None
    oldest = oldest_due(session, claimant.channel_id, JobKind.STOCK, LANE_CONFIRM)
    if oldest is None:
        return None
    left = claimant.confirm_hold_s - (utcnow() - oldest).total_seconds()
    return left if left > 0 else None


def _claim_urgent(session: Session, claimant: Claimant) -> list[PushBatch]:
    """One batch if a push to a listing's last units is due.

    Where one call carries the batch, company fills it (the last units first, in claim
    order): a channel at its rate limit loses a call's room to a batch sent short. A channel
    that sizes its claims because each listing is a call of its own (Amazon's patches) sends
    the last units alone: company would keep the extra slot busy for seconds.
    """
    size = max(1, claimant.capabilities.max_stock_batch)
    due_jobs = count_due(session, claimant.channel_id, JobKind.STOCK, size + 1)
    urgent = due_jobs.before(LANE_NORMAL)
    if not urgent:
        return []
    if claimant.batch_size is None:
        batches, _ = _take(session, claimant, size, size)
    else:
        size = max(1, min(size, claimant.batch_size(urgent)))
        batches, _ = _take(session, claimant, min(urgent, size), size, below_lane=LANE_NORMAL)
    return batches


def _claim(
    session: Session, claimant: Claimant, *, free: int, send_partial: bool
) -> tuple[list[PushBatch], int, float | None]:
    """Claim up to `free` batches; answer them, how many due jobs were left behind, and how
    long the confirmations left wait yet when nothing else is due (else None)."""
    caps = claimant.capabilities
    size = max(1, caps.max_stock_batch)
    if free <= 0:
        return [], 1, None  # unknown: the step after the next landing asks again
    # One count for every figure below; its limit covers the largest `wanted + 1`.
    due_jobs = count_due(session, claimant.channel_id, JobKind.STOCK, free * size + 1)
    if claimant.batch_size is not None:
        size = max(1, min(size, claimant.batch_size(due_jobs.total)))
    wanted = free * size
    due = wanted
    # A push to a listing's last units (LANE_SOLD_OUT, LANE_SCARCE) does not wait for company:
    # the next buyer of that listing on this channel is the one it would oversell.
    send_partial = send_partial or due_jobs.before(LANE_NORMAL) > 0
    # Confirmations (LANE_CONFIRM) never fill a batch that goes early: they ride in the room a
    # batch leaves when it goes, and alone they wait (`_confirmations_held`). Where each
    # listing is a call of its own (Amazon's patches, 5 a second), they ride in no call while
    # held: one would take a call, and the rate limit's token, from the next change.
    changes = due_jobs.before(LANE_CONFIRM)
    per_listing = size <= 1 or (claimant.batch_size is not None and size < caps.max_stock_batch)
    held = None
    if due_jobs.total > changes and (per_listing or (send_partial and not changes)):
        held = _confirmations_held(session, claimant)
    if not send_partial:
        due = min(due_jobs.total, wanted + 1)
        wanted = 0 if claimant.hold_full else min(wanted, changes // size * size)
        if not wanted:
            return [], due, None
    elif held is not None and not changes:
        return [], due_jobs.total, held
    below = LANE_CONFIRM if per_listing and held is not None else None
    batches, taken = _take(session, claimant, wanted, size, below_lane=below)
    if taken is None:
        return batches, 0, None
    return batches, (1 if send_partial else max(1, due - taken)), None


def _take(
    session: Session,
    claimant: Claimant,
    wanted: int,
    size: int,
    *,
    below_lane: int | None = None,
) -> tuple[list[PushBatch], int | None]:
    """Claim `wanted` jobs in batches of `size`; answer them and how many jobs were taken, or
    None when fewer than wanted were due (every due job taken)."""
    jobs: list[OutboxJob] = []
    targets: list[StockTarget] = []
    taken: int | None = 0
    while taken is not None and len(jobs) < wanted:
        # Jobs a newer push already overtook are dropped unsent: claim again for the rest.
        asked = wanted - len(jobs)
        claimed = claim(
            session,
            channel_id=claimant.channel_id,
            kinds=[JobKind.STOCK],
            limit=asked,
            owner=claimant.owner,
            lease=claimant.lease,
            below_lane=below_lane,
        )
        if claimed:
            compare = claimant.capabilities.supports_compare_and_swap
            batch = prepare_batch(session, claimed, compare_and_swap=compare)
            jobs += batch.jobs
            targets += batch.targets
        taken = taken + len(claimed) if len(claimed) == asked else None
    batches = [
        part
        for i in range(0, len(jobs), size)
        for part in _parted(claimant, jobs[i : i + size], targets[i : i + size])
    ]
    return batches, taken


def _parted(
    claimant: Claimant, jobs: list[OutboxJob], targets: list[StockTarget]
) -> list[PushBatch]:
    """One batch's jobs as the pushes the connector sends them in (`StockPushParts`), the jobs
    of a slow one marked overtakable (`SlowStockPushes`)."""
    if claimant.parts is None or len(targets) <= 1:
        batches = [PushBatch(jobs=jobs, targets=targets, stale=[])]
    else:
        parts = [part for part in claimant.parts(targets) if part]
        if sorted(i for part in parts for i in part) != list(range(len(targets))):
            raise ValueError(
                f"{claimant.channel_id}: stock_push_parts must place every target once"
            )
        batches = [
            PushBatch(jobs=[jobs[i] for i in part], targets=[targets[i] for i in part], stale=[])
            for part in parts
        ]
    if claimant.slow is not None:
        for batch in batches:
            if batch.targets and claimant.slow(batch.targets):
                for job in batch.jobs:
                    job.overtakable = True
    return batches


def _record(
    session: Session, landed: Landed, retry: RetrySchedule, owner: str
) -> PushOutcomeSummary:
    # Reload the claimed rows in this transaction (one query); the claim's session is closed.
    ids = [job.id for job in landed.batch.jobs]
    rows = {job.id: job for job in session.scalars(select(OutboxJob).where(OutboxJob.id.in_(ids)))}
    lost = [
        i
        for i, job in enumerate(landed.batch.jobs)
        if not _still_ours(rows.get(job.id), job, owner)
    ]
    if lost:
        _unsettle(session, [landed.batch.jobs[i] for i in lost])
        mine = [i for i in range(len(ids)) if i not in set(lost)]
        if not mine:
            return PushOutcomeSummary(retried=len(lost))
        landed = _part(landed, mine)
        ids = [job.id for job in landed.batch.jobs]
    jobs = [rows[i] for i in ids]
    if landed.error is not None:
        return _fail_batch(session, jobs, landed.error, retry)
    # Targets the channel held back unsent (eBay: a listing's daily revisions) wait as long as
    # it says, their tries uncounted; the rest are recorded as answered.
    held = {
        r.listing_ref: r
        for r in landed.results or []
        if r.outcome is PushOutcome.RETRY and r.retry_after is not None
    }
    pairs = list(zip(jobs, landed.batch.targets, strict=True))
    for job, target in pairs:
        if (hold := held.get(target.listing_ref)) is not None:
            _defer(session, job, hold.error or "held back by the channel", hold.retry_after)
    kept = [(job, target) for job, target in pairs if target.listing_ref not in held]
    fresh = PushBatch(jobs=[j for j, _ in kept], targets=[t for _, t in kept], stale=[])
    summary = record_results(session, fresh, landed.results or [], schedule=retry)
    summary.retried += len(pairs) - len(kept)
    return summary


def _still_ours(row: OutboxJob | None, claimed: OutboxJob, owner: str) -> bool:
    """True while the job is running under the claim that sent this push. A call can outlast
    its lease (a timeout plus the connector's retries): the job was then reaped, and it, or a
    newer target for its listing, claimed and perhaps pushed and recorded since. This answer
    may have reached the channel after that newer one, so it must not be recorded as the
    channel's figure, nor settle a job that is no longer ours."""
    return (
        row is not None
        and row.state is JobState.RUNNING
        and row.lease_owner == owner
        and row.attempts == claimed.attempts
    )


def _unsettle(session: Session, jobs: Sequence[OutboxJob]) -> None:
    """A push answered after its claim was lost: what the channel shows is unknown (this late
    write may have landed over a newer one), so forget the belief and plan the listing again;
    the next push is a plain set of the current figure."""
    listing_ids = [job.payload["listing_id"] for job in jobs]
    forget_beliefs(session, listing_ids)
    session.execute(update(Listing).where(Listing.id.in_(listing_ids)).values(is_dirty=True))
    log.warning(
        "%d stock push(es) answered after their lease ran out; re-planning those listings",
        len(jobs),
    )


def _defer(session: Session, job: OutboxJob, reason: str, retry_after: float | None) -> None:
    """Give a job back for later without counting the try: a hold, not a failure."""
    job.last_error = reason[:2000]
    release(session, job, run_after=utcnow() + timedelta(seconds=retry_after or 0.0))


def _fail_batch(
    session: Session, jobs: Sequence[OutboxJob], exc: ConnectorError, retry: RetrySchedule
) -> PushOutcomeSummary:
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(exc, RateLimitedError):
        # A hold, not a failure: the channel (or our pacing of its daily quota) said to wait,
        # and nothing was refused. The jobs go back for when it allows, their tries uncounted,
        # so a day's quota held back does not kill them.
        wait = retry_after if retry_after is not None else retry.base_s
        for job in jobs:
            _defer(session, job, f"{type(exc).__name__}: {exc}", wait)
        return PushOutcomeSummary(retried=len(jobs))
    permanent = isinstance(exc, PermanentError)
    if isinstance(exc, AuthError):
        retry_after = AUTH_RETRY_S
    if isinstance(exc, UncertainOutcomeError):
        # The channel may hold the new figures or the old: we no longer know. Forget the
        # belief, so the retry is a plain set, not a compare-and-swap that would read our
        # own applied push as units sold.
        forget_beliefs(session, [job.payload["listing_id"] for job in jobs])
    for job in jobs:
        if isinstance(exc, UncertainOutcomeError):
            job.payload = {k: v for k, v in job.payload.items() if k != "expected"}
        fail(
            session,
            job,
            f"{type(exc).__name__}: {exc}",
            retry_after=retry_after,
            permanent=permanent,
            schedule=retry,
        )
    return PushOutcomeSummary(retried=0 if permanent else len(jobs))


def _lock_listings(session: Session, listing_ids: Sequence[int]) -> set[int]:
    """Lock the listings a recording writes, skipping those another transaction holds.

    Before anything else is written, and never waiting: ingest holds its listings (in an order
    of its own) until it commits, and the planner holds dirty ones while its enqueues wait on
    jobs this transaction changed. Waiting for either could close a cycle (PostgreSQL finds a
    deadlock only after a second); the pushes of listings held elsewhere are recorded at the
    next step instead. SQLite has one writer at a time: everything is ours.
    """
    if session.get_bind().dialect.name != "postgresql":
        return set(listing_ids)
    return set(
        session.scalars(
            select(Listing.id)
            .where(Listing.id.in_(listing_ids))
            .order_by(Listing.id)
            .with_for_update(skip_locked=True)
        )
    )


def _merge(answered: Sequence[Landed]) -> Landed:
    """Answered pushes of one channel as one: a listing is in one of them at most."""
    return Landed(
        PushBatch(
            jobs=[job for one in answered for job in one.batch.jobs],
            targets=[target for one in answered for target in one.batch.targets],
            stale=[],
        ),
        results=[result for one in answered for result in one.results or []],
    )


def _split(landed: Landed, locked: set[int]) -> tuple[Landed | None, Landed | None]:
    """The part of a landed push whose listings are locked, and the rest (None when empty)."""
    parts: tuple[list[int], list[int]] = ([], [])
    for index, job in enumerate(landed.batch.jobs):
        parts[job.payload["listing_id"] not in locked].append(index)
    ours, theirs = (_part(landed, part) if part else None for part in parts)
    return ours, theirs


def _part(landed: Landed, indexes: Sequence[int]) -> Landed:
    targets = [landed.batch.targets[i] for i in indexes]
    refs = {target.listing_ref for target in targets}
    results = None
    if landed.results is not None:
        results = [result for result in landed.results if result.listing_ref in refs]
    jobs = [landed.batch.jobs[i] for i in indexes]
    return Landed(PushBatch(jobs=jobs, targets=targets, stale=[]), results, landed.error)
