"""The stock pusher: wakes on commit, plans targets, and drains each channel's stock jobs.

It is woken by `wake()` whenever a transaction marks listings dirty (and, as a safety net, every
`idle_s`), so a change reaches the channels within one round trip rather than a timer's period.
What arrives while a channel is busy coalesces into its pending jobs (the newest target per
listing), and goes out in the next batch.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from connectors.base import Connector, StockPushResult
from connectors.errors import (
    AuthError,
    ConnectorError,
    PermanentError,
    RetryableError,
    UncertainOutcomeError,
)
from sync.db import Database
from sync.metrics import Metrics
from sync.models import JobKind, OutboxJob
from sync.outbox import RetrySchedule, claim, count_due, fail, has_open_work
from sync.stock_push import (
    ChannelStockPlan,
    PushBatch,
    PushOutcomeSummary,
    forget_beliefs,
    plan_targets,
    prepare_batch,
    record_results,
)

log = logging.getLogger(__name__)

AUTH_RETRY_S = 60.0


@dataclass(frozen=True)
class PushChannel:
    """A channel the pusher serves: its store id, connector and stock rules."""

    name: str
    connector: Connector
    plan: ChannelStockPlan

    @property
    def channel_id(self) -> int:
        """The channel's id in the store."""
        return self.plan.channel_id


