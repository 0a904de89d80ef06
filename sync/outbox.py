"""Durable jobs: written with their cause, claimed under a lease, retried with jitter, or dead.

A job's identity key says what it is about (`stock:<listing id>`, `shipment:<id>`): at most one
job per identity is pending, and enqueueing again replaces the pending payload, so a newer stock
target overwrites an older one that has not been sent. A claimed job is `running` until its lease
expires; a worker that dies leaves it to be claimed again after that. PostgreSQL claims with
`FOR UPDATE SKIP LOCKED`, so several instances never take the same job.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, text, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from sync.models import (
    LANE_NORMAL,
    JobKind,
    JobState,
    Listing,
    OutboxJob,
    utcnow,
)


@dataclass(frozen=True)
class RetrySchedule:
    """Full-jitter exponential backoff between tries, and when to give up."""

    max_attempts: int = 12
    base_s: float = 1.0
    cap_s: float = 600.0

    def delay(self, attempts: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds before the next try: jittered, never sooner than the channel asked."""
        ceiling = min(self.cap_s, self.base_s * 2 ** max(0, attempts - 1))
        return max(retry_after or 0.0, rng.uniform(0, ceiling))


_rng = random.Random()


def enqueue(
    session: Session,
    *,
    channel_id: int,
    kind: JobKind,
    identity_key: str,
    payload: dict[str, Any],
    now: datetime | None = None,
) -> None:
    """Add a pending job, or replace the payload of the pending job with the same identity
    (which keeps its place in the queue, or becomes due now if it was waiting for a retry)."""
    enqueue_many(session, channel_id=channel_id, kind=kind, jobs=[(identity_key, payload)], now=now)


def enqueue_many(
    session: Session,
    *,
    channel_id: int,
    kind: JobKind,
    jobs: Sequence[tuple[str, dict[str, Any]]],
    now: datetime | None = None,
    lanes: Mapping[str, int] | None = None,
) -> None:
    """`enqueue` for several (identity key, payload) jobs at once, in one statement run over
    all their rows: a planning round of thousands of jobs holds the write lock for the time of
    one executemany, not of thousands of statements built one by one. Identity keys must be
    distinct within one call. `lanes` maps identity keys to their lane (`LANE_*`); the others
    go in the normal one (a replaced job takes the lane of its new payload)."""
    if not jobs:
        return
    now = now or utcnow()
    rows = [
        {
            "channel_id": channel_id,
            "kind": kind,
            "identity_key": identity_key,
            "payload": payload,
            "state": JobState.PENDING,
            "attempts": 0,
            "lane": (lanes or {}).get(identity_key, LANE_NORMAL),
            "run_after": now,
            "created_at": now,
            "updated_at": now,
        }
        for identity_key, payload in jobs
    ]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    earliest = func.least if dialect == "postgresql" else func.min  # SQLite's scalar min()
    stmt = insert(OutboxJob)
    stmt = stmt.on_conflict_do_update(
        index_elements=[OutboxJob.identity_key],
        # A literal predicate: PostgreSQL matches it to the partial unique index only as written
        # there, and psycopg's prepared statements would otherwise send it as a parameter.
        index_where=text("state = 'pending'"),
        set_={
            "payload": stmt.excluded.payload,
            "attempts": 0,
            # A replaced job keeps its place in the queue (a job in back-off is due now): when
            # it went to the back, a listing that kept selling on a rate-limited channel
            # (Amazon, 5 updates/s) waited behind every quieter one, again at each sale.
            "run_after": earliest(OutboxJob.run_after, stmt.excluded.run_after),
            "lane": stmt.excluded.lane,
            "updated_at": stmt.excluded.updated_at,
            "last_error": None,
        },
    )
    session.execute(stmt, rows)


def back_to_pending(session: Session, job: OutboxJob, *, run_after: datetime) -> bool:
    """Make a job pending again; if a job for the same identity is already pending, it ends.

    The one-pending-per-identity index decides, inside a savepoint: a look-then-write would race
    with a planner committing a newer target in between (PostgreSQL, READ COMMITTED). The newer
    job wins; this one is marked done as superseded. Answers whether this job is pending.
    """
    session.flush()
    try:
        with session.begin_nested():
            job.state = JobState.PENDING
            job.run_after = run_after
            job.lease_owner = None
            job.lease_until = None
            session.flush()
    except IntegrityError:
        job.state = JobState.DONE
        job.lease_owner = None
        job.lease_until = None
        job.last_error = f"superseded by a newer job; last error: {job.last_error or 'none'}"[:2000]
        session.flush()
        return False
    return True


