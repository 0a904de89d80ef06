"""Running one channel job (poll or reconcile): its outcome recorded, failures backed off.

The scheduler decides when a job runs; this module runs it once and keeps what the next run
needs to know. A success resets the job; refused credentials mark the channel auth-failed
everywhere (`ChannelHealth`) and only the poll job re-checks them, every `auth_recheck_s`;
any other failure degrades the channel and backs the job off (capped exponential with jitter,
never sooner than the channel's retry-after, which then holds every job of that channel).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.errors import AuthError, ConnectorError, RetryableError
from sync.db import Database
from sync.health import ChannelHealth
from sync.metrics import Metrics
from sync.polling import PollChannel, call_channel, poll_orders, record_job_failure, record_poll_ok
from sync.reconcile import reconcile

log = logging.getLogger(__name__)


class JobName(enum.StrEnum):
    """The periodic jobs every channel has."""

    POLL = "poll"
    RECONCILE = "reconcile"


@dataclass(frozen=True)
class SchedulerSettings:
    """Periods and limits of the scheduled jobs (from the main file's `[schedules]`)."""

    heartbeat_s: float = 10.0
    lease_ttl_s: float = 20.0
    outbox_interval_s: float = 1.0
    reconcile_overlap_s: float = 3600.0
    initial_lookback_s: float = 30 * 86400.0
    auth_recheck_s: float = 300.0
    max_start_jitter_s: float = 5.0
    backoff_cap_s: float = 900.0


@dataclass(frozen=True)
class ScheduledChannel:
    """A channel with its connector and its periods."""

    channel: PollChannel
    poll_interval_s: float
    reconcile_interval_s: float

    @property
    def name(self) -> str:
        """The channel's name."""
        return self.channel.name


class ChannelAuthFailedError(Exception):
    """The channel's credentials are refused, and the check just made refused them again."""


@dataclass
class ChannelJob:
    """One periodic job of one channel, and what this instance knows of its recent runs."""

    channel: ScheduledChannel
    kind: JobName
    interval: timedelta
    offset_s: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    failures: int = 0
    not_before: datetime | None = None
    recheck_at: datetime | None = None
    is_fired_again: bool = False
    # `Scheduler.sync_now` callers waiting for the lock: a busy job's loop of re-fired runs
    # gives way to them instead of holding the lock run after run.
    syncs_waiting: int = 0
    last_result: dict[str, Any] | None = None  # the answer of this instance's last run

    @property
    def lease(self) -> str:
        """The job's lease (and name): `<channel>:<job>`."""
        return f"{self.channel.name}:{self.kind.value}"


class JobRunner:
    """Runs channel jobs for one instance; `jobs` are every job it schedules, by lease name."""

    def __init__(
        self,
        db: Database,
        jobs: Mapping[str, ChannelJob],
        settings: SchedulerSettings,
        *,
        health: ChannelHealth,
        metrics: Metrics | None,
        clock: Callable[[], datetime],
        wake: Callable[[], None],
        rng: random.Random,
        is_stopping: Callable[[], bool],
    ) -> None:
        self.db = db
        self.jobs = jobs
        self.settings = settings
        self.health = health
        self.metrics = metrics
        self._clock = clock
        self._wake = wake
        self._rng = rng
        self._is_stopping = is_stopping

    async def execute(self, job: ChannelJob) -> dict[str, Any]:
        """Run the job body once; record success, failure or refused credentials."""
        result = await self._execute(job)
        job.last_result = result  # a new object each run: a waiter tells a run ended by it
        return result

    async def _execute(self, job: ChannelJob) -> dict[str, Any]:
        name = job.channel.name
        channel = job.channel.channel
        started = self._clock()
        try:
            if not self.health.is_callable(name) and not await self.recheck(job):
                return {"ok": False, "error": "credentials refused"}
            if job.kind is JobName.POLL:
                polled = await poll_orders(
                    self.db,
                    channel,
                    initial_since=self._initial_since(),
                    metrics=self.metrics,
                    on_change=self._wake,
                    should_stop=self._is_stopping,
                )
                at = datetime.now(UTC)
                if polled.is_complete:
                    await asyncio.to_thread(
                        self.db.transact, lambda s: record_poll_ok(s, channel.ref.id, at)
                    )
                result = polled.to_json()
            else:
                reconciled = await reconcile(
                    self.db,
                    channel,
                    overlap=timedelta(seconds=self.settings.reconcile_overlap_s),
                    initial_since=self._initial_since(),
                    metrics=self.metrics,
                    on_change=self._wake,
                    should_stop=self._is_stopping,
                )
                result = reconciled.to_json()
        except AuthError as exc:
            await asyncio.to_thread(self.health.record_auth_failure, name, str(exc))
            job.recheck_at = started + timedelta(seconds=self.settings.auth_recheck_s)
            self._count_run(job, "auth_failed")
            return {"ok": False, "error": str(exc)}
        except Exception as exc:
            # The supervisor: a channel or store failure backs this job off, never ends it.
            reason = str(exc) if isinstance(exc, ConnectorError) else type(exc).__name__
            retry_in = self._back_off(job, started, exc)
            await asyncio.to_thread(
                self.db.transact, lambda s: record_job_failure(s, channel.ref.id, reason)
            )
            self._count_run(job, "failed")
            if job.failures == 1:
                log.warning(
                    "%s failed: %s; next try in %.1f s or later", job.lease, reason, retry_in
                )
            else:
                log.debug("%s failed again (%d): %s", job.lease, job.failures, reason)
            if not isinstance(exc, ConnectorError):
                log.debug("%s failure detail", job.lease, exc_info=exc)
            return {"ok": False, "error": reason, "retry_in_s": round(retry_in, 3)}
        if job.failures:
            log.info("%s works again after %d failure(s)", job.lease, job.failures)
        job.failures = 0
        job.not_before = None
        self._count_run(job, "ok")
        return {"ok": True, **result}

    async def recheck(self, job: ChannelJob) -> bool:
        """The slow credentials check of an auth-failed channel; True when they work again."""
        now = self._clock()
        job.recheck_at = now + timedelta(seconds=self.settings.auth_recheck_s)
        connector = job.channel.channel.connector
        try:
            await call_channel(
                job.channel.channel, "check_connection", self.metrics, connector.check_connection()
            )
        except ConnectorError as exc:
            log.debug("%s: credentials still refused: %s", job.channel.name, exc)
            return False
        await asyncio.to_thread(self.health.record_auth_ok, job.channel.name)
        job.recheck_at = None
        return True

    def _back_off(self, job: ChannelJob, now: datetime, exc: Exception) -> float:
        job.failures += 1
        ceiling = min(
            self.settings.backoff_cap_s,
            job.interval.total_seconds() * 2 ** min(job.failures - 1, 20),
        )
        delay = self._rng.uniform(ceiling / 2, ceiling)
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
            # The channel asked us to wait: none of its jobs calls it before then.
            until = now + timedelta(seconds=exc.retry_after)
            for other in self.jobs.values():
                if other.channel is job.channel and (
                    other.not_before is None or other.not_before < until
                ):
                    other.not_before = until
        job.not_before = now + timedelta(seconds=delay)
        return delay

    def _count_run(self, job: ChannelJob, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.scheduled_runs.labels(job.channel.name, job.kind.value, outcome).inc()

    def _initial_since(self) -> datetime:
        return datetime.now(UTC) - timedelta(seconds=self.settings.initial_lookback_s)
