"""The webhook inbox processor: carries out what each stored delivery asks, after it was answered.

Woken by the receiver after each commit (and every `idle_s` as a safety net), it claims each
channel's received deliveries oldest first and asks the channel's webhook handler (a pure
function of the body) what to do:

- an order with its full state is ingested in the claiming transaction, which also marks the
  delivery processed, so a crash leaves either both or neither; a channel's consecutive order
  deliveries go to one `ingest_orders` call (each alone if the store refuses them together);
- a listing hint marks that listing for a verifying push when the quantity the channel reported
  differs from what we believe it shows (our own pushes report what we believe: no echo loop);
- an order to read again, or a revoked channel, needs a call outside the transaction: the
  delivery stays received while it is done and is marked processed after, so a crash in between
  repeats the (idempotent) work. These reads run beside the next rounds, not before them (a
  read held 30 s by a channel that does not answer held every channel's deliveries as long);
  the rounds leave the deliveries being read unclaimed, so each is read once at a time;
- a buyer's account deletion erases the personal data of their orders (sync.buyer_data) in the
  claiming transaction, and empties the notification's own body (it names them); the log says
  how many orders, never whose;
- an unreadable body fails at once (it never gets better); other failures are retried up to the
  inbox's attempt limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from connectors.base import Connector, Order
from connectors.errors import AuthError, ConnectorError, NotFoundError, SkipRecordError
from connectors.webhook_handler import (
    EraseBuyer,
    FetchOrder,
    IgnoreDelivery,
    IngestOrder,
    MalformedDeliveryError,
    ReconcileListing,
    RevokeChannel,
    WebhookAction,
    WebhookHandler,
)
from sync.buyer_data import erase_buyer
from sync.db import Database
from sync.inbox import claim_deliveries, delivery_body, mark_failed, mark_processed
from sync.ingest import ChannelRef, IngestResult, ingest_orders
from sync.metrics import Metrics
from sync.models import InboxState, Listing, WebhookDelivery, utcnow
from sync.polling import note_ingest
from sync.sealing import SealingError

log = logging.getLogger(__name__)

FETCH_CONCURRENCY = 4  # order reads in flight per channel; its rate limiter paces them anyway


@dataclass(frozen=True)
class InboxChannel:
    """A channel whose deliveries this worker processes."""

    ref: ChannelRef
    handler: WebhookHandler
    connector: Connector

    @property
    def name(self) -> str:
        """The channel's name."""
        return self.ref.name


@dataclass(frozen=True)
class _Deferred:
    """A delivery whose action needs a call outside the claiming transaction."""

    delivery_id: int
    channel_id: int
    action: FetchOrder | RevokeChannel


@dataclass
class _Read:
    """One call outside the transaction, and the deliveries it finishes: notices of one order
    that came before the read started share it (its answer is newer than each of them)."""

    channel_id: int
    action: FetchOrder | RevokeChannel
    delivery_ids: list[int]
    started: bool = False


@dataclass
class _Round:
    """What one claiming transaction did (it may run again whole on a retry: no side effects)."""

    processed: int = 0
    failed: int = 0
    is_dirty: bool = False
    ingests: list[tuple[str, IngestResult]] = field(default_factory=list)
    deferred: list[_Deferred] = field(default_factory=list)
    erased: list[tuple[str, int]] = field(default_factory=list)  # (channel, orders), logged after
    claimed: int = 0


