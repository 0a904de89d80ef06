"""Read models for health: readiness reasons and the per-channel status the admin API shows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from sync.budgets import budget_statuses
from sync.listing_coverage import coverage
from sync.models import Channel, ChannelState, Event, JobState, OutboxJob


@dataclass(frozen=True)
class ChannelStatus:
    """What an operator needs to know about one channel at a glance."""

    name: str
    kind: str
    state: str
    last_poll_at: datetime | None
    lag_s: float | None
    last_error: str | None
    jobs_pending: int
    jobs_dead: int
    last_dead_reason: str | None = None  # the newest dead job's error: the channel's reason
    orders_today: int = 0  # orders first stored since midnight UTC
    # Channels metering daily budgets (eBay): quota used/limit per API, listings near the
    # daily revision limit (sync/budgets.py); None for the others.
    budgets: dict[str, Any] | None = None
    # Listings bound, our SKUs the channel lacks, its SKUs we do not know (last reconcile).
    listings: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form, times as ISO 8601."""
        data = asdict(self)
        data["last_poll_at"] = self.last_poll_at.isoformat() if self.last_poll_at else None
        return data


def channel_statuses(session: Session, now: datetime) -> list[ChannelStatus]:
    """Every channel in the store with its health, lag and job counts."""
    counts: dict[tuple[int, JobState], int] = {
        (channel_id, state): n
        for channel_id, state, n in session.execute(
            select(OutboxJob.channel_id, OutboxJob.state, func.count())
            .where(OutboxJob.state.in_([JobState.PENDING, JobState.RUNNING, JobState.DEAD]))
            .group_by(OutboxJob.channel_id, OutboxJob.state)
        )
    }
    newest_dead = (
        select(func.max(OutboxJob.id))
        .where(OutboxJob.state == JobState.DEAD)
        .group_by(OutboxJob.channel_id)
    )
    dead_reasons: dict[int, str | None] = dict(
        session.execute(
            select(OutboxJob.channel_id, OutboxJob.last_error).where(OutboxJob.id.in_(newest_dead))
        ).all()
    )
    today = _orders_today(session, now)
    throttled = _throttled_channels(session)
    budgets = budget_statuses(session, now)
    statuses = []
    for channel in session.scalars(select(Channel).order_by(Channel.name)):
        pending = counts.get((channel.id, JobState.PENDING), 0) + counts.get(
            (channel.id, JobState.RUNNING), 0
        )
        lag = (now - channel.last_poll_at).total_seconds() if channel.last_poll_at else None
        statuses.append(
            ChannelStatus(
                name=channel.name,
                kind=channel.kind,
                state=effective_state(
                    channel.state,
                    has_dead_jobs=bool(counts.get((channel.id, JobState.DEAD))),
                    is_throttled=channel.id in throttled,
                ),
                last_poll_at=channel.last_poll_at,
                lag_s=lag,
                last_error=channel.last_error,
                jobs_pending=pending,
                jobs_dead=counts.get((channel.id, JobState.DEAD), 0),
                last_dead_reason=dead_reasons.get(channel.id),
                orders_today=today.get(channel.id, 0),
                budgets=budgets.get(channel.id),
                listings=coverage(session, channel.id).to_json(),
            )
        )
    return statuses


def readiness_problems(session: Session, enabled_channels: set[str]) -> list[str]:
    """Reasons the daemon is not ready; empty when it is."""
    session.execute(text("SELECT 1"))
    failed = session.scalars(
        select(Channel.name).where(Channel.state == ChannelState.AUTH_FAILED).order_by(Channel.name)
    ).all()
    return [f"channel {name}: authentication failed" for name in failed if name in enabled_channels]


# Scheduling's part of the status (sync/scheduler.py writes the channel's state and last poll).


def effective_state(stored: ChannelState, *, has_dead_jobs: bool, is_throttled: bool) -> str:
    """ok, degraded (last poll or reconcile failed, dead jobs, throttled now), auth_failed or
    disabled: what an operator should read, from the stored state and the outbox."""
    if stored is ChannelState.OK and (has_dead_jobs or is_throttled):
        return ChannelState.DEGRADED.value
    return stored.value


def _orders_today(session: Session, now: datetime) -> dict[int, int]:
    # Every order's first ingest writes one `order.created` event; `at` is indexed.
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        channel_id: n
        for channel_id, n in session.execute(
            select(Event.channel_id, func.count())
            .where(Event.at >= midnight, Event.kind == "order.created")
            .group_by(Event.channel_id)
        )
        if channel_id is not None
    }


def _throttled_channels(session: Session) -> set[int]:
    # A stock or status job waiting out a channel's rate limit (outbox.fail keeps the error name).
    return set(
        session.scalars(
            select(OutboxJob.channel_id)
            .where(
                OutboxJob.state == JobState.PENDING,
                OutboxJob.last_error.like("RateLimitedError%"),
            )
            .distinct()
        )
    )