class StockPusher:
    """Plans and pushes stock for a set of channels until stopped."""

    name = "stock-pusher"

    def __init__(
        self,
        db: Database,
        channels: Sequence[PushChannel],
        *,
        metrics: Metrics | None = None,
        owner: str | None = None,
        lease: timedelta = timedelta(seconds=120),
        idle_s: float = 1.0,
        retry: RetrySchedule | None = None,
    ) -> None:
        self.db = db
        self.channels = {c.channel_id: c for c in channels}
        self.metrics = metrics
        self.owner = owner or f"pusher-{uuid.uuid4().hex[:12]}"
        self.lease = lease
        self.idle_s = idle_s
        self.retry = retry or RetrySchedule()
        self.summary = PushOutcomeSummary()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drains: dict[int, asyncio.Task[None]] = {}
        self._round_done = asyncio.Event()
        self._stopped = False

    def wake(self) -> None:
        """Ask for a planning round now; safe from any thread."""
        if self._loop is None:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def wait_idle(self, poll_s: float = 0.02) -> None:
        """Return once nothing is dirty, claimed or pending (tests and benchmarks wrap it in a
        timeout); jobs waiting out a retry delay keep it waiting."""
        while True:
            if self._stopped:
                raise RuntimeError("the stock pusher is not running")
            self._round_done.clear()
            self.wake()
            await self._round_done.wait()
            running = [t for t in self._drains.values() if not t.done()]
            await asyncio.gather(*running, return_exceptions=True)
            if await asyncio.to_thread(self._is_settled):
                return
            await asyncio.sleep(poll_s)

    async def run(self, stop: asyncio.Event) -> None:
        """Plan and push until `stop` is set; in-flight batches finish first."""
        self._loop = asyncio.get_running_loop()
        self._stopped = False
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                woken = asyncio.create_task(self._wake.wait())
                await asyncio.wait(
                    {woken, stopping}, timeout=self.idle_s, return_when=asyncio.FIRST_COMPLETED
                )
                woken.cancel()
                if stop.is_set():
                    break
                self._wake.clear()
                try:
                    await self._round(stop)
                except Exception:
                    # The supervisor: a store hiccup must not end stock pushing for good.
                    log.exception("stock pusher round failed; retrying in %.1f s", self.idle_s)
                    self._round_done.set()
        finally:
            self._stopped = True
            self._round_done.set()
            stopping.cancel()
            if self._drains:
                await asyncio.gather(*self._drains.values(), return_exceptions=True)

    async def _round(self, stop: asyncio.Event) -> None:
        plans = {cid: c.plan for cid, c in self.channels.items()}
        while await asyncio.to_thread(self._plan, plans) >= 5000:
            pass  # more dirty listings than one planning transaction takes
        for channel_id, channel in self.channels.items():
            task = self._drains.get(channel_id)
            if task is None or task.done():
                self._drains[channel_id] = asyncio.create_task(
                    self._drain(channel, stop), name=f"push-{channel.name}"
                )
        self._round_done.set()

    def _plan(self, plans: dict[int, ChannelStockPlan]) -> int:
        with self.db.session() as session:
            planned = plan_targets(session, plans)
        return sum(planned.values())

    def _is_settled(self) -> bool:
        with self.db.read_session() as session:
            return not has_open_work(session, list(self.channels))

    async def _drain(self, channel: PushChannel, stop: asyncio.Event) -> None:
        """Claim and push batches until the channel has nothing due, within its in-flight limit."""
        caps = channel.connector.capabilities
        slots = asyncio.Semaphore(max(1, caps.max_in_flight))
        in_flight: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            await slots.acquire()
            # On a batching channel, what arrives while a call is out waits for it to land and
            # goes in the next batch, unless a full batch is already waiting.
            only_full = bool(in_flight) and caps.max_stock_batch > 1
            batch = await asyncio.to_thread(self._claim, channel, only_full)
            if batch is None:
                slots.release()
                if not in_flight:
                    return
                # Pushes still out may requeue jobs (conflicts): claim again once one lands.
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                continue
            task = asyncio.create_task(self._push(channel, batch))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            task.add_done_callback(lambda _: slots.release())
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)

    def _claim(self, channel: PushChannel, only_full: bool = False) -> PushBatch | None:
        caps = channel.connector.capabilities
        while True:
            with self.db.session() as session:
                if only_full and (
                    count_due(session, channel.channel_id, JobKind.STOCK, caps.max_stock_batch)
                    < caps.max_stock_batch
                ):
                    return None
                jobs = claim(
                    session,
                    channel_id=channel.channel_id,
                    kinds=[JobKind.STOCK],
                    limit=caps.max_stock_batch,
                    owner=self.owner,
                    lease=self.lease,
                )
                if not jobs:
                    return None
                batch = prepare_batch(
                    session, jobs, compare_and_swap=caps.supports_compare_and_swap
                )
            if batch.jobs:
                return batch

    async def _push(self, channel: PushChannel, batch: PushBatch) -> None:
        try:
            await self._push_batch(channel, batch)
        except Exception:
            # The supervisor: the jobs stay claimed and are taken again when their lease ends.
            log.exception("stock push to %s could not be recorded", channel.name)

    async def _push_batch(self, channel: PushChannel, batch: PushBatch) -> None:
        if self.metrics:
            self.metrics.api_calls.labels(channel.name, "push_stock").inc()
        try:
            results = await channel.connector.push_stock(batch.targets)
        except ConnectorError as exc:
            await asyncio.to_thread(self._fail_batch, channel, batch, exc)
            return
        summary = await asyncio.to_thread(self._record, batch, results)
        for field in ("applied", "conflicts", "rejected", "retried"):
            count = getattr(summary, field)
            setattr(self.summary, field, getattr(self.summary, field) + count)
            if self.metrics and count:
                self.metrics.stock_pushes.labels(channel.name, field).inc(count)
        if summary.conflicts or summary.retried:
            self.wake()

    def _record(self, batch: PushBatch, results: Sequence[StockPushResult]) -> PushOutcomeSummary:
        with self.db.session() as session:
            # Reload the claimed rows in this transaction; the claim's session is closed.
            jobs = [session.get_one(OutboxJob, job.id) for job in batch.jobs]
            fresh = PushBatch(jobs=jobs, targets=batch.targets, stale=[])
            return record_results(session, fresh, results, schedule=self.retry)

    def _fail_batch(self, channel: PushChannel, batch: PushBatch, exc: ConnectorError) -> None:
        retry_after = getattr(exc, "retry_after", None)
        permanent = isinstance(exc, PermanentError)
        if isinstance(exc, AuthError):
            retry_after = AUTH_RETRY_S
        if isinstance(exc, RetryableError) and self.metrics and exc.retry_after is not None:
            self.metrics.throttles.labels(channel.name).inc()
        log.warning("stock push to %s failed: %s", channel.name, exc)
        with self.db.session() as session:
            if isinstance(exc, UncertainOutcomeError):
                # The channel may hold the new figures or the old: we no longer know. Forget the
                # belief, so the retry is a plain set, not a compare-and-swap that would read our
                # own applied push as units sold.
                forget_beliefs(session, [job.payload["listing_id"] for job in batch.jobs])
            for job in batch.jobs:
                row = session.get_one(OutboxJob, job.id)
                if isinstance(exc, UncertainOutcomeError):
                    row.payload = {k: v for k, v in row.payload.items() if k != "expected"}
                fail(
                    session,
                    row,
                    f"{type(exc).__name__}: {exc}",
                    retry_after=retry_after,
                    permanent=permanent,
                    schedule=self.retry,
                )
        self.summary.retried += 0 if permanent else len(batch.jobs)
