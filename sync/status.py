"""Read models for health: readiness reasons and the per-channel status the admin API shows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from sync.models import Channel, ChannelState, JobState, OutboxJob


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
                state=channel.state.value,
                last_poll_at=channel.last_poll_at,
                lag_s=lag,
                last_error=channel.last_error,
                jobs_pending=pending,
                jobs_dead=counts.get((channel.id, JobState.DEAD), 0),
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
