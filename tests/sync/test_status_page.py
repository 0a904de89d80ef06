"""The status page's server side: the public page and assets, `/api/latency` behind the token, the
latency window (bounded, per channel) and what the stock pusher feeds it, on a real store.

The page itself, in a real browser, is tests/sync/test_status_page_browser.py.
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
import tomllib
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest
from sqlalchemy import update
from starlette.exceptions import StarletteDeprecationWarning

from connectors.base import Capabilities, PushOutcome, StockPushResult, StockTarget
from connectors.errors import RetryableError
from sync.db import Database
from sync.http.admin import AdminContext, create_admin_app
from sync.latency import PushLatency, applied_latencies
from sync.metrics import Metrics
from sync.models import LANE_CONFIRM, JobKind, OutboxJob
from sync.push_store import Landed
from sync.pusher import StockPusher
from sync.stock_ops import set_stock
from sync.stock_push import PushBatch, plan_targets
from tests.sync.engine_harness import (
    IDLE_TIMEOUT_S,
    ChannelSpec,
    StoreSpec,
    build_store,
    start_in_sync,
)

with warnings.catch_warnings():
    # As in test_admin_api.py: Starlette 1.x prefers the `httpx2` fork for its TestClient.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

TOKEN = "status-page-admin-token-7c1d"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- the window --------------------------------------------------------------------------------


def test_the_window_summarises_each_channel_and_buckets_by_age() -> None:
    clock = Clock()
    ring = PushLatency(clock=clock)
    ring.observe("shop", [0.1, 0.2, 0.3])
    clock.now += 25
    ring.observe("shop", [1.0])
    ring.observe("plain", [0.5])
    clock.now += 1
    shown = ring.snapshot(bucket_s=10)
    shop = shown["channels"]["shop"]
    assert (shop["count"], shop["p50_s"], shop["p99_s"], shop["max_s"]) == (4, 0.2, 1.0, 1.0)
    # Oldest first: the three of 26 s ago fall in the bucket of ages 20-30 s, the last in 0-10 s.
    assert shop["buckets"] == [
        {"age_s": 20.0, "count": 3, "p50_s": 0.2, "max_s": 0.3},
        {"age_s": 0.0, "count": 1, "p50_s": 1.0, "max_s": 1.0},
    ]
    assert shown["channels"]["plain"]["count"] == 1
    assert shown["window_s"] == 600.0
    assert datetime.fromisoformat(shown["now"]) == datetime.fromtimestamp(clock.now, UTC)


def test_the_window_forgets_what_is_older_than_it_and_holds_a_bounded_count() -> None:
    clock = Clock()
    ring = PushLatency(clock=clock, window_s=60, max_per_channel=100)
    ring.observe("shop", [9.0])
    clock.now += 61
    ring.observe("shop", [0.01] * 250)
    shop = ring.snapshot()["channels"]["shop"]
    assert shop["count"] == 100  # the newest 100; the 9 s one aged out
    assert shop["max_s"] == 0.01
    clock.now += 61
    assert ring.snapshot()["channels"]["shop"] == {
        "count": 0,
        "p50_s": None,
        "p99_s": None,
        "max_s": None,
        "buckets": [],
    }


def test_the_histogram_counts_every_figure_for_prometheus() -> None:
    metrics = Metrics("test")
    metrics.push_latency.observe("shop", [0.04, 0.3, 7.0])
    count = metrics.registry.get_sample_value(
        "channel_sync_stock_push_latency_seconds_count", {"channel": "shop"}
    )
    under_half = metrics.registry.get_sample_value(
        "channel_sync_stock_push_latency_seconds_bucket", {"channel": "shop", "le": "0.5"}
    )
    assert (count, under_half) == (3.0, 2.0)


# --- what a drain step recorded as applied -----------------------------------------------------


def _job(job_id: int, planned: datetime) -> OutboxJob:
    return OutboxJob(id=job_id, kind=JobKind.STOCK, created_at=planned, payload={})


def _landed(jobs: list[OutboxJob], outcomes: list[PushOutcome] | None) -> Landed:
    targets = [StockTarget(listing_ref=f"L{job.id}", quantity=1) for job in jobs]
    batch = PushBatch(jobs=jobs, targets=targets, stale=[])
    if outcomes is None:
        return Landed(batch, error=RetryableError("the channel is down"))
    results = [
        StockPushResult(listing_ref=t.listing_ref, outcome=o)
        for t, o in zip(targets, outcomes, strict=True)
    ]
    return Landed(batch, results=results)


def test_only_applied_targets_recorded_in_this_step_count_from_when_they_were_planned() -> None:
    now = T0 + timedelta(seconds=10)
    answered = _landed(
        [_job(1, T0), _job(2, T0), _job(3, T0 + timedelta(seconds=9)), _job(4, T0)],
        [PushOutcome.APPLIED, PushOutcome.CONFLICT, PushOutcome.APPLIED, PushOutcome.APPLIED],
    )
    failed = _landed([_job(5, T0)], None)
    # Job 4's listing was held by another transaction: its figure comes with a later step.
    deferred = [_landed([_job(4, T0)], [PushOutcome.APPLIED])]
    assert applied_latencies([answered, failed], deferred, now) == [10.0, 1.0]


def test_a_confirmation_held_for_company_is_no_ones_latency() -> None:
    now = T0 + timedelta(seconds=10)
    confirmation = _job(1, T0)
    confirmation.lane = LANE_CONFIRM
    change = _job(2, T0 + timedelta(seconds=9))
    landed = _landed([confirmation, change], [PushOutcome.APPLIED, PushOutcome.APPLIED])
    assert applied_latencies([landed], [], now) == [1.0]


def test_the_pusher_reports_each_applied_push_from_when_it_was_planned(
    database: Database,
) -> None:
    store = build_store(
        database,
        StoreSpec(
            channels=[
                ChannelSpec("batching", Capabilities(max_stock_batch=10, max_in_flight=2)),
                ChannelSpec("single", Capabilities(max_stock_batch=1, max_in_flight=1)),
            ],
            skus=["A", "B", "C"],
            on_hand={(sku, "default"): 10 for sku in "ABC"},
        ),
    )
    start_in_sync(store)
    for sku, units in (("A", 4), ("B", 5), ("C", 6)):
        database.transact(lambda s, sku=sku, units=units: set_stock(s, sku, "default", units))
    plans = {c.id: c.plan for c in store.channels.values()}
    planned = database.transact(lambda s: plan_targets(s, plans))
    assert {cid: each.jobs for cid, each in planned.items()} == {
        c.id: 3 for c in store.channels.values()
    }
    # Planned 30 s ago, as if the channel had been slow: the figure must include that wait.
    with database.session() as session:
        session.execute(
            update(OutboxJob).values(created_at=datetime.now(UTC) - timedelta(seconds=30))
        )
    metrics = Metrics("test")
    pusher = StockPusher(database, store.push_channels(), metrics=metrics, idle_s=0.05)
    started = time.monotonic()

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(pusher.run(stop))
        try:
            await asyncio.wait_for(pusher.wait_idle(poll_s=0.01), IDLE_TIMEOUT_S)
        finally:
            stop.set()
            await asyncio.wait_for(task, IDLE_TIMEOUT_S)

    asyncio.run(scenario())
    took = time.monotonic() - started
    shown = metrics.push_latency.snapshot()["channels"]
    assert set(shown) == {"batching", "single"}
    for name in ("batching", "single"):
        applied = metrics.registry.get_sample_value(
            "channel_sync_stock_pushes_total", {"channel": name, "outcome": "applied"}
        )
        assert shown[name]["count"] == applied == 3
        assert 30 <= shown[name]["p50_s"] <= shown[name]["max_s"] <= 30 + took + 1


# --- the admin app -----------------------------------------------------------------------------


@pytest.fixture
def client(database: Database) -> Iterator[tuple[TestClient, Metrics]]:
    metrics = Metrics("test")
    ctx = AdminContext(
        db=database,
        metrics=metrics,
        token=lambda: TOKEN,
        enabled_channels=set(),
        schema_problem=lambda: None,
    )
    with TestClient(create_admin_app(ctx)) as test_client:
        yield test_client, metrics


def test_the_page_and_its_assets_load_without_a_token_and_allow_only_this_origin(
    client: tuple[TestClient, Metrics],
) -> None:
    http, _ = client
    page = http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/status.js"' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy and "http" not in policy  # nothing from elsewhere
    assert page.headers["referrer-policy"] == "no-referrer"
    script = http.get("/static/status.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "sessionStorage" in script.text
    assert http.get("/static/status.css").headers["content-type"].startswith("text/css")
    # Only the named assets are public: any other path still needs the token.
    assert http.get("/static/status.html").status_code == 401
    assert http.get("/static/../api/status").status_code == 401


def test_latency_needs_the_token_and_answers_the_window(
    client: tuple[TestClient, Metrics],
) -> None:
    http, metrics = client
    assert http.get("/api/latency").status_code == 401
    assert http.get("/api/status").status_code == 401
    metrics.push_latency.observe("shop", [0.25, 0.75])
    answer = http.get("/api/latency", headers=AUTH)
    assert answer.status_code == 200
    shop = answer.json()["channels"]["shop"]
    assert (shop["count"], shop["p50_s"], shop["max_s"]) == (2, 0.25, 0.75)
    assert [b["count"] for b in shop["buckets"]] == [2]
    histogram = http.get("/metrics", headers=AUTH).text
    assert 'channel_sync_stock_push_latency_seconds_count{channel="shop"} 2.0' in histogram


def test_the_page_ships_as_package_data() -> None:
    """An installed (not editable) package carries only what pyproject's package data names."""
    repo = Path(__file__).resolve().parents[2]
    config = tomllib.loads((repo / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["sync"]
    static = resources.files("sync.http") / "static"
    files = [f"http/static/{p.name}" for p in static.iterdir() if p.is_file()]
    assert {"http/static/status.html", "http/static/status.js", "http/static/status.css"} <= set(
        files
    )
    for name in files:
        assert any(fnmatch.fnmatch(name, glob) for glob in globs), f"{name} is not package data"
