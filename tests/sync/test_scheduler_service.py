"""Scheduling inside the running service, seen through what an operator uses.

The real Service (both HTTP apps on loopback, APScheduler, the scheduler, the stock pusher) runs
against a reference channel: orders come in by polling, reconcile binds the channel's listing and
the pusher sets it right; /api/status, /metrics, /readyz and `POST /api/channels/{name}/sync`
tell it; refused credentials stop every call to the channel but the slow check, and it recovers
alone. Then the two process-level guards: a second daemon on one SQLite file is refused, and
`channel-sync status` prints the table.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from connectors.base import Capabilities
from connectors.memory import MemoryConnector, MemoryMarketplace
from daemon import cli
from sync.channels import register_channels
from sync.db import Database, sqlite_url
from sync.models import Event, JobKind, JobState, Listing, OutboxJob, Sku, StockLevel
from sync.scheduler import SchedulerSettings
from sync.service import ChannelSpec, Listener, Service, ServiceSettings
from sync.status import channel_statuses
from tests.support.daemon import Daemon, DaemonConfig

TOKEN = "scheduler-service-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DEADLINE_S = 20.0


def _settings() -> ServiceSettings:
    return ServiceSettings(
        webhooks=Listener("webhooks", "127.0.0.1", 0),
        admin=Listener("admin", "127.0.0.1", 0),
        admin_token=TOKEN,
        drain_deadline_s=5,
        auto_migrate=True,
        channels={
            "shop": ChannelSpec(kind="memory", enabled=True, poll_interval_s=0.3),
            "off": ChannelSpec(kind="memory", enabled=False),
        },
        inbox_retention_days=14,
        events_retention_days=90,
        version="test",
        schedule=SchedulerSettings(
            heartbeat_s=0.2,
            lease_ttl_s=0.4,
            outbox_interval_s=0.1,
            initial_lookback_s=400 * 86400,  # the reference marketplace's clock starts 2026-01-01
            auth_recheck_s=0.5,
            max_start_jitter_s=0.05,
        ),
    )


async def _until(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {DEADLINE_S} s waiting for {what}")
        await asyncio.sleep(0.02)
    return result


def test_the_service_polls_reconciles_reports_and_survives_refused_credentials(
    database: Database,
) -> None:
    with database.session() as session:
        session.add(Sku(sku="A"))
        session.flush()
        session.add(StockLevel(sku="A", location="default", on_hand=10))
    market = MemoryMarketplace()
    market.set_stock("A", 0)  # listed on the channel, never bound here
    connector = MemoryConnector(market, name="shop", capabilities=Capabilities(max_stock_batch=5))

    async def scenario() -> None:
        ready = asyncio.Event()
        service = Service(
            _settings(), database, connectors={"shop": connector}, on_ready=lambda _: ready.set()
        )
        running = asyncio.create_task(service.run())
        await asyncio.wait_for(ready.wait(), DEADLINE_S)
        assert service.admin_address is not None
        host, port = service.admin_address
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", headers=AUTH) as api:

            async def status() -> dict[str, Any]:
                answer = (await api.get("/api/status")).json()
                return {c["name"]: c for c in answer["channels"]} | {"": answer}

            # Reconcile binds the listing and the pusher tells the channel the ledger's figure.
            await _until(lambda: _shows(market, "A", 10), "the bound listing to be pushed")
            market.place_order([("A", 2)])  # the channel lowers its own figure to 8
            await _until(lambda: _orders_today(status, 1), "the order to be polled")
            shop = (await status())["shop"]
            assert shop["state"] == "ok" and shop["last_error"] is None
            assert shop["lag_s"] is not None and shop["lag_s"] < 5
            assert shop["jobs_dead"] == 0 and isinstance(shop["jobs_pending"], int)
            assert (await status())["off"]["state"] == "disabled"
            instance = (await status())[""]["instance"]
            assert sorted(instance["leases_held"]) == ["shop:poll", "shop:reconcile"]

            metrics = (await api.get("/metrics")).text
            assert 'channel_sync_orders_ingested_today{channel="shop"} 1.0' in metrics
            assert 'channel_sync_channel_last_poll_timestamp_seconds{channel="shop"}' in metrics
            assert 'channel_sync_scheduled_runs_total{channel="shop",job="poll",outcome="ok"}' in (
                metrics
            )
            assert 'channel_sync_listings_bound_total{channel="shop"} 1.0' in metrics

            synced = await api.post("/api/channels/shop/sync")
            assert synced.status_code == 200, synced.text
            body = synced.json()
            assert body["poll"]["ok"] and body["reconcile"]["ok"]
            assert body["reconcile"]["listings_checked"] == 1
            assert (await api.post("/api/channels/nope/sync")).status_code == 404
            assert (await api.post("/api/channels/off/sync")).status_code == 404
            wrong = {"Authorization": "Bearer wrong-token"}
            assert (await api.post("/api/channels/shop/sync", headers=wrong)).status_code == 401

            # Credentials refused: not ready, auth-failed, and nothing calls the channel.
            market.faults.auth_broken = True
            await _until(lambda: _not_ready(api), "/readyz to say the channel failed auth")
            assert (await status())["shop"]["state"] == "auth_failed"
            refused = await api.post("/api/channels/shop/sync")
            assert refused.status_code == 409 and "credentials" in refused.json()["detail"]
            put = await api.put("/api/stock/A", json={"location": "default", "on_hand": 20})
            assert put.status_code == 200
            calls = dict(market.calls)
            checks = market.calls["check_connection"]
            await _until(lambda: _at_least(market, "check_connection", checks + 2), "2 re-checks")
            assert {op: n for op, n in market.calls.items() if op != "check_connection"} == {
                op: n for op, n in calls.items() if op != "check_connection"
            }

            # Fixed: the next check finds out, the channel is ready again and gets the new figure.
            market.faults.auth_broken = False
            await _until(lambda: _ready(api), "/readyz to recover")
            await _until(lambda: _shows(market, "A", 18), "the new figure (20 - 2) to be pushed")
            assert (await status())["shop"]["state"] == "ok"
        service.request_stop()
        assert await asyncio.wait_for(running, DEADLINE_S) == 0

    asyncio.run(scenario())
    with database.read_session() as session:
        assert session.scalars(select(Listing.external_ref)).all() == ["A"]


async def _shows(market: MemoryMarketplace, ref: str, quantity: int) -> bool:
    return market.stock_of(ref) == quantity


async def _at_least(market: MemoryMarketplace, operation: str, count: int) -> bool:
    return market.calls[operation] >= count


async def _orders_today(status: Callable[[], Awaitable[dict[str, Any]]], count: int) -> bool:
    return bool((await status())["shop"]["orders_today"] == count)


async def _not_ready(api: httpx.AsyncClient) -> bool:
    answer = await api.get("/readyz")
    return answer.status_code == 503 and answer.json()["reasons"] == [
        "channel shop: authentication failed"
    ]


async def _ready(api: httpx.AsyncClient) -> bool:
    return (await api.get("/readyz")).status_code == 200


def test_a_second_daemon_on_the_same_sqlite_store_exits_saying_why(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "state" / "channel-sync.db")
    env = {"TEST_CHANNEL_SYNC_ADMIN_TOKEN": TOKEN}
    first = Daemon(DaemonConfig(root=tmp_path / "one", database_url=url), env)
    second = Daemon(DaemonConfig(root=tmp_path / "two", database_url=url), env)
    first.config.write()
    second.config.write()
    try:
        first.start()
        first.wait_healthy(timeout=DEADLINE_S)
        second.start()
        assert second.proc is not None
        code = second.proc.wait(timeout=DEADLINE_S)
        assert code == 4
        output = second.output()
        assert f"{tmp_path / 'state' / 'channel-sync.db'}.lock" in output
        assert "cannot be shared by several daemons" in output and "PostgreSQL" in output
        assert httpx.get(f"{first.config.admin_url}/healthz").status_code == 200
    finally:
        second.kill()
        first.kill()
    # Once the first one is gone (however it died) the store is free for a new daemon.
    second.start()
    try:
        second.wait_healthy(timeout=DEADLINE_S)
    finally:
        second.kill()


def test_the_status_command_prints_what_api_status_says(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with database.session() as session:
        ids = register_channels(session, {"shop": ("memory", True), "old": ("memory", False)})
        session.add(Event(kind="order.created", channel_id=ids["shop"], at=datetime.now(UTC)))
    config = DaemonConfig(root=tmp_path / "cfg", database_url=database.url)
    config.write()
    monkeypatch.setenv(config.admin_token_env, TOKEN)
    result = CliRunner().invoke(cli, ["status", "--config", str(config.root)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.output.splitlines() if "memory" in line}
    assert set(rows) == {"shop", "old"}
    assert "ok" in rows["shop"] and "never" in rows["shop"] and " 1 " in rows["shop"]
    assert "disabled" in rows["old"]


def test_status_says_degraded_for_dead_or_throttled_jobs_and_counts_today_s_orders(
    database: Database,
) -> None:
    now = datetime.now(UTC)
    with database.session() as session:
        ids = register_channels(
            session, {name: ("memory", True) for name in ("calm", "dead", "throttled")}
        )
        for name, state, error in (
            ("dead", JobState.DEAD, "PermanentError: no such listing"),
            ("throttled", JobState.PENDING, "RateLimitedError: slow down"),
            ("calm", JobState.PENDING, "RetryableError: connection reset"),
        ):
            session.add(
                OutboxJob(
                    channel_id=ids[name],
                    kind=JobKind.STOCK,
                    identity_key=f"stock:{name}",
                    payload={},
                    state=state,
                    last_error=error,
                )
            )
        session.add_all(
            [
                Event(kind="order.created", channel_id=ids["calm"], at=now),
                Event(kind="order.updated", channel_id=ids["calm"], at=now),
                Event(kind="order.created", channel_id=ids["calm"], at=now - timedelta(days=1)),
            ]
        )
    with database.read_session() as session:
        statuses = {s.name: s for s in channel_statuses(session, now)}
    assert {name: s.state for name, s in statuses.items()} == {
        "calm": "ok",
        "dead": "degraded",
        "throttled": "degraded",
    }
    assert statuses["calm"].orders_today == 1 and statuses["dead"].orders_today == 0
