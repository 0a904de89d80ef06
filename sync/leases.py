"""Leases in the store: one holder at a time per periodic job, and each scheduled tick run once.

A lease is a row per job name (`leases`): its owner, when it expires and when it was last
renewed. `acquire` takes it when it is free or expired, or renews it for its owner; every
comparison uses the database's clock (PostgreSQL `now()`), so instances whose clocks disagree
still agree on who holds what. A holder that dies stops renewing, and the lease is free again
`ttl` after its last heartbeat.

A lease says who *tries* a job; `claim_tick` decides whether a tick runs. A job's ticks form a
stream in `poll_checkpoints` (stream `tick:<job>`) whose position is the scheduled time of the
last tick claimed: a tick runs only if its holder moves that position forward, in one row-locked
update. So a tick runs at most once even when a lease expired under a slow holder, or a new
holder fires in a tick its predecessor already ran.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sync.models import Lease, PollCheckpoint

FREE = ""  # the owner of a lease released on purpose: free at once, and not a takeover
TICK_STREAM = "tick:{job}"


@dataclass(frozen=True)
class LeaseGrant:
    """A lease this owner holds until `expires_at` (database time), and how it came to hold it."""

    name: str
    expires_at: datetime
    is_new: bool  # taken now rather than renewed
    # Taken from a holder that stopped renewing: who, and how long after its last heartbeat.
    taken_from: str | None = None
    takeover_delay: timedelta | None = None


@dataclass(frozen=True)
class LeaseHeld:
    """A lease someone else holds: when it is free to take (database time)."""

    name: str
    owner: str
    expires_at: datetime


@dataclass(frozen=True)
class TickClaim:
    """Whether this tick is ours to run, and how many ticks before it nobody ran."""

    claimed: bool
    skipped: int = 0


def db_now(session: Session) -> datetime:
    """Now by the database's clock (PostgreSQL), or this process's (SQLite: one process only)."""
    if session.get_bind().dialect.name == "postgresql":
        value = session.scalar(select(func.now()))
        assert isinstance(value, datetime)
        return value.astimezone(UTC)
    return datetime.now(UTC)


def acquire(
    session: Session, name: str, owner: str, ttl: timedelta, now: datetime | None = None
) -> LeaseGrant | LeaseHeld:
    """Take or renew lease `name` for `owner`; answer the grant, or who holds it and until when."""
    now = now or db_now(session)
    values = {
        "name": name,
        "owner": owner,
        "expires_at": now + ttl,
        "acquired_at": now,
        "heartbeat_at": now,
    }
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    created = session.scalar(
        insert(Lease)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[Lease.name])
        .returning(Lease.name)
    )
    if created is not None:
        return LeaseGrant(name, now + ttl, is_new=True)
    # The row lock orders concurrent takers: the second one sees the first one's grant.
    row = session.execute(
        select(Lease.owner, Lease.expires_at, Lease.heartbeat_at)
        .where(Lease.name == name)
        .with_for_update()
    ).one()
    if row.owner != owner and row.expires_at > now:
        return LeaseHeld(name, row.owner, row.expires_at)
    changes = {"owner": owner, "expires_at": now + ttl, "heartbeat_at": now}
    is_new = row.owner != owner
    if is_new:
        changes["acquired_at"] = now
    session.execute(update(Lease).where(Lease.name == name).values(**changes))
    if is_new and row.owner != FREE:
        return LeaseGrant(
            name,
            now + ttl,
            is_new=True,
            taken_from=row.owner,
            takeover_delay=now - row.heartbeat_at,
        )
    return LeaseGrant(name, now + ttl, is_new=is_new)


def release(
    session: Session, names: Iterable[str], owner: str, now: datetime | None = None
) -> None:
    """Give up leases this owner holds, so another instance may take them at once."""
    wanted = list(names)
    if wanted:
        now = now or db_now(session)
        session.execute(
            update(Lease)
            .where(Lease.name.in_(wanted), Lease.owner == owner)
            .values(owner=FREE, expires_at=now, heartbeat_at=now)
        )


def holders(session: Session, names: Iterable[str]) -> dict[str, tuple[str, datetime]]:
    """name -> (owner, expires_at) for the leases that exist."""
    return {
        name: (owner, expires_at)
        for name, owner, expires_at in session.execute(
            select(Lease.name, Lease.owner, Lease.expires_at).where(Lease.name.in_(list(names)))
        )
    }


def claim_tick(
    session: Session,
    *,
    channel_id: int,
    job: str,
    tick_at: datetime,
    interval: timedelta,
    lease: str,
    owner: str,
) -> TickClaim:
    """Claim the tick scheduled at `tick_at` for a job whose lease `owner` holds, at most once.

    Claimed before the job runs: a holder that dies mid-run leaves its tick done, not run twice
    (the job itself is idempotent and resumes from its own checkpoint at the next tick). A lease
    that expired while nobody took it is still its owner's to run: the tick row, not the expiry,
    is what keeps two claimants apart.
    """
    now = db_now(session)
    held = session.scalar(select(Lease.name).where(Lease.name == lease, Lease.owner == owner))
    if held is None:
        return TickClaim(claimed=False)
    stream = TICK_STREAM.format(job=job)
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(
        insert(PollCheckpoint)
        .values(channel_id=channel_id, stream=stream, position_at=None, updated_at=now)
        .on_conflict_do_nothing(index_elements=[PollCheckpoint.channel_id, PollCheckpoint.stream])
    )
    where = (PollCheckpoint.channel_id == channel_id, PollCheckpoint.stream == stream)
    previous = session.scalar(select(PollCheckpoint.position_at).where(*where).with_for_update())
    if previous is not None and previous >= tick_at:
        return TickClaim(claimed=False)
    session.execute(
        update(PollCheckpoint)
        .where(
            *where, or_(PollCheckpoint.position_at.is_(None), PollCheckpoint.position_at < tick_at)
        )
        .values(position_at=tick_at, updated_at=now)
    )
    skipped = 0
    if previous is not None:
        skipped = max(0, round((tick_at - previous) / interval) - 1)
    return TickClaim(claimed=True, skipped=skipped)
