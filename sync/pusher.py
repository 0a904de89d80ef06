"""The stock pusher: wakes on commit, plans targets, and drains each channel's stock jobs.

It is woken by `wake()` whenever a transaction marks listings dirty (and, as a safety net, every
`idle_s`), so a change reaches the channels within one round trip rather than a timer's period.
What arrives while a channel is busy coalesces into its pending jobs (the newest target per
listing). On a batching channel a batch that is not full lingers while changes keep arriving,
within the bounds of its `Coalescing`, so that a stream of changes goes out in fewer calls while
a lone change goes almost at once.

Store work per channel is one transaction per step (`sync.push_store`): it records every push
that landed since the last step and claims as many batches as the channel has free in-flight
slots for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from connectors.base import Connector
from connectors.errors import AuthError, ConnectorError, RetryableError
from sync.db import Database
from sync.metrics import Metrics
from sync.outbox import RetrySchedule, has_open_work
from sync.push_policy import Arrivals, Coalescing, claim_sizing, push_parts, slow_pushes
from sync.push_store import OUTCOMES, Claimant, Landed, Step, record_and_claim
from sync.stock_push import (
    ChannelStockPlan,
    Planned,
    PushBatch,
    PushOutcomeSummary,
    plan_targets,
)

log = logging.getLogger(__name__)

PLAN_LIMIT = 5000  # dirty listings one planning transaction takes (plan_targets' default)
LOCKED_RETRY_S = 0.01  # a landed push whose listings another transaction holds: record it then


@dataclass(frozen=True)
class PushChannel:
    """A channel the pusher serves: its store id, connector, stock rules and batching policy."""

    name: str
    connector: Connector
    plan: ChannelStockPlan
    coalescing: Coalescing | None = None  # None: derived from the connector's capabilities

    @property
    def channel_id(self) -> int:
        """The channel's id in the store."""
        return self.plan.channel_id

    @property
    def policy(self) -> Coalescing:
        """The coalescing in force: the one given, or the default for the capabilities."""
        return self.coalescing or Coalescing.for_capabilities(self.connector.capabilities)


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
        is_callable: Callable[[str], bool] = lambda _name: True,
        on_auth_error: Callable[[str, str], None] = lambda _name, _error: None,
    ) -> None:
        self.db = db
        # Channel health (sync/health.py): an auth-failed channel is not called until its check
        # passes; an AuthError here marks it so.
        self.is_callable = is_callable
        self.on_auth_error = on_auth_error
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
        self._arrivals = {channel_id: Arrivals() for channel_id in self.channels}
        self._round_done = asyncio.Event()
        self._stopped = False
        self._flushing = 0  # callers of wait_idle: held confirmations go at once meanwhile
        # SQLite has one writer at a time and a waiting one polls with growing sleeps: the
        # pusher's own transactions queue here instead, and go the moment the last one ends.
        self._writing: contextlib.AbstractContextManager[object] = (
            threading.Lock() if db.dialect == "sqlite" else contextlib.nullcontext()
        )

    def wake(self) -> None:
        """The store changed (listings may be dirty): plan now; safe from any thread. How
        often this comes tells a stream of changes from a lone one."""
        if self._loop is None:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._changed)

    def _changed(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        for channel_id, arrivals in self._arrivals.items():
            arrivals.active(now, self.channels[channel_id].policy)
        self._wake.set()

    def _nudge(self) -> None:
        """Plan now, without a change to count (waiting for idle, a retry coming due)."""
        if self._loop is None:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def wait_idle(self, poll_s: float = 0.02) -> None:
        """Return once nothing is dirty, claimed or pending (tests and benchmarks wrap it in a
        timeout); jobs waiting out a retry delay keep it waiting, confirmations held for
        company go at once."""
        self._flushing += 1
        try:
            while True:
                if self._stopped:
                    raise RuntimeError("the stock pusher is not running")
                self._round_done.clear()
                self._nudge()
                for arrivals in self._arrivals.values():
                    arrivals.event.set()  # a drain holding confirmations sends them
                await self._round_done.wait()
                running = [t for t in self._drains.values() if not t.done()]
                await asyncio.gather(*running, return_exceptions=True)
                if await asyncio.to_thread(self._is_settled):
                    return
                await asyncio.sleep(poll_s)
        finally:
            self._flushing -= 1

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
            for arrivals in self._arrivals.values():
                arrivals.event.set()  # a lingering drain stops waiting for company
            if self._drains:
                await asyncio.gather(*self._drains.values(), return_exceptions=True)

    async def _round(self, stop: asyncio.Event) -> None:
        plans = {cid: c.plan for cid, c in self.channels.items()}
        loop = asyncio.get_running_loop()
        while True:
            enqueued = await asyncio.to_thread(self._plan, plans)
            now = loop.time()
            for channel_id, planned in enqueued.items():
                if planned.jobs:
                    self._arrivals[channel_id].note(now, urgent=planned.urgent > 0)
            if sum(planned.jobs for planned in enqueued.values()) < PLAN_LIMIT:
                break  # else more dirty listings than one planning transaction takes
        for channel_id, channel in self.channels.items():
            task = self._drains.get(channel_id)
            if not self.is_callable(channel.name):
                continue
            if task is None or task.done():
                self._drains[channel_id] = asyncio.create_task(
                    self._drain(channel, stop), name=f"push-{channel.name}"
                )
        self._round_done.set()

    def _plan(self, plans: dict[int, ChannelStockPlan]) -> dict[int, Planned]:
        with self._writing:
            return self.db.transact(lambda s: plan_targets(s, plans, limit=PLAN_LIMIT))

    def _is_settled(self) -> bool:
        with self.db.read_session() as session:
            return not has_open_work(session, list(self.channels))

    async def _drain(self, channel: PushChannel, stop: asyncio.Event) -> None:
        """Record what landed and claim what may go, one transaction a step, until the channel
        has nothing due and nothing in flight; hold partial batches as its policy says.

        Beside the channel's `max_in_flight` slots is one more, taken only by a batch that
        pushes a listing to its last units (with company where one call carries the batch; see
        `push_store._claim_urgent`): while every slot is busy with ordinary changes (Amazon's
        patches at 5/s take seconds), the next buyer of a listing down to its last unit is the
        one it would oversell. The channel's rate limiter still paces the call."""
        caps = channel.connector.capabilities
        slots = max(1, caps.max_in_flight)
        policy = channel.policy
        arrivals = self._arrivals[channel.channel_id]
        loop = asyncio.get_running_loop()
        in_flight: set[asyncio.Task[Landed | None]] = set()
        urgent_slot: asyncio.Task[Landed | None] | None = None  # the batch in the extra slot
        landed: list[Landed] = []
        left = 1
        hold_until: float | None = None  # only confirmations are due; they wait until then
        while True:
            arrivals.event.clear()
            # A channel that went auth-failed meanwhile gets nothing more; what landed is recorded.
            barred = stop.is_set() or not self.is_callable(channel.name)
            free = 0 if barred else slots - len(in_flight - {urgent_slot})
            urgent_only = (
                not free and not barred and urgent_slot is None and arrivals.urgent.is_set()
            )
            if free or urgent_only:
                arrivals.urgent.clear()  # this claim takes every push to last units now due
            if landed or free or urgent_only:
                partial = caps.max_stock_batch <= 1 or loop.time() >= arrivals.partial_at(policy)
                try:
                    step = await asyncio.to_thread(
                        self._step,
                        channel,
                        landed,
                        free=free or int(urgent_only),
                        send_partial=partial,
                        urgent_only=urgent_only,
                    )
                except Exception:
                    # The supervisor: record what landed one push at a time; claim next round.
                    log.exception("stock push step for %s failed", channel.name)
                    await self._record_apart(channel, landed, in_flight)
                    return
                if self.metrics:
                    self.metrics.push_latency.observe_step(channel.name, landed, step.deferred)
                landed, left = step.deferred, step.left
                hold_until = None if step.hold_s is None else loop.time() + step.hold_s
                self._count(channel, step.summary)
                for batch in step.batches:
                    pushing = asyncio.create_task(self._push(channel, batch))
                    in_flight.add(pushing)
                    urgent_slot = pushing if urgent_only else urgent_slot
                if left == 0 or hold_until is not None:
                    arrivals.waiting_since = None  # no change waits: a new one starts lingering
                elif arrivals.waiting_since is None:
                    # Work is due and waits from now at the latest: without this, a job left
                    # behind (its listing's previous push in flight when the claim ran) waited
                    # for the store to go quiet, which a busy daemon's other commits put off
                    # for good.
                    arrivals.waiting_since = loop.time()
            if not in_flight and not landed and (left == 0 or barred):
                return
            waiters: set[asyncio.Future[Any]] = set(in_flight)
            timeout = LOCKED_RETRY_S if landed else None
            if not stop.is_set() and len(in_flight - {urgent_slot}) >= slots:
                if urgent_slot is None:
                    waiters.add(asyncio.ensure_future(arrivals.urgent.wait()))
            elif not stop.is_set():
                waiters.add(asyncio.ensure_future(arrivals.event.wait()))
                if left:
                    # Held back by the policy: go when it allows, or sooner if work arrives.
                    at = arrivals.partial_at(policy) if hold_until is None else hold_until
                    held = max(0.0, at - loop.time())
                    timeout = held if timeout is None else min(timeout, held)
            if not waiters:
                await asyncio.sleep(timeout or 0)
                continue
            done, _ = await asyncio.wait(
                waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in waiters - set(in_flight):
                waiter.cancel()
            for task in done & set(in_flight):
                in_flight.discard(task)
                urgent_slot = None if task is urgent_slot else urgent_slot
                if (result := task.result()) is not None:
                    landed.append(result)

    async def _record_apart(
        self,
        channel: PushChannel,
        landed: list[Landed],
        in_flight: set[asyncio.Task[Landed | None]],
    ) -> None:
        """Record each landed push in its own transaction, after the rest have landed too."""
        finished = await asyncio.gather(*in_flight)
        for one in [*landed, *(x for x in finished if x is not None)]:
            try:
                step = await asyncio.to_thread(self._step, channel, [one], free=0)
            except Exception:
                # The jobs stay claimed and are taken again when their lease ends.
                log.exception("stock push to %s could not be recorded", channel.name)
            else:
                self._count(channel, step.summary)

    def _step(
        self,
        channel: PushChannel,
        landed: Sequence[Landed],
        *,
        free: int,
        send_partial: bool = True,
        urgent_only: bool = False,
    ) -> Step:
        claimant = Claimant(
            channel.channel_id,
            channel.connector.capabilities,
            channel.policy.hold_full,
            self.owner,
            self.lease,
            self.retry,
            batch_size=claim_sizing(channel.connector),
            parts=push_parts(channel.connector),
            slow=slow_pushes(channel.connector),
            confirm_hold_s=0.0 if self._flushing else channel.policy.confirm_hold_s,
        )
        with self._writing:
            return self.db.transact(
                lambda session: record_and_claim(
                    session,
                    claimant,
                    landed,
                    free=free,
                    send_partial=send_partial,
                    urgent_only=urgent_only,
                )
            )

    async def _push(self, channel: PushChannel, batch: PushBatch) -> Landed | None:
        if self.metrics:
            self.metrics.api_calls.labels(channel.name, "push_stock").inc()
        try:
            results = await channel.connector.push_stock(batch.targets)
        except ConnectorError as exc:
            log.warning("stock push to %s failed: %s", channel.name, exc)
            if isinstance(exc, AuthError):
                self.on_auth_error(channel.name, str(exc))
            if isinstance(exc, RetryableError) and self.metrics and exc.retry_after is not None:
                self.metrics.throttles.labels(channel.name).inc()
            return Landed(batch, error=exc)
        except Exception:
            # The supervisor: the jobs stay claimed and are taken again when their lease ends.
            log.exception("stock push to %s failed unexpectedly", channel.name)
            return None
        return Landed(batch, results=results)

    def _count(self, channel: PushChannel, summary: PushOutcomeSummary) -> None:
        for name in OUTCOMES:
            count = getattr(summary, name)
            setattr(self.summary, name, getattr(self.summary, name) + count)
            if self.metrics and count:
                self.metrics.stock_pushes.labels(channel.name, name).inc(count)
        if summary.retried:
            self._nudge()  # a retry may be due before the next idle round
