"""Periodic jobs per channel (poll, reconcile) under leases, and the outbox wake-up.

Every instance schedules every job on the same grid: tick k of a job with interval I is the
time bucket [k*I, (k+1)*I), and APScheduler fires it at the bucket's start plus a random offset
chosen per instance and job (the jittered start). Who runs a tick:

1. Only the holder of the job's lease (`sync.leases`) tries. Each instance renews what it holds
   and tries to take the rest at every heartbeat, and sleeps until the earliest foreign lease
   expires, so a dead holder's lease (expiry = 2 heartbeats) is taken within 2 heartbeats of
   its last renewal, hence of its death.
2. The holder claims the tick in the store before running it; a tick is claimed once, so it
   runs once even when two instances believe they hold the lease.
3. A newly taken lease runs the current tick at once if nobody ran it (its previous holder died
   before its offset came round): no tick is lost to a takeover shorter than a tick.

Running a job, backing it off and handling refused credentials is `sync.channel_jobs`'.
APScheduler only fires; it is not what keeps two processes from doing the same job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from sync.channel_jobs import (
    ChannelAuthFailedError,
    ChannelJob,
    JobName,
    JobRunner,
    ScheduledChannel,
    SchedulerSettings,
)
from sync.db import Database
from sync.health import ChannelHealth
from sync.leases import LeaseGrant, TickClaim, acquire, claim_tick, db_now, release
from sync.metrics import Metrics

__all__ = [
    "ChannelAuthFailedError",
    "JobName",
    "ScheduledChannel",
    "Scheduler",
    "SchedulerSettings",
    "Takeover",
    "instance_id",
    "tick_of",
]

log = logging.getLogger(__name__)

GRID_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Takeover:
    """A lease taken from a holder that stopped renewing it."""

    lease: str
    taken_from: str
    delay_s: float  # since the old holder's last heartbeat, by the database's clock
    at: float  # time.monotonic() of this instance when it took it


def _log_failure(task: asyncio.Task[Any]) -> None:
    # The supervisor of fired ticks: a store error while claiming must not vanish unseen.
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("a scheduled tick failed: %r", exc, exc_info=exc)


def tick_of(now: datetime, interval: timedelta) -> datetime:
    """The scheduled time of the tick `now` falls in: the same on every instance."""
    return GRID_ORIGIN + ((now - GRID_ORIGIN) // interval) * interval


def instance_id() -> str:
    """A name for this process in lease rows: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Scheduler:
    """Runs each channel's periodic jobs when this instance holds their leases."""

    name = "scheduler"

    def __init__(
        self,
        db: Database,
        channels: Sequence[ScheduledChannel],
        settings: SchedulerSettings,
        *,
        health: ChannelHealth,
        metrics: Metrics | None = None,
        owner: str | None = None,
        clock: Callable[[], datetime] | None = None,
        wake: Callable[[], None] = lambda: None,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.health = health
        self.metrics = metrics
        self.owner = owner or instance_id()
        self.takeovers: deque[Takeover] = deque(maxlen=100)  # the latest, for tests and logs
        self._clock = clock or (lambda: datetime.now(UTC))
        self._wake = wake
        rng = rng or random.Random()
        self._jobs: dict[str, ChannelJob] = {}
        for scheduled in channels:
            for kind, period in (
                (JobName.POLL, scheduled.poll_interval_s),
                (JobName.RECONCILE, scheduled.reconcile_interval_s),
            ):
                offset = rng.uniform(0, min(settings.max_start_jitter_s, period / 10))
                job = ChannelJob(scheduled, kind, timedelta(seconds=period), offset)
                self._jobs[job.lease] = job
        self._held: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._runner = JobRunner(
            db,
            self._jobs,
            settings,
            health=health,
            metrics=metrics,
            clock=self._clock,
            wake=wake,
            rng=rng,
            is_stopping=lambda: self._stopping,
        )
        # Lease renewals get a thread of their own: polls and pushes busy on the shared pool
        # must not make a live holder miss its renewal and lose its jobs.
        self._lease_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leases")

    @property
    def held(self) -> frozenset[str]:
        """Names of the leases this instance holds now."""
        return frozenset(self._held)

    def describe(self) -> dict[str, Any]:
        """This instance and the jobs it holds, for /api/status."""
        return {"id": self.owner, "leases_held": sorted(self._held)}

    def schedule(self, aps: AsyncIOScheduler) -> None:
        """Add every job's trigger, on the shared grid plus this instance's offset."""
        now = datetime.now(UTC)
        for job in self._jobs.values():
            start = tick_of(now, job.interval) + timedelta(seconds=job.offset_s)
            aps.add_job(
                self._fire,
                IntervalTrigger(seconds=job.interval.total_seconds(), start_date=start),
                args=[job],
                id=f"sync.{job.lease}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        aps.add_job(
            self._fire_outbox,
            "interval",
            seconds=self.settings.outbox_interval_s,
            id="outbox.wake",
            max_instances=1,
            coalesce=True,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Hold leases until `stop`; then let running jobs end at a page and give the leases up.

        Cancelled (a crash, a test killing this instance), it gives nothing up: its leases
        expire as a dead process's would.
        """
        try:
            while not stop.is_set():
                try:
                    wait_s = await self.heartbeat()
                except Exception:
                    # The supervisor: a store hiccup must not end lease renewal for good.
                    log.exception("lease heartbeat failed")
                    wait_s = self.settings.heartbeat_s / 2
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=wait_s)
        except asyncio.CancelledError:
            for task in self._tasks:
                task.cancel()
            self._lease_thread.shutdown(wait=False)
            raise
        self._stopping = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        held = sorted(self._held)
        self._held.clear()
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._lease_thread, self._release, held
            )
        except Exception:
            log.exception("could not release leases; they expire on their own")
        finally:
            self._lease_thread.shutdown(wait=False)

    async def heartbeat(self) -> float:
        """Renew held leases and take free ones; answer seconds until the next round."""
        ttl = timedelta(seconds=self.settings.lease_ttl_s)
        names = sorted(self._jobs)  # one order everywhere: row locks never deadlock

        def renew() -> tuple[list[Any], datetime]:
            with self.db.session() as session:
                now = db_now(session)
                answers = [acquire(session, name, self.owner, ttl, now) for name in names]
                self.health.refresh(session)
                return answers, now

        loop = asyncio.get_running_loop()
        answers, now = await loop.run_in_executor(self._lease_thread, renew)
        wait_s = self.settings.heartbeat_s
        # Wake just after the earliest foreign lease ends: a dead holder's job moves at once.
        margin = min(0.05, self.settings.heartbeat_s / 10)
        held: set[str] = set()
        taken: list[LeaseGrant] = []
        for answer in answers:
            if isinstance(answer, LeaseGrant):
                held.add(answer.name)
                if answer.is_new or answer.name not in self._held:
                    taken.append(answer)
            else:
                wait_s = min(wait_s, (answer.expires_at - now).total_seconds() + margin)
        for name in sorted(self._held - held):
            log.warning("lease %s was taken by another instance (renewal came too late)", name)
        self._held = held
        for grant in taken:
            self._on_taken(grant)
        return max(wait_s, 0.01)

    async def wait_idle(self) -> None:
        """Return once no tick this instance started is still running."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run_tick(self, channel: str, kind: str) -> bool:
        """Run the current tick of one job if this instance holds it and nobody ran it yet."""
        return await self._tick(self._jobs[f"{channel}:{kind}"])

    async def sync_now(self, channel: str) -> dict[str, dict[str, Any]]:
        """Poll and reconcile one channel now, whoever holds its leases (both are idempotent).

        KeyError for a channel this instance does not serve; ChannelAuthFailedError when its
        credentials are still refused.
        """
        poll = self._jobs[f"{channel}:{JobName.POLL.value}"]
        if not self.health.is_callable(channel) and not await self._runner.recheck(poll):
            raise ChannelAuthFailedError(channel)
        results = {}
        for kind in JobName:
            results[kind.value] = await self._run_now(self._jobs[f"{channel}:{kind.value}"])
        return results

    async def _run_now(self, job: ChannelJob) -> dict[str, Any]:
        """Run a job for `sync_now` as soon as its current run ends; a poll under way is joined.

        A poll already running is not repeated: its answer is ours (the reconcile that follows
        reads every order anyway), which spares a rate-starved channel (Amazon's searchOrders
        restores one call every 3 minutes) a second wait. A reconcile under way may have read
        the channel before the request came, so another one runs after it.
        """
        before = job.last_result
        is_joinable = job.kind is JobName.POLL and job.lock.locked()
        job.syncs_waiting += 1
        try:
            async with job.lock:
                ended = job.last_result is not before  # a run ended while we waited
                joined = job.last_result if is_joinable and ended else None
                if joined is not None and joined.get("ok"):
                    result = {**joined, "joined": True}
                else:
                    job.is_fired_again = False  # this run is the one the fires asked for
                    result = await self._runner.execute(job)
        finally:
            job.syncs_waiting -= 1
        if job.is_fired_again and not job.syncs_waiting:
            self._spawn(self._tick(job))  # fires that came meanwhile: the then-current tick
        return result

    def _on_taken(self, grant: LeaseGrant) -> None:
        job = self._jobs[grant.name]
        if grant.taken_from is not None and grant.takeover_delay is not None:
            delay = grant.takeover_delay.total_seconds()
            self.takeovers.append(Takeover(grant.name, grant.taken_from, delay, time.monotonic()))
            log.info(
                "took over lease %s from %s, %.3f s after its last heartbeat",
                grant.name,
                grant.taken_from,
                delay,
            )
            if self.metrics is not None:
                self.metrics.lease_takeovers.labels(grant.name).inc()
                self.metrics.lease_takeover_seconds.labels(grant.name).set(delay)
        else:
            log.info("holding lease %s", grant.name)
        self._spawn(self._after(job.offset_s, self._tick(job)))

    async def _after(self, delay_s: float, work: Awaitable[bool]) -> None:
        await asyncio.sleep(delay_s)
        await work

    async def _fire(self, job: ChannelJob) -> None:
        self._spawn(self._tick(job))

    async def _fire_outbox(self) -> None:
        self._wake()

    def _spawn(self, work: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    async def _tick(self, job: ChannelJob) -> bool:
        if job.lock.locked():
            # A run or a claim is under way: when it ends, the then-current tick is tried once
            # more (the fires of a busy job coalesce into one; none is lost to a short overlap).
            job.is_fired_again = True
            return False
        ran = False
        async with job.lock:
            while True:
                job.is_fired_again = False
                ran = await self._attempt(job) or ran
                # A sync_now waiting for the lock goes next; its run serves the fires.
                if not job.is_fired_again or self._stopping or job.syncs_waiting:
                    return ran

    async def _attempt(self, job: ChannelJob) -> bool:
        if self._stopping or job.lease not in self._held:
            return False
        now = self._clock()
        if job.not_before is not None and now < job.not_before:
            return False
        if not self.health.is_callable(job.channel.name):
            # Only the poll job re-checks credentials, and only every auth_recheck_s.
            if job.kind is not JobName.POLL:
                return False
            if job.recheck_at is None:
                job.recheck_at = now + timedelta(seconds=self.settings.auth_recheck_s)
            if now < job.recheck_at:
                return False
        claim = await asyncio.to_thread(self._claim, job, tick_of(now, job.interval))
        if not claim.claimed:
            return False
        self._count_tick(job, claim)
        await self._runner.execute(job)
        return True

    def _claim(self, job: ChannelJob, tick_at: datetime) -> TickClaim:
        with self.db.session() as session:
            return claim_tick(
                session,
                channel_id=job.channel.channel.ref.id,
                job=job.kind.value,
                tick_at=tick_at,
                interval=job.interval,
                lease=job.lease,
                owner=self.owner,
            )

    def _count_tick(self, job: ChannelJob, claim: TickClaim) -> None:
        if claim.skipped:
            log.info("%s: %d tick(s) before this one did not run", job.lease, claim.skipped)
        if self.metrics is not None:
            ticks = self.metrics.scheduler_ticks
            ticks.labels(job.channel.name, job.kind.value, "run").inc()
            if claim.skipped:
                ticks.labels(job.channel.name, job.kind.value, "skipped").inc(claim.skipped)

    def _release(self, names: list[str]) -> None:
        with self.db.session() as session:
            release(session, names, self.owner)