def reap_expired(session: Session, now: datetime) -> int:
    """Free jobs whose worker died: back to pending, or superseded when a newer one is pending."""
    expired = session.scalars(
        select(OutboxJob)
        .where(OutboxJob.state == JobState.RUNNING, OutboxJob.lease_until < now)
        .with_for_update(skip_locked=True)
    ).all()
    if not expired:
        return 0
    pending_keys = set(
        session.scalars(
            select(OutboxJob.identity_key).where(
                OutboxJob.state == JobState.PENDING,
                OutboxJob.identity_key.in_([j.identity_key for j in expired]),
            )
        )
    )
    for job in expired:
        job.lease_owner = None
        job.lease_until = None
        if job.identity_key in pending_keys:
            job.state = JobState.DONE
            job.last_error = "superseded by a newer job after its worker's lease expired"
        elif back_to_pending(session, job, run_after=now):
            pending_keys.add(job.identity_key)
    session.flush()
    return len(expired)


def claim(
    session: Session,
    *,
    channel_id: int,
    kinds: Sequence[JobKind],
    limit: int,
    owner: str,
    lease: timedelta,
    now: datetime | None = None,
    below_lane: int | None = None,
) -> list[OutboxJob]:
    """Take up to `limit` due jobs of one channel under a lease, lane by lane (sold out,
    scarce, normal, confirmations: see LANE_SOLD_OUT and the rest), oldest first within a lane;
    with `below_lane`, only jobs in the lanes before it.

    A job whose identity already has a running job waits: two pushes for one listing in flight
    at once could arrive in either order, and the older must never land last. One exception: a
    job in a lane before LANE_NORMAL (a listing's last units) goes beside a running job marked
    `overtakable` (a push the channel takes minutes to land), which pushes the listing's newest
    figure again once it lands (`stock_push.record_results`). Only one may overtake at a time:
    the overtaking job is not overtakable itself.
    """
    now = now or utcnow()
    reap_expired(session, now)
    running = aliased(OutboxJob)
    jobs = session.scalars(
        select(OutboxJob)
        .where(
            OutboxJob.channel_id == channel_id,
            OutboxJob.kind.in_(kinds),
            OutboxJob.state == JobState.PENDING,
            OutboxJob.run_after <= now,
            OutboxJob.lane < below_lane if below_lane is not None else true(),
            ~exists().where(
                and_(
                    running.identity_key == OutboxJob.identity_key,
                    running.state == JobState.RUNNING,
                    or_(running.overtakable.is_(False), OutboxJob.lane >= LANE_NORMAL),
                )
            ),
        )
        .order_by(OutboxJob.lane, OutboxJob.run_after, OutboxJob.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for job in jobs:
        job.state = JobState.RUNNING
        job.lease_owner = owner
        job.lease_until = now + lease
        job.attempts += 1
        job.overtakable = False  # the claimant marks the jobs of a slow push
        job.updated_at = now
    session.flush()
    return list(jobs)


def complete(session: Session, job_ids: Sequence[int], *, note: str | None = None) -> None:
    """Mark jobs done."""
    if job_ids:
        session.execute(
            update(OutboxJob)
            .where(OutboxJob.id.in_(job_ids))
            .values(
                state=JobState.DONE,
                lease_owner=None,
                lease_until=None,
                last_error=note,
                updated_at=utcnow(),
            )
        )


def fail(
    session: Session,
    job: OutboxJob,
    error: str,
    *,
    retry_after: float | None = None,
    permanent: bool = False,
    schedule: RetrySchedule = RetrySchedule(),
    now: datetime | None = None,
) -> JobState:
    """Record a failed try: schedule the next one, or give up (dead) with the channel's reason."""
    now = now or utcnow()
    job.last_error = error[:2000]
    job.lease_owner = None
    job.lease_until = None
    job.updated_at = now
    if permanent or job.attempts >= schedule.max_attempts:
        job.state = JobState.DEAD
        session.flush()
        return job.state
    # A newer job may have been enqueued for the same identity while this one ran: it wins.
    delay = timedelta(seconds=schedule.delay(job.attempts, retry_after, _rng))
    back_to_pending(session, job, run_after=now + delay)
    return job.state


def release(session: Session, job: OutboxJob, *, run_after: datetime) -> None:
    """Give a claimed job back untried (its channel cannot be called now), not counting the try."""
    job.attempts = max(0, job.attempts - 1)
    back_to_pending(session, job, run_after=run_after)


def requeue_dead(session: Session, job_id: int) -> OutboxJob | None:
    """Put a dead job back to pending with a fresh count of tries; None if it is not dead."""
    job = session.get(OutboxJob, job_id, with_for_update=True)
    if job is None or job.state != JobState.DEAD:
        return None
    pending = session.scalar(
        select(func.count())
        .select_from(OutboxJob)
        .where(OutboxJob.identity_key == job.identity_key, OutboxJob.state == JobState.PENDING)
    )
    if pending:
        # A newer job for the same thing is already waiting; the dead one is history.
        return None
    job.attempts = 0
    job.updated_at = utcnow()
    return job if back_to_pending(session, job, run_after=utcnow()) else None


def list_jobs(
    session: Session,
    *,
    state: JobState | None = None,
    channel_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[OutboxJob]:
    """Jobs, newest first, optionally filtered by state and channel."""
    query = select(OutboxJob).order_by(OutboxJob.id.desc()).limit(limit).offset(offset)
    if state is not None:
        query = query.where(OutboxJob.state == state)
    if channel_id is not None:
        query = query.where(OutboxJob.channel_id == channel_id)
    return list(session.scalars(query))


@dataclass(frozen=True)
class DueJobs:
    """The lanes of a channel's first due jobs of one kind, in claim order (lane first)."""

    by_lane: Mapping[int, int]

    @property
    def total(self) -> int:
        """How many were counted (at most the limit asked)."""
        return sum(self.by_lane.values())

    def before(self, lane: int) -> int:
        """How many of them are in the lanes before `lane` (exact up to the limit)."""
        return sum(count for each, count in self.by_lane.items() if each < lane)


def count_due(session: Session, channel_id: int, kind: JobKind, limit: int) -> DueJobs:
    """Count, lane by lane, the first `limit` of a channel's jobs of one kind that are due now,
    in claim order: one query, however many lanes the caller weighs."""
    due = (
        select(OutboxJob.lane)
        .where(
            OutboxJob.channel_id == channel_id,
            OutboxJob.kind == kind,
            OutboxJob.state == JobState.PENDING,
            OutboxJob.run_after <= utcnow(),
        )
        .order_by(OutboxJob.lane)
        .limit(limit)
        .subquery()
    )
    rows = session.execute(select(due.c.lane, func.count()).group_by(due.c.lane))
    return DueJobs({int(lane): int(count) for lane, count in rows})


def oldest_due(session: Session, channel_id: int, kind: JobKind, lane: int) -> datetime | None:
    """When the oldest of a channel's due jobs of one kind in `lane` was first enqueued (a
    replaced job keeps the time of the one it replaced); None when none is due."""
    return session.scalar(
        select(func.min(OutboxJob.created_at)).where(
            OutboxJob.channel_id == channel_id,
            OutboxJob.kind == kind,
            OutboxJob.state == JobState.PENDING,
            OutboxJob.lane == lane,
            OutboxJob.run_after <= utcnow(),
        )
    )


def has_open_work(session: Session, channel_ids: Sequence[int]) -> bool:
    """True while these channels have dirty listings or stock jobs not yet done or dead."""
    if not channel_ids:
        return False
    open_job = session.scalar(
        select(OutboxJob.id)
        .where(
            OutboxJob.channel_id.in_(channel_ids),
            OutboxJob.state.in_([JobState.PENDING, JobState.RUNNING]),
        )
        .limit(1)
    )
    dirty = session.scalar(
        select(Listing.id)
        .where(Listing.channel_id.in_(channel_ids), Listing.is_dirty.is_(True))
        .limit(1)
    )
    return open_job is not None or dirty is not None
