"""Prometheus metrics: counters the engine bumps, and gauges read from the store at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connectors.base import OrderStatus
from sync.latency import PushLatency
from sync.models import Channel, Order, OrderLine
from sync.status import ChannelStatus, channel_statuses


class Metrics:
    """One registry per daemon, so tests can run several without shared global state."""

    def __init__(self, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.build = Info(
            "channel_sync_build", "Version of the running daemon.", registry=self.registry
        )
        self.build.info({"version": version})
        self.orders_ingested = Counter(
            "channel_sync_orders_ingested",
            "Orders created or updated in the store, by channel.",
            ["channel"],
            registry=self.registry,
        )
        self.oversells = Counter(
            "channel_sync_oversells",
            "Orders that could not be fully reserved when ingested, by channel.",
            ["channel"],
            registry=self.registry,
        )
        self.stock_pushes = Counter(
            "channel_sync_stock_pushes",
            "Listing quantities pushed to channels, by channel and outcome.",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.api_calls = Counter(
            "channel_sync_api_calls",
            "Calls made to a channel's API, by channel and operation.",
            ["channel", "operation"],
            registry=self.registry,
        )
        self.throttles = Counter(
            "channel_sync_throttles",
            "Calls a channel answered with a rate limit, by channel.",
            ["channel"],
            registry=self.registry,
        )
        # Status out (sync/fanout_worker.py): outcome is applied, already_there (found on the
        # channel after an unclear attempt), uncertain, retry, auth or dead.
        self.fanout_pushes = Counter(
            "channel_sync_fanout_pushes",
            "Shipment and cancel jobs sent to their origin channel, by channel, kind and outcome.",
            ["channel", "kind", "outcome"],
            registry=self.registry,
        )
        # Stock out (sync/pusher.py): planned-to-applied seconds, a histogram and the status
        # page's in-memory window (sync/latency.py).
        self.push_latency = PushLatency(self.registry)
        # Admin API (sync/http/admin.py, admin_guard.py): token guessing, visible to alerting.
        self.admin_auth = Counter(
            "channel_sync_admin_auth",
            "Admin requests refused, by outcome: bad_token (401), locked_out (429), and lockout "
            "(an address that reached the bad-token limit and was locked out).",
            ["outcome"],
            registry=self.registry,
        )
        self._add_scheduler_metrics()

    def _add_scheduler_metrics(self) -> None:
        # Scheduling (sync/scheduler.py, sync/reconcile.py): runs, ticks, repairs, leases.
        self.scheduled_runs = Counter(
            "channel_sync_scheduled_runs",
            "Poll and reconcile runs, by channel, job and outcome (ok, failed, auth_failed).",
            ["channel", "job", "outcome"],
            registry=self.registry,
        )
        self.scheduler_ticks = Counter(
            "channel_sync_scheduler_ticks",
            "Ticks of a periodic job this instance ran (run), and ticks before them nobody ran "
            "(skipped: backoff, auth failure, every instance down, a lease without a live holder).",
            ["channel", "job", "outcome"],
            registry=self.registry,
        )
        self.reconcile_repairs = Counter(
            "channel_sync_reconcile_repairs",
            "Drift repaired by reconcile, by channel and kind (order_missing, order_stale, "
            "stock_drift).",
            ["channel", "kind"],
            registry=self.registry,
        )
        self.listings_bound = Counter(
            "channel_sync_listings_bound",
            "Channel listings bound to a known SKU by reconcile, by channel.",
            ["channel"],
            registry=self.registry,
        )
        self.lease_takeovers = Counter(
            "channel_sync_lease_takeovers",
            "Leases this instance took from a holder that stopped renewing, by lease.",
            ["lease"],
            registry=self.registry,
        )
        self.lease_takeover_seconds = Gauge(
            "channel_sync_lease_takeover_seconds",
            "Seconds between the old holder's last heartbeat and the last takeover, by lease.",
            ["lease"],
            registry=self.registry,
        )

    def watch_store(self, read_session: Callable[[], AbstractContextManager[Session]]) -> None:
        """Add gauges computed from the store on every scrape."""
        self.registry.register(_StoreCollector(read_session))


class _StoreCollector(Collector):
    """Job counts, channel health and lag straight from the store: right after any restart."""

    def __init__(self, read_session: Callable[[], AbstractContextManager[Session]]) -> None:
        self._read_session = read_session

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "channel_sync_jobs", "Outbox jobs by channel and state.", labels=["channel", "state"]
        )
        up = GaugeMetricFamily(
            "channel_sync_channel_up",
            "1 when the channel is ok, 0 when degraded, auth-failed or disabled.",
            labels=["channel", "state"],
        )
        lag = GaugeMetricFamily(
            "channel_sync_channel_lag_seconds",
            "Seconds since the channel's last successful poll.",
            labels=["channel"],
        )
        unmapped = GaugeMetricFamily(
            "channel_sync_unmapped_lines",
            "Order lines whose channel SKU is none of ours, on orders not cancelled, by channel.",
            labels=["channel"],
        )
        oversold = GaugeMetricFamily(
            "channel_sync_oversold_orders",
            "Orders flagged oversold (reserved beyond stock), by channel.",
            labels=["channel"],
        )
        with self._read_session() as session:
            statuses = channel_statuses(session, datetime.now(UTC))
            unmapped_counts = _unmapped_lines_by_channel(session)
            oversold_counts = _oversold_orders_by_channel(session)
        for status in statuses:
            jobs.add_metric([status.name, "pending"], status.jobs_pending)
            jobs.add_metric([status.name, "dead"], status.jobs_dead)
            up.add_metric([status.name, status.state], 1.0 if status.state == "ok" else 0.0)
            if status.lag_s is not None:
                lag.add_metric([status.name], status.lag_s)
            unmapped.add_metric([status.name], unmapped_counts.get(status.name, 0))
            oversold.add_metric([status.name], oversold_counts.get(status.name, 0))
        yield jobs
        yield up
        yield lag
        yield unmapped
        yield oversold
        yield from _status_families(statuses)


def _status_families(statuses: list[ChannelStatus]) -> Iterator[Metric]:
    """The rest of what /api/status says per channel (sync/status.py), as gauges."""
    today = GaugeMetricFamily(
        "channel_sync_orders_ingested_today",
        "Orders first stored since midnight UTC, by channel.",
        labels=["channel"],
    )
    last_poll = GaugeMetricFamily(
        "channel_sync_channel_last_poll_timestamp_seconds",
        "Unix time of the channel's last successful poll.",
        labels=["channel"],
    )
    for status in statuses:
        today.add_metric([status.name], status.orders_today)
        if status.last_poll_at is not None:
            last_poll.add_metric([status.name], status.last_poll_at.timestamp())
    yield today
    yield last_poll


def _unmapped_lines_by_channel(session: Session) -> dict[str, int]:
    return dict(
        session.execute(
            select(Channel.name, func.count(OrderLine.id))
            .join(Order, Order.channel_id == Channel.id)
            .join(OrderLine, OrderLine.order_id == Order.id)
            .where(OrderLine.sku.is_(None), Order.status != OrderStatus.CANCELLED)
            .group_by(Channel.name)
        ).all()
    )


def _oversold_orders_by_channel(session: Session) -> dict[str, int]:
    return dict(
        session.execute(
            select(Channel.name, func.count(Order.id))
            .join(Order, Order.channel_id == Channel.id)
            .where(Order.is_oversold.is_(True))
            .group_by(Channel.name)
        ).all()
    )