class InboxWorker:
    """Processes stored webhook deliveries until stopped."""

    name = "webhook-inbox"

    def __init__(
        self,
        db: Database,
        channels: Sequence[InboxChannel],
        *,
        metrics: Metrics | None = None,
        on_change: Callable[[], None] = lambda: None,
        on_revoked: Callable[[str, str], None] = lambda _name, _reason: None,
        is_callable: Callable[[str], bool] = lambda _name: True,
        batch: int = 100,
        idle_s: float = 1.0,
    ) -> None:
        self.db = db
        self.channels = {c.ref.id: c for c in channels}
        self.metrics = metrics
        self.on_change = on_change  # listings went dirty: wake the stock pusher
        self.on_revoked = on_revoked  # (name, reason): record the channel as auth-failed
        self.is_callable = is_callable
        self.batch = batch
        self.idle_s = idle_s
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Deliveries whose read is under way (claimed by no round meanwhile), per channel; a
        # channel with `batch` of them waiting claims nothing more until some end.
        self._reading: dict[int, set[int]] = {channel_id: set() for channel_id in self.channels}
        self._reads: set[asyncio.Task[None]] = set()
        self._slots: dict[int, asyncio.Semaphore] = {}
        self._waiting_reads: dict[tuple[int, str], _Read] = {}  # order reads not yet started

    @property
    def being_read(self) -> int:
        """Deliveries waiting for, or in, a read from their channel."""
        return sum(len(ids) for ids in self._reading.values())

    def wake(self) -> None:
        """A delivery was committed: process it now; safe from any thread."""
        if self._loop is None:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stop: asyncio.Event) -> None:
        """Process deliveries until `stop` is set, finishing the current round."""
        self._loop = asyncio.get_running_loop()
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    progressed = await self._round()
                except Exception:
                    # The supervisor: a store hiccup must not end webhook processing for good.
                    log.exception("webhook inbox round failed; retrying in %.1f s", self.idle_s)
                    progressed = False
                if progressed:
                    continue
                woken = asyncio.create_task(self._wake.wait())
                await asyncio.wait(
                    {woken, stopping}, timeout=self.idle_s, return_when=asyncio.FIRST_COMPLETED
                )
                woken.cancel()
        finally:
            stopping.cancel()
            # Reads still under way end here; their deliveries stay received for the next start.
            for read in self._reads:
                read.cancel()
            await asyncio.gather(*self._reads, return_exceptions=True)

    async def process_once(self) -> bool:
        """One round over every channel and the reads it started; True when a full batch was
        processed (more may wait)."""
        progressed = await self._round()
        await self.settle()
        return progressed

    async def settle(self) -> None:
        """Wait until every read the rounds started has ended (failures are logged)."""
        while self._reads:
            await asyncio.gather(*self._reads, return_exceptions=True)

    async def _round(self) -> bool:
        """Claim and apply each channel's deliveries, and start the reads they need without
        waiting for them; True when a full batch was processed (more may wait)."""
        if not self.channels:
            return False
        reading = {channel_id: frozenset(ids) for channel_id, ids in self._reading.items()}
        done = await asyncio.to_thread(
            self.db.transact, lambda session: self._claim_and_apply(session, reading)
        )
        for name, result in done.ingests:
            note_ingest(result, name, self.metrics)
        for name, count in done.erased:
            log.info("channel %s: erased personal data of %d order(s)", name, count)
        if done.is_dirty:
            self.on_change()
        for deferred in done.deferred:
            self._start_read(deferred)
        return done.processed + done.failed >= self.batch

    def _start_read(self, deferred: _Deferred) -> None:
        """Read one deferred delivery's order in the background, up to FETCH_CONCURRENCY per
        channel at a time (its rate limiter paces them anyway). A notice of an order whose read
        waits for a slot joins that read: duplicates and a burst of one order's notices cost
        one call, most under a backlog. Each read commits alone (`_finish` locks its
        deliveries), so nothing is acknowledged earlier."""
        reading = self._reading[deferred.channel_id]
        reading.add(deferred.delivery_id)
        action = deferred.action
        key = (deferred.channel_id, action.external_id) if isinstance(action, FetchOrder) else None
        waiting = self._waiting_reads.get(key) if key is not None else None
        if waiting is not None and not waiting.started:
            waiting.delivery_ids.append(deferred.delivery_id)
            return
        job = _Read(deferred.channel_id, action, [deferred.delivery_id])
        if key is not None:
            self._waiting_reads[key] = job
        slots = self._slots.setdefault(deferred.channel_id, asyncio.Semaphore(FETCH_CONCURRENCY))

        async def read() -> None:
            try:
                async with slots:
                    job.started = True
                    if key is not None and self._waiting_reads.get(key) is job:
                        del self._waiting_reads[key]
                    await self._complete(job)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The supervisor of one read: its deliveries stay received for a later round.
                log.exception(
                    "channel %s: reading webhook deliveries %s failed",
                    self.channels[job.channel_id].name,
                    job.delivery_ids,
                )
            finally:
                if key is not None and self._waiting_reads.get(key) is job:
                    del self._waiting_reads[key]
                reading.difference_update(job.delivery_ids)
                self.wake()  # its channel may claim again

        task = asyncio.create_task(read(), name=f"inbox-read-{deferred.delivery_id}")
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)

    # In the claiming transaction -------------------------------------------------------------

    def _claim_and_apply(self, session: Session, reading: Mapping[int, frozenset[int]]) -> _Round:
        done = _Round()
        finished: list[int] = []
        for channel_id, channel in self.channels.items():
            being_read = reading.get(channel_id, frozenset())
            if len(being_read) >= self.batch:
                continue  # its reads are behind: claim more once some end
            run: list[tuple[int, Order]] = []  # consecutive order deliveries, ingested together
            for row in claim_deliveries(
                session, self.batch, channel_id=channel_id, excluding=being_read
            ):
                done.claimed += 1
                action = self._action(session, channel, row, done)
                if action is None:
                    continue  # failed and counted; it touched nothing but its own row
                if isinstance(action, IngestOrder):
                    run.append((row.id, action.order))
                    continue
                # Anything else waits for the orders before it: an erasure must follow the
                # order it erases, a listing hint the sales that lowered our belief, as when
                # each delivery was applied on its own.
                finished += self._ingest_run(session, channel, run, done)
                run = []
                if self._apply(session, channel, row, action, done):
                    finished.append(row.id)
            finished += self._ingest_run(session, channel, run, done)
        mark_processed(session, finished)
        done.processed += len(finished)
        return done

    def _action(
        self, session: Session, channel: InboxChannel, row: WebhookDelivery, done: _Round
    ) -> WebhookAction | None:
        """What the delivery asks for; None when its body cannot be opened or read (counted)."""
        try:
            body = delivery_body(row)
        except SealingError as err:
            # A key missing from the keyring: kept, counted, and retried once it is added.
            mark_failed(session, row, f"body not opened: {err}")
            done.failed += 1
            return None
        try:
            return channel.handler.map(row.topic, body)
        except MalformedDeliveryError as err:
            self._give_up(session, channel, row, str(err))
            done.failed += 1
            return None

    def _ingest_run(
        self,
        session: Session,
        channel: InboxChannel,
        run: Sequence[tuple[int, Order]],
        done: _Round,
    ) -> list[int]:
        """Ingest consecutive order deliveries in one `ingest_orders` call; the ids finished.

        Per delivery, the ingest's statements (look-up, ledger read, writes, oversold check)
        and its savepoint were most of the daemon's CPU under webhook load; one call for the
        run does them once. `ingest_orders` keeps the newest version of an order and skips
        one not newer than the stored, so the outcome is the one of applying them in turn
        (bar events and channel-count beliefs of versions a newer one in the run replaced, as
        a poll page that saw only the newest would have recorded). If the store refuses the
        run, the savepoint goes and each delivery is tried alone: a bad one fails by itself,
        with its own reason, and the rest are stored.
        """
        if len(run) > 1:
            try:
                with session.begin_nested():
                    result = ingest_orders(session, channel.ref, [order for _, order in run])
            except (ValueError, LookupError) as err:
                log.info(
                    "channel %s: %d order deliveries refused together (%s); applying each alone",
                    channel.name,
                    len(run),
                    type(err).__name__,
                )
            else:
                self._note(done, channel, result)
                return [delivery_id for delivery_id, _ in run]
        return [
            delivery_id
            for delivery_id, order in run
            if self._ingest_one(session, channel, delivery_id, order, done)
        ]

    def _ingest_one(
        self, session: Session, channel: InboxChannel, delivery_id: int, order: Order, done: _Round
    ) -> bool:
        try:
            with session.begin_nested():
                result = ingest_orders(session, channel.ref, [order])
        except (ValueError, LookupError) as err:
            # The order is valid but the store refused it (a bug or a conflicting row): keep
            # the delivery for another try, counted, rather than lose it.
            row = session.get(WebhookDelivery, delivery_id)
            if row is None:  # pragma: no cover - claimed and locked in this transaction
                raise
            mark_failed(session, row, f"ingest failed: {type(err).__name__}: {err}"[:500])
            done.failed += 1
            return False
        self._note(done, channel, result)
        return True

    @staticmethod
    def _note(done: _Round, channel: InboxChannel, result: IngestResult) -> None:
        done.ingests.append((channel.name, result))
        done.is_dirty |= bool(result.dirty_channels)

    def _apply(
        self,
        session: Session,
        channel: InboxChannel,
        row: WebhookDelivery,
        action: WebhookAction,
        done: _Round,
    ) -> bool:
        """Carry out one delivery's other action; True when it is finished in this transaction."""
        if isinstance(action, ReconcileListing):
            done.is_dirty |= _hint_listing(session, channel.ref.id, action)
            return True
        if isinstance(action, FetchOrder | RevokeChannel):
            done.deferred.append(_Deferred(row.id, channel.ref.id, action))
            return False
        if isinstance(action, EraseBuyer):
            now = utcnow()
            count = sum(erase_buyer(session, channel.ref.id, r, now) for r in action.buyer_refs)
            row.body, row.key_id = b"{}", None  # it names the user: it goes with their data
            done.erased.append((channel.name, count))
            return True
        if isinstance(action, IgnoreDelivery):
            return True
        raise TypeError(f"unknown webhook action {type(action).__name__}")  # pragma: no cover

    def _give_up(
        self, session: Session, channel: InboxChannel, row: WebhookDelivery, reason: str
    ) -> None:
        mark_failed(session, row, reason, max_attempts=1)
        log.warning(
            "channel %s: webhook delivery %s (%s) refused, nothing stored: %s",
            channel.name,
            row.id,
            row.topic,
            reason,
        )

    # After the commit ------------------------------------------------------------------------

    async def _complete(self, job: _Read) -> None:
        channel = self.channels[job.channel_id]
        action = job.action
        if isinstance(action, RevokeChannel):
            await asyncio.to_thread(self.on_revoked, channel.name, action.reason)
            await asyncio.to_thread(self._finish, job, None)
            return
        if not self.is_callable(channel.name):
            return  # kept received: read once the channel's credentials work again
        try:
            order = await channel.connector.fetch_order(action.external_id)
        except AuthError as err:
            await asyncio.to_thread(self.on_revoked, channel.name, str(err))
            return
        except (NotFoundError, SkipRecordError) as err:
            await asyncio.to_thread(self._fail, job, str(err), 1)
            return
        except ConnectorError as err:
            await asyncio.to_thread(self._fail, job, str(err), None)
            return
        result = await asyncio.to_thread(self._finish, job, order)
        if result is not None:
            note_ingest(result, channel.name, self.metrics)
            if result.dirty_channels:
                self.on_change()

    def _finish(self, job: _Read, order: Order | None) -> IngestResult | None:
        channel = self.channels[job.channel_id]

        def work(session: Session) -> IngestResult | None:
            open_ = [
                row.id
                for row in (
                    session.get(
                        WebhookDelivery, delivery_id, with_for_update=True, populate_existing=True
                    )
                    for delivery_id in sorted(job.delivery_ids)
                )
                if row is not None and row.state == InboxState.RECEIVED
            ]
            if not open_:
                return None  # another instance finished them meanwhile
            result = ingest_orders(session, channel.ref, [order]) if order is not None else None
            mark_processed(session, open_)
            return result

        return self.db.transact(work)

    def _fail(self, job: _Read, error: str, max_attempts: int | None) -> None:
        def work(session: Session) -> None:
            for delivery_id in job.delivery_ids:
                row = session.get(WebhookDelivery, delivery_id)
                if row is None:
                    continue
                if max_attempts is None:
                    mark_failed(session, row, error)
                else:
                    mark_failed(session, row, error, max_attempts=max_attempts)

        self.db.transact(work)
        log.warning(
            "channel %s: webhook deliveries %s not processed: %s",
            self.channels[job.channel_id].name,
            ", ".join(str(n) for n in job.delivery_ids),
            error,
        )


def _hint_listing(session: Session, channel_id: int, hint: ReconcileListing) -> bool:
    """Mark the listing for a verifying push if the channel reported other than our belief."""
    query = update(Listing).where(
        Listing.channel_id == channel_id, Listing.external_ref == hint.listing_ref
    )
    if hint.quantity is not None:
        query = query.where(
            or_(
                Listing.last_pushed_quantity.is_(None),
                Listing.last_pushed_quantity != hint.quantity,
            )
        )
    changed = session.execute(query.values(is_dirty=True, verify_belief=True))
    return bool(getattr(changed, "rowcount", 0))
