"""The daemon's lifecycle: open the store, serve both apps, run the scheduler, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from starlette.applications import Starlette
from starlette.types import ASGIApp

from connectors.base import Connector
from connectors.budgets import MetersDailyBudgets
from connectors.errors import ConnectorError
from connectors.notice_queue import NoticeQueue
from connectors.webhook_handler import SubscribesWebhooks, WebhookHandler
from sync.budgets import BudgetKeeper
from sync.buyer_data import purge_buyer_data
from sync.channels import register_channels
from sync.db import Database, SchemaOutOfDateError, ensure_schema
from sync.fanout_worker import FanoutChannel, FanoutWorker
from sync.health import ChannelHealth
from sync.http.admin import AdminContext, create_admin_app
from sync.http.commit_queue import CommitQueue
from sync.http.read_timeout import quiet_disconnects, with_read_timeout
from sync.http.webhook_receiver import create_receiver
from sync.http.webhooks import create_webhook_app
from sync.inbox_worker import InboxChannel, InboxWorker
from sync.ingest import ChannelRef
from sync.metrics import Metrics
from sync.notice_queue import NoticeHandler, NoticeQueueWorker
from sync.outbox import RetrySchedule
from sync.polling import PollChannel
from sync.push_policy import Coalescing
from sync.pusher import PushChannel, StockPusher
from sync.read_back import ShipmentReadBack, UnseenShipmentsCollector, lagging_channels
from sync.rekey import seal_legacy
from sync.reservations import StockRules
from sync.retention import purge_expired
from sync.scheduler import ScheduledChannel, Scheduler, SchedulerSettings
from sync.sdnotify import Notifier
from sync.sealing import Keyring, current_keyring, install_keyring
from sync.single_instance import StoreInUseError, exclusive_store
from sync.stock_push import ChannelStockPlan
from sync.store_wait import EXIT_STORE_UNREACHABLE, StoreUnreachableError, wait_for_store

log = logging.getLogger(__name__)

EXIT_STORE_IN_USE = 4


@dataclass(frozen=True)
class Listener:
    """Where one app listens."""

    name: str
    host: str
    port: int
    tls_certfile: str | None = None  # both set: served over HTTPS
    tls_keyfile: str | None = None
    read_timeout_s: float = 10.0  # a request must arrive whole within this (sync.http.read_timeout)


@dataclass(frozen=True)
class ChannelSpec:
    """What the engine needs of one channel file."""

    kind: str
    enabled: bool
    rules: StockRules = field(default_factory=StockRules)
    locations: tuple[str, ...] = ("default",)
    poll_interval_s: float = 60.0
    # The channel file's [push]: None keeps the default for the channel's batch size.
    push_max_linger_s: float | None = None
    push_pause_s: float | None = None
    push_hold_full: bool = False
    push_confirm_hold_s: float | None = None
    reconcile_interval_s: float = 900.0


@dataclass(frozen=True)
class ServiceSettings:
    """What the lifecycle needs from the config, and nothing else."""

    webhooks: Listener
    admin: Listener
    admin_token: str
    drain_deadline_s: float
    auto_migrate: bool
    channels: Mapping[str, ChannelSpec]
    inbox_retention_days: int
    events_retention_days: int
    version: str
    schedule: SchedulerSettings = field(default_factory=SchedulerSettings)
    outbox_lease_s: float = 120.0
    retry: RetrySchedule = field(default_factory=RetrySchedule)
    buyer_data_days: int = 30  # after delivery (Amazon's Data Protection Policy: <= 30)
    buyer_data_purge_every_s: float = 3600.0
    webhook_max_body_bytes: int = 1024 * 1024  # larger webhook bodies get 413
    store_wait_s: float = 45.0  # PostgreSQL refusing or recovering at start (sync.store_wait)
    # Seals buyers' personal data (sync.sealing); installed for the process at start. None: the
    # one already installed (a test, a library user).
    buyer_keyring: Keyring | None = None

    @property
    def enabled_channels(self) -> frozenset[str]:
        """Names of the channels that are switched on."""
        return frozenset(name for name, spec in self.channels.items() if spec.enabled)


class Worker(Protocol):
    """A long-running engine task: it returns soon after `stop` is set, finishing its current unit."""

    name: str

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set."""


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling (the service owns SIGTERM) and with a started event."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.started_event = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.started_event.set()


