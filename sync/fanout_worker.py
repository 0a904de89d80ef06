"""The fan-out worker: sends shipment and cancel jobs to their origin channel, exactly once.

Woken on commit by whoever recorded a shipment or cancellation (and, as a safety net and for
retries, every `idle_s`), it claims each channel's due jobs under a lease, at most
`capabilities.max_in_flight` at a time, and calls the connector.

Exactly once, as far as the channel can tell: a shipment carries a key stable per shipment. A
channel that dedupes on it is simply sent it again. Any other channel is first asked whether the
shipment is already there whenever an earlier attempt may have applied it: every attempt after
the first, because an attempt ends unclear not only with an UncertainOutcomeError but also when
the process died between the call and recording its answer (its lease ran out). A cancellation
is checked the same way by reading the order back. A channel's permanent refusal ends the job
dead with the channel's reason; it is not retried until an operator requeues it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import (
    CancelRequest,
    Connector,
    FulfillmentRequest,
    Order,
    OrderStatus,
    ShipmentLine,
)
from connectors.errors import (
    AuthError,
    ConnectorError,
    NotFoundError,
    PermanentError,
    RetryableError,
    UncertainOutcomeError,
)
from sync.db import Database
from sync.fanout import note_fulfillment
from sync.metrics import Metrics
from sync.models import JobKind, JobState, OutboxJob, Shipment, utcnow
from sync.outbox import RetrySchedule, claim, complete, fail, release

log = logging.getLogger(__name__)

KINDS = (JobKind.SHIPMENT, JobKind.CANCEL)
AUTH_RETRY_S = 60.0
SHIPMENT_REQUEST_KEY = "channel-sync:shipment:{id}"
CANCEL_REQUEST_KEY = "channel-sync:cancel:{id}"


@dataclass(frozen=True)
class FanoutChannel:
    """A channel the worker serves: its store id and connector."""

    name: str
    channel_id: int
    connector: Connector


@dataclass(frozen=True)
class _Claimed:
    """A claimed job as the call needs it, read in the claim's transaction."""

    job_id: int
    kind: JobKind
    attempts: int
    payload: Mapping[str, Any]
    known_ref: str | None = None  # the shipment's channel id, when it is already known