def bind(listener: Listener) -> socket.socket:
    """Bind and listen now, so a taken port fails start-up before anything says ready."""
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((listener.host, listener.port))
    except OSError as exc:
        sock.close()
        raise OSError(
            f"cannot listen for {listener.name} on {listener.host}:{listener.port}: {exc.strerror}"
        ) from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def server_config(listener: Listener, app: ASGIApp, *, graceful_s: float = 5.0) -> uvicorn.Config:
    """How uvicorn serves `app` on `listener`: h11 with a per-request read deadline, no access
    log or server header, `graceful_s` for open requests on shutdown."""
    return uvicorn.Config(
        quiet_disconnects(app),
        http=with_read_timeout(listener.read_timeout_s),
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=max(1, int(graceful_s)),
        ssl_certfile=listener.tls_certfile,
        ssl_keyfile=listener.tls_keyfile,
    )


class Service:
    """One daemon process: the two HTTP apps, the scheduler and the engine workers."""

    def __init__(
        self,
        settings: ServiceSettings,
        db: Database,
        *,
        workers: Sequence[Worker] = (),
        webhook_app: Starlette | None = None,
        metrics: Metrics | None = None,
        notifier: Notifier | None = None,
        on_ready: Callable[[Service], None] | None = None,
        connectors: Mapping[str, Connector] | None = None,
        webhook_handlers: Mapping[str, WebhookHandler] | None = None,
        notice_queues: Mapping[str, NoticeQueue] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.metrics = metrics or Metrics(settings.version)
        self.notifier = notifier or Notifier()
        self.workers = list(workers)
        self.connectors = dict(connectors or {})
        self.pusher: StockPusher | None = None
        self.fanout: FanoutWorker | None = None
        self.budgets: BudgetKeeper | None = None
        self.sync_scheduler: Scheduler | None = None
        self.health = ChannelHealth(db)
        self.webhook_app = webhook_app or create_webhook_app({})
        self.webhook_handlers = dict(webhook_handlers or {})
        self.inbox: InboxWorker | None = None
        self.notice_queues = dict(notice_queues or {})  # channels whose notices come by queue
        self.notice_workers: list[NoticeQueueWorker] = []
        self.read_back = ShipmentReadBack({})  # replaced at start by _wire_read_back
        self.stop_event = asyncio.Event()
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.admin_address: tuple[str, int] | None = None
        self.webhooks_address: tuple[str, int] | None = None
        self._draining = False
        self._on_ready = on_ready
        self._schema_problem: str | None = None

    def request_stop(self) -> None:
        """Begin a graceful stop (idempotent; safe from a signal handler on the loop)."""
        if not self.stop_event.is_set():
            log.info(
                "stop requested: no new work; draining for up to %.0f s",
                self.settings.drain_deadline_s,
            )
            self.stop_event.set()

    async def run(self) -> int:
        """Serve until asked to stop; answer the process exit code."""
        try:
            with exclusive_store(self.db):  # SQLite: one daemon per store file
                return await self._run()
        except StoreInUseError as exc:
            log.error("%s", exc)
            return EXIT_STORE_IN_USE

    async def _run(self) -> int:
        try:
            await wait_for_store(
                self.db,
                limit_s=self.settings.store_wait_s,
                stop=self.stop_event,
                on_wait=self.notifier.status,
            )
        except StoreUnreachableError as exc:
            log.error("the store did not answer within %.0f s: %s", self.settings.store_wait_s, exc)
            return EXIT_STORE_UNREACHABLE
        try:
            await asyncio.to_thread(ensure_schema, self.db, auto_migrate=self.settings.auto_migrate)
        except SchemaOutOfDateError as exc:
            log.error("%s", exc)
            return 3
        await asyncio.to_thread(self._seal_buyer_data)
        channel_ids = await asyncio.to_thread(self._register_channels)
        # Daily budgets metered here (eBay): seeded from the store before anything is sent.
        self.budgets = BudgetKeeper(
            self.db,
            {
                channel_ids[name]: connector
                for name, connector in self.connectors.items()
                if name in channel_ids and isinstance(connector, MetersDailyBudgets)
            },
        )
        await self.budgets.sync_once()
        self.workers.append(self.budgets)
        # One view of which channels may be called, shared by pusher and scheduler.
        self.health = ChannelHealth(self.db, self.settings.enabled_channels)
        self.pusher = StockPusher(
            self.db,
            [
                PushChannel(
                    name,
                    self.connectors[name],
                    ChannelStockPlan(channel_ids[name], spec.rules, spec.locations),
                    Coalescing.tuned(
                        self.connectors[name].capabilities,
                        max_linger_s=spec.push_max_linger_s,
                        pause_s=spec.push_pause_s,
                        hold_full=spec.push_hold_full,
                        confirm_hold_s=spec.push_confirm_hold_s,
                    ),
                )
                for name, spec in self.settings.channels.items()
                if spec.enabled and name in self.connectors
            ],
            metrics=self.metrics,
            is_callable=self.health.is_callable,
            on_auth_error=self.health.report_auth_failure,
            lease=timedelta(seconds=self.settings.outbox_lease_s),
            retry=self.settings.retry,
        )
        self.workers.append(self.pusher)
        # Status out: shipments and cancellations to each order's origin channel.
        self.fanout = FanoutWorker(
            self.db,
            [
                FanoutChannel(name, channel_ids[name], self.connectors[name])
                for name, spec in self.settings.channels.items()
                if spec.enabled and name in self.connectors
            ],
            metrics=self.metrics,
            lease=timedelta(seconds=self.settings.outbox_lease_s),
            retry=self.settings.retry,
            is_callable=self.health.is_callable,
            on_auth_error=self.health.report_auth_failure,
        )
        self.workers.append(self.fanout)
        self.sync_scheduler = self._build_scheduler(channel_ids)
        self.workers.append(self.sync_scheduler)
        if self.webhook_handlers or self.notice_queues:
            self._wire_webhooks(channel_ids)
        self._wire_read_back()
        self.metrics.watch_store(self.db.read_session)
        admin_ctx = AdminContext(
            db=self.db,
            metrics=self.metrics,
            token=lambda: self.settings.admin_token,
            enabled_channels=set(self.settings.enabled_channels),
            schema_problem=lambda: self._schema_problem,
            is_draining=lambda: self._draining,
            on_ledger_change=self.pusher.wake,
            on_fanout=self.fanout.wake,
            sync_channel=self.sync_scheduler.sync_now,
            instance=self.sync_scheduler.describe,
            channel_notes=self._channel_notes,
        )
        servers = []
        for listener, app in (
            (self.settings.webhooks, self.webhook_app),
            (self.settings.admin, create_admin_app(admin_ctx)),
        ):
            sock = bind(listener)
            host, port = sock.getsockname()[:2]
            if listener.name == "admin":
                self.admin_address = (host, port)
            else:
                self.webhooks_address = (host, port)
            server = _Server(
                server_config(listener, app, graceful_s=self.settings.drain_deadline_s)
            )
            servers.append((listener, server, sock))

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)

        serve_tasks = [
            asyncio.create_task(server.serve(sockets=[sock]), name=f"serve-{listener.name}")
            for listener, server, sock in servers
        ]

        async def all_listening() -> None:
            for _, server, _ in servers:
                await server.started_event.wait()

        all_started = asyncio.create_task(all_listening())
        await asyncio.wait([all_started, *serve_tasks], return_when=asyncio.FIRST_COMPLETED)
        if not all_started.done():
            all_started.cancel()
            failed = next(t for t in serve_tasks if t.done())
            raise RuntimeError(f"a listener stopped during start-up: {failed.exception()!r}")

        self._schedule_housekeeping()
        self.sync_scheduler.schedule(self.scheduler)
        self.scheduler.start()
        worker_tasks = [
            asyncio.create_task(w.run(self.stop_event), name=f"worker-{w.name}")
            for w in self.workers
        ]
        watchdog = asyncio.create_task(self._watchdog(), name="watchdog")
        for listener, _, sock in servers:
            host, port = sock.getsockname()[:2]
            log.info("%s listening on http://%s:%s", listener.name, _url_host(host), port)
        subscribing = self._subscribe_webhooks()
        self.notifier.ready(f"serving {len(self.settings.enabled_channels)} channel(s)")
        log.info("ready")
        if self._on_ready is not None:
            self._on_ready(self)

        await self.stop_event.wait()
        subscribing.cancel()
        await self._drain(servers, serve_tasks, worker_tasks)
        watchdog.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        self.notifier.close()
        log.info("stopped")
        return 0

    async def _drain(
        self,
        servers: list[tuple[Listener, _Server, socket.socket]],
        serve_tasks: list[asyncio.Task[None]],
        worker_tasks: list[asyncio.Task[None]],
    ) -> None:
        """Stop taking work, let in-flight work finish until the deadline, then cancel the rest."""
        self._draining = True
        self.notifier.stopping("draining")
        self.scheduler.shutdown(wait=False)
        for _, server, _ in servers:
            server.should_exit = True
        pending = [*serve_tasks, *worker_tasks]
        done, still = await asyncio.wait(pending, timeout=self.settings.drain_deadline_s)
        for task in still:
            log.warning("drain deadline passed; cancelling %s", task.get_name())
            task.cancel()
        for task in done:
            if not task.cancelled() and task.exception():
                log.error(
                    "%s ended with an error during drain: %r", task.get_name(), task.exception()
                )
        if still:
            await asyncio.wait(still, timeout=2)
        for _, _, sock in servers:
            sock.close()

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        # Half the interval, as sd_watchdog_enabled(3) advises; a stalled loop misses the ping.
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval.total_seconds() / 2)

    def _seal_buyer_data(self) -> None:
        """Install the keyring; seal what a store older than migration 0005 kept in plain text."""
        if self.settings.buyer_keyring is not None:
            install_keyring(self.settings.buyer_keyring)
        keyring = current_keyring()
        log.info("buyer data sealed under key id %s", keyring.current_id)
        done = seal_legacy(self.db, keyring)
        if done.sealed_legacy_orders or done.sealed_legacy_inbox:
            log.info(
                "sealed buyer data kept in plain text by an older version: %d order(s), "
                "%d webhook delivery(ies)",
                done.sealed_legacy_orders,
                done.sealed_legacy_inbox,
            )

    def _register_channels(self) -> dict[str, int]:
        with self.db.session() as session:
            return register_channels(
                session,
                {name: (spec.kind, spec.enabled) for name, spec in self.settings.channels.items()},
            )

    def _build_scheduler(self, channel_ids: Mapping[str, int]) -> Scheduler:
        """Poll and reconcile every enabled channel under leases; one health view for all."""
        served = {
            name: spec
            for name, spec in self.settings.channels.items()
            if spec.enabled and name in self.connectors
        }
        health = self.health

        def wake() -> None:  # from any thread: ingest or a repair left listings dirty
            if self.pusher is not None:
                self.pusher.wake()
            if self.fanout is not None:
                self.fanout.wake()

        health.on_recovered(lambda _name: wake())
        channels = []
        for name, spec in served.items():
            connector = self.connectors[name]
            ref = ChannelRef(channel_ids[name], name, spec.locations)
            channels.append(
                ScheduledChannel(
                    PollChannel(ref, connector), spec.poll_interval_s, spec.reconcile_interval_s
                )
            )
        return Scheduler(
            self.db,
            channels,
            self.settings.schedule,
            health=health,
            metrics=self.metrics,
            wake=wake,
        )

    # Webhooks (issue 5): receivers per channel kind that has a handler, the inbox worker, and
    # the subscriptions made at start. ---------------------------------------------------------

    def _wire_webhooks(self, channel_ids: Mapping[str, int]) -> None:
        """Route each served channel with a webhook handler to a receiver; process its inbox."""
        served = {
            name: handler
            for name, handler in self.webhook_handlers.items()
            if name in self.connectors and self.settings.channels[name].enabled
        }
        queued = {
            name: queue
            for name, queue in self.notice_queues.items()
            if name in self.connectors and self.settings.channels[name].enabled
        }
        channels = []
        for name, handler in {**served, **{n: NoticeHandler(q) for n, q in queued.items()}}.items():
            spec, connector = self.settings.channels[name], self.connectors[name]
            ref = ChannelRef(channel_ids[name], name, spec.locations)
            channels.append(InboxChannel(ref, handler, connector))

        def wake() -> None:
            if self.pusher is not None:
                self.pusher.wake()
            if self.fanout is not None:
                self.fanout.wake()

        self.inbox = InboxWorker(
            self.db,
            channels,
            metrics=self.metrics,
            on_change=wake,
            on_revoked=self.health.record_auth_failure,
            is_callable=self.health.is_callable,
        )
        self.workers.append(self.inbox)
        inbox = self.inbox
        commits = CommitQueue(self.db)  # shared, so deliveries to every channel share commits
        self.webhook_app = create_webhook_app(
            {
                c.name: create_receiver(
                    self.db,
                    channel=c.name,
                    channel_id=c.ref.id,
                    handler=c.handler,
                    on_recorded=inbox.wake,
                    commit_queue=commits,
                    max_body_bytes=self.settings.webhook_max_body_bytes,
                )
                for c in channels
                if c.name in served
            }
        )
        # Notice queues (issue 6): each one's notices go to the same inbox, acknowledged after.
        for c in channels:
            if c.name in queued:
                worker = NoticeQueueWorker(
                    self.db, c.ref.id, queued[c.name], on_recorded=inbox.wake
                )
                self.notice_workers.append(worker)
                self.workers.append(worker)

    def _wire_read_back(self) -> None:
        """Read back shipments on channels whose confirmations may lag (sync/read_back.py)."""
        read_back = self.read_back = ShipmentReadBack(
            {
                name: connector
                for name, connector in lagging_channels(self.connectors).items()
                if name in self.settings.enabled_channels
            },
            is_callable=self.health.is_callable,
            on_auth_error=self.health.report_auth_failure,
        )
        if read_back.channels:
            self.workers.append(read_back)
            self.metrics.registry.register(UnseenShipmentsCollector(read_back.channels))

    def _channel_notes(self) -> dict[str, dict[str, Any]]:
        """What /api/status adds per channel: unseen shipments, a notice queue's problem."""
        notes = self.read_back.notes()
        for worker in self.notice_workers:
            notes.setdefault(worker.queue.channel, {})["notice_queue"] = {
                "problem": worker.problem,
                "received": worker.received,
                "recorded": worker.recorded,
            }
        return notes

    def _subscribe_webhooks(self) -> asyncio.Task[None]:
        """Make sure each webhook channel's subscriptions exist, off the start-up path: a
        failure is logged and the channel keeps being polled."""

        async def subscribe() -> None:
            for name in self.webhook_handlers:
                connector = self.connectors.get(name)
                if not isinstance(connector, SubscribesWebhooks):
                    continue
                if not self.health.is_callable(name):
                    continue
                try:
                    await connector.ensure_webhooks()
                except ConnectorError as exc:
                    log.error("channel %s: could not subscribe to webhooks: %s", name, exc)
                except Exception:
                    # The supervisor of this start-up task: the daemon runs on, polling.
                    log.exception("channel %s: subscribing to webhooks failed", name)

        return asyncio.create_task(subscribe(), name="webhook-subscriptions")

    def _schedule_housekeeping(self) -> None:
        self.scheduler.add_job(
            self._purge,
            "interval",
            hours=1,
            jitter=300,
            id="housekeeping.purge",
            next_run_time=datetime.now(UTC) + timedelta(minutes=1),
            max_instances=1,
            coalesce=True,
        )
        # Buyer data past retention: idempotent, so each instance runs it (sync.buyer_data).
        every = self.settings.buyer_data_purge_every_s
        self.scheduler.add_job(
            self._purge_buyer_data,
            "interval",
            seconds=every,
            jitter=int(min(300.0, every / 10)),
            id="retention.buyer_data",
            next_run_time=datetime.now(UTC) + timedelta(seconds=min(60.0, every)),
            max_instances=1,
            coalesce=True,
        )

    async def _purge_buyer_data(self) -> None:
        days = self.settings.buyer_data_days
        erased = await asyncio.to_thread(purge_buyer_data, self.db, datetime.now(UTC), days=days)
        if erased:
            log.info(
                "retention: erased the buyer data of %d orders delivered %d+ days ago", erased, days
            )

    async def _purge(self) -> None:
        def purge() -> tuple[int, int]:
            with self.db.session() as session:
                return purge_expired(
                    session,
                    datetime.now(UTC),
                    inbox_days=self.settings.inbox_retention_days,
                    events_days=self.settings.events_retention_days,
                    buyer_data_days=self.settings.buyer_data_days,
                )

        inbox, events = await asyncio.to_thread(purge)
        if inbox or events:
            log.info("retention: purged %d inbox deliveries and %d events", inbox, events)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