class FanoutWorker:
    """Sends the shipments and cancellations of a set of channels until stopped."""

    name = "fanout"

    def __init__(
        self,
        db: Database,
        channels: Sequence[FanoutChannel],
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
        # Channel health (sync/health.py), as the stock pusher has it: nothing is sent to an
        # auth-failed channel until its check passes, and an AuthError here marks it so.
        self.is_callable = is_callable
        self.on_auth_error = on_auth_error
        self.channels = {c.channel_id: c for c in channels}
        self.metrics = metrics
        self.owner = owner or f"fanout-{uuid.uuid4().hex[:12]}"
        self.lease = lease
        self.idle_s = idle_s
        self.retry = retry or RetrySchedule()
        self._wakes = {channel_id: asyncio.Event() for channel_id in self.channels}
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        """Look for due jobs now; safe from any thread."""
        if self._loop is None:
            self._set_wakes()
        else:
            self._loop.call_soon_threadsafe(self._set_wakes)

    def _set_wakes(self) -> None:
        for event in self._wakes.values():
            event.set()

    async def wait_idle(self, poll_s: float = 0.02) -> None:
        """Return once none of the channels' shipment or cancel jobs is pending or running (tests
        wrap it in a timeout); jobs waiting out a retry delay keep it waiting."""
        while await asyncio.to_thread(self._has_open_jobs):
            self.wake()
            await asyncio.sleep(poll_s)

    async def run(self, stop: asyncio.Event) -> None:
        """Send due jobs until `stop` is set; calls in flight finish first."""
        self._loop = asyncio.get_running_loop()
        if not self.channels:
            await stop.wait()
            return
        await asyncio.gather(
            *(
                asyncio.create_task(self._serve(channel, stop), name=f"fanout-{channel.name}")
                for channel in self.channels.values()
            )
        )

    async def _serve(self, channel: FanoutChannel, stop: asyncio.Event) -> None:
        """One channel: drain what is due, then sleep until woken or `idle_s` (retries) passes."""
        woken = self._wakes[channel.channel_id]
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                # Cleared before draining: a wake that comes while draining is not lost.
                woken.clear()
                try:
                    await self._drain(channel, stop)
                except Exception:
                    # The supervisor: a store hiccup must not end fan-out for this channel.
                    log.exception(
                        "fan-out to %s failed; retrying in %.1f s", channel.name, self.idle_s
                    )
                waiting = asyncio.create_task(woken.wait())
                await asyncio.wait(
                    {waiting, stopping}, timeout=self.idle_s, return_when=asyncio.FIRST_COMPLETED
                )
                waiting.cancel()
        finally:
            stopping.cancel()

    def _has_open_jobs(self) -> bool:
        with self.db.read_session() as session:
            found = session.scalar(
                select(OutboxJob.id)
                .where(
                    OutboxJob.channel_id.in_(list(self.channels)),
                    OutboxJob.kind.in_(KINDS),
                    OutboxJob.state.in_([JobState.PENDING, JobState.RUNNING]),
                )
                .limit(1)
            )
        return found is not None

    async def _drain(self, channel: FanoutChannel, stop: asyncio.Event) -> None:
        """Claim and send until the channel has nothing due, within its in-flight limit."""
        slots = max(1, channel.connector.capabilities.max_in_flight)
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                if len(in_flight) < slots and self.is_callable(channel.name):
                    claimed = await asyncio.to_thread(self._claim, channel, slots - len(in_flight))
                    for job in claimed:
                        task = asyncio.create_task(self._send(channel, job))
                        in_flight.add(task)
                        task.add_done_callback(in_flight.discard)
                if not in_flight:
                    return
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    def _has_due(self, channel: FanoutChannel) -> bool:
        """Whether `_claim` could find anything: a due job of the channel, or an expired lease
        (any job's, which `claim` reaps). A read: every ingest round wakes this worker, and a
        write transaction to find nothing took SQLite's write lock from the webhook commits.
        A job committed after this look wakes the worker again, so none waits past that."""
        now = utcnow()
        with self.db.read_session() as session:
            due = session.scalar(
                select(OutboxJob.id)
                .where(
                    OutboxJob.channel_id == channel.channel_id,
                    OutboxJob.kind.in_(KINDS),
                    OutboxJob.state == JobState.PENDING,
                    OutboxJob.run_after <= now,
                )
                .limit(1)
            )
            if due is not None:
                return True
            expired = session.scalar(
                select(OutboxJob.id)
                .where(OutboxJob.state == JobState.RUNNING, OutboxJob.lease_until < now)
                .limit(1)
            )
        return expired is not None

    def _claim(self, channel: FanoutChannel, limit: int) -> list[_Claimed]:
        if not self._has_due(channel):
            return []
        with self.db.session() as session:
            jobs = claim(
                session,
                channel_id=channel.channel_id,
                kinds=KINDS,
                limit=limit,
                owner=self.owner,
                lease=self.lease,
            )
            claimed = []
            for job in jobs:
                known = None
                if job.kind is JobKind.SHIPMENT:
                    known = session.scalar(
                        select(Shipment.external_id).where(
                            Shipment.id == job.payload["shipment_id"]
                        )
                    )
                claimed.append(_Claimed(job.id, job.kind, job.attempts, dict(job.payload), known))
            return claimed

    async def _send(self, channel: FanoutChannel, job: _Claimed) -> None:
        try:
            try:
                outcome, ref = await self._call(channel, job)
            except ConnectorError as exc:
                await asyncio.to_thread(self._record_failure, channel, job, exc)
                return
            await asyncio.to_thread(self._record_success, job, ref)
            self._count(channel, job, outcome)
        except Exception:
            # The supervisor: the job stays claimed and is taken again when its lease ends, which
            # counts as an unclear outcome (the next attempt asks the channel first).
            log.exception("fan-out job %d to %s could not be recorded", job.job_id, channel.name)

    async def _call(self, channel: FanoutChannel, job: _Claimed) -> tuple[str, str | None]:
        """Make the job true on the channel; answer (outcome, the channel's fulfilment id)."""
        connector = channel.connector
        maybe_applied = job.attempts > 1
        if job.kind is JobKind.CANCEL:
            request = cancel_request(job.payload)
            if maybe_applied:
                self._called(channel, "fetch_order")
                if shows_cancel(
                    await connector.fetch_order(request.order_external_id), job.payload
                ):
                    return "already_there", None
            self._called(channel, "cancel_order")
            try:
                await connector.cancel_order(request)
            except PermanentError:
                # Refused because it is already so (a whole-order cancel of ours landed first,
                # or the buyer's)? Then it is done; otherwise the refusal stands.
                self._called(channel, "fetch_order")
                if shows_cancel(
                    await connector.fetch_order(request.order_external_id), job.payload
                ):
                    return "already_there", None
                raise
            return "applied", None
        if job.known_ref is not None:
            # The channel's own report of the order already named this parcel (ingest).
            return "already_there", job.known_ref
        fulfillment = fulfillment_request(job.payload)
        if maybe_applied and not connector.capabilities.idempotent_fulfillment:
            self._called(channel, "find_fulfillment")
            found = await connector.find_fulfillment(fulfillment)
            if found is not None:
                return "already_there", found
        self._called(channel, "push_fulfillment")
        return "applied", await connector.push_fulfillment(fulfillment)

    def _record_success(self, job: _Claimed, ref: str | None) -> None:
        with self.db.session() as session:
            if job.kind is JobKind.SHIPMENT and ref is not None:
                note_fulfillment(session, int(job.payload["shipment_id"]), ref)
            row = self._still_ours(session, job)
            if row is not None:
                complete(session, [row.id])

    def _record_failure(self, channel: FanoutChannel, job: _Claimed, exc: ConnectorError) -> None:
        permanent = isinstance(exc, PermanentError | NotFoundError)
        reason = exc.reason if isinstance(exc, PermanentError) else str(exc)
        with self.db.session() as session:
            row = self._still_ours(session, job)
            if row is None or row.state is not JobState.RUNNING:
                return  # our lease ran out and the job went back: its next attempt decides
            if isinstance(exc, AuthError):
                self.on_auth_error(channel.name, str(exc))
                # Refused before anything was done: not a try; the channel is retried later.
                release(session, row, run_after=utcnow() + timedelta(seconds=AUTH_RETRY_S))
                state, outcome = JobState.PENDING, "auth"
            else:
                retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
                error = f"{channel.name} refused: {reason}" if permanent else f"{exc}"
                state = fail(
                    session,
                    row,
                    error,
                    retry_after=retry_after,
                    permanent=permanent,
                    schedule=self.retry,
                )
                outcome = "uncertain" if isinstance(exc, UncertainOutcomeError) else "retry"
        if state is JobState.DEAD:
            outcome = "dead"
            log.warning(
                "%s job %d to %s is dead after %d attempt(s): %s",
                job.kind.value,
                job.job_id,
                channel.name,
                job.attempts,
                reason if permanent else exc,
            )
        self._count(channel, job, outcome)

    def _still_ours(self, session: Session, job: _Claimed) -> OutboxJob | None:
        """The job's row if this worker may settle it: claimed by us, or back to pending after
        our lease ran out; None when it is done, dead, or another worker holds it now."""
        row = session.get(OutboxJob, job.job_id, with_for_update=True)
        if row is None or row.state in (JobState.DONE, JobState.DEAD):
            return None
        if row.state is JobState.RUNNING and row.lease_owner != self.owner:
            return None
        return row

    def _called(self, channel: FanoutChannel, operation: str) -> None:
        if self.metrics:
            self.metrics.api_calls.labels(channel.name, operation).inc()

    def _count(self, channel: FanoutChannel, job: _Claimed, outcome: str) -> None:
        if self.metrics:
            self.metrics.fanout_pushes.labels(channel.name, job.kind.value, outcome).inc()


def fulfillment_request(payload: Mapping[str, Any]) -> FulfillmentRequest:
    """The request a shipment job sends, from its payload."""
    return FulfillmentRequest(
        key=SHIPMENT_REQUEST_KEY.format(id=payload["shipment_id"]),
        order_external_id=str(payload["order_external_id"]),
        lines=tuple(ShipmentLine(str(x), int(n)) for x, n in payload["lines"]),
        carrier=payload["carrier"],
        tracking_number=payload["tracking"],
        shipped_at=datetime.fromisoformat(payload["shipped_at"]),
    )


def cancel_request(payload: Mapping[str, Any]) -> CancelRequest:
    """The request a cancel job sends, from its payload."""
    return CancelRequest(
        key=CANCEL_REQUEST_KEY.format(id=payload["event_id"]),
        order_external_id=str(payload["order_external_id"]),
        lines=tuple(ShipmentLine(str(x), int(n)) for x, n in payload["lines"]),
        reason=str(payload["reason"]),
    )


def shows_cancel(order: Order, payload: Mapping[str, Any]) -> bool:
    """True when the channel's order already shows the cancellation a job carries."""
    if order.status is OrderStatus.CANCELLED:
        return True
    cancelled = {line.external_line_id: line.quantity_cancelled for line in order.lines}
    return all(cancelled.get(x, 0) >= int(n) for x, n in payload["cancelled"].items())
