"""The end-to-end bench's set-up: the three sandbox marketplaces (bench/e2e_sandboxes.py, a child
process) listing the bench's catalogue, a SQLite store holding the same catalogue and on hand,
and the daemon (`channel-sync run`, a child process) with one channel per marketplace (the demo's
channel files, sandbox/demo_config.py), every listing bound by a first sync.

Secrets stay in 0600 files under the state dir (the demo's way); nothing here prints one.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select

from bench.e2e_trace import CHANNELS
from sandbox.demo_catalogue import Product
from sandbox.demo_config import DemoPaths, write_channel_files
from sync.catalogue import define_catalogue
from sync.channels import register_channels
from sync.db import Database, sqlite_url, upgrade
from sync.models import JobState, Listing, OutboxJob, StockLevel
from tests.support.daemon import Daemon, DaemonConfig

ADMIN_TOKEN = "bench-e2e-admin-token-0123456789abcdef"
LOCATION = "default"
SANDBOX_SCRIPT = Path(__file__).resolve().with_name("e2e_sandboxes.py")
# Operations that set stock, per sandbox's own call count (`GET /_sandbox/calls`).
STOCK_OPERATIONS = {
    "shopify": frozenset({"inventorySetQuantities", "inventoryAdjustQuantities"}),
    "amazon": frozenset(
        {"patchListingsItem", "putListingsItem", "createFeedDocument", "createFeed", "getFeed"}
    ),
    "ebay": frozenset({"ReviseInventoryStatus", "ReviseFixedPriceItem", "bulkUpdatePriceQuantity"}),
}


@dataclass
class Rig:
    """The running set-up and how long each step of starting it took."""

    state: Path
    config: DaemonConfig
    daemon: Daemon
    sandboxes: dict[str, Any]
    db: Database
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def admin_url(self) -> str:
        """The daemon's admin API."""
        return self.config.admin_url

    def control(self, channel: str, path: str) -> str:
        """URL of a control API route of a channel's sandbox."""
        return f"{self.sandboxes[channel]['sandbox_url']}/_sandbox{path}"

    def admin_client(self, timeout: float = 60.0) -> httpx.AsyncClient:
        """An async client on the admin API with the bearer token."""
        return httpx.AsyncClient(
            base_url=self.admin_url,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=timeout,
        )

    def jobs_open(self) -> int:
        """Outbox jobs pending or running."""
        with self.db.read_session() as session:
            return int(
                session.scalar(
                    select(func.count()).where(
                        OutboxJob.state.in_([JobState.PENDING, JobState.RUNNING])
                    )
                )
                or 0
            )

    def listings_bound(self) -> int:
        """Listings bound over every channel."""
        with self.db.read_session() as session:
            return int(session.scalar(select(func.count()).select_from(Listing)) or 0)

    def rss_mb(self) -> dict[str, float]:
        """The daemon's resident memory now and at its peak (/proc), in MB."""
        assert self.daemon.proc is not None
        fields: dict[str, float] = {}
        for line in Path(f"/proc/{self.daemon.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = round(int(value.split()[0]) / 1024, 1)
        return {"rss_mb": fields.get("VmRSS", 0.0), "peak_rss_mb": fields.get("VmHWM", 0.0)}


async def fetch_json(client: httpx.AsyncClient, url: str) -> Any:
    """GET a control route; its JSON."""
    answer = await client.get(url)
    answer.raise_for_status()
    return answer.json()


async def all_calls(rig: Rig, client: httpx.AsyncClient) -> dict[str, dict[str, int]]:
    """API calls each sandbox counted so far, by operation (throttled ones counted apart)."""
    counted = {}
    for channel in CHANNELS:
        body = await fetch_json(client, rig.control(channel, "/calls"))
        counted[channel] = {op: int(n) for op, n in body["calls"].items()}
        counted[channel]["(throttled)"] = sum(int(n) for n in body["throttled"].values())
    return counted


def calls_between(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, dict[str, Any]]:
    """Per channel: calls by operation between two counts, their total, the stock calls."""
    made: dict[str, dict[str, Any]] = {}
    for channel, now in after.items():
        then = before.get(channel, {})
        ops = {op: n - then.get(op, 0) for op, n in sorted(now.items()) if n > then.get(op, 0)}
        throttled = ops.pop("(throttled)", 0)
        stock = sum(n for op, n in ops.items() if op in STOCK_OPERATIONS[channel])
        made[channel] = {
            "by_operation": ops,
            "total": sum(ops.values()),
            "stock": stock,
            "throttled": throttled,
        }
    return made


def seed_store(db: Database, products: Sequence[Product]) -> None:
    """The catalogue's SKUs and their units on hand at the one location, as rows written in
    bulk: no listing is bound yet, so nothing is dirty and no push is owed. (`stock_ops.
    apply_on_hand`, the import path, locks, flags and logs an event per row: minutes at 100,000.)"""
    upgrade(db)

    def load(session: Any) -> None:
        define_catalogue(session, {p.sku: p.title for p in products})
        session.execute(
            insert(StockLevel),
            [{"sku": p.sku, "location": LOCATION, "on_hand": p.units} for p in products],
        )

    db.transact(load)


class SandboxChild:
    """bench/e2e_sandboxes.py as a child process that ends when its standard input closes."""

    def __init__(self, state: Path, products: Sequence[Product], notify_url: str) -> None:
        self.state = state
        self.ready_file = state / "sandboxes.json"
        catalogue = state / "catalogue.json"
        catalogue.write_text(json.dumps([[p.sku, p.units] for p in products]))
        self.args = [
            sys.executable,
            str(SANDBOX_SCRIPT),
            *("--catalogue", str(catalogue)),
            *("--ready-file", str(self.ready_file)),
            *("--ebay-notify-url", notify_url),
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the child; its output goes to a file."""
        with (self.state / "sandboxes.log").open("wb") as log:
            self.proc = subprocess.Popen(
                self.args, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self, limit_s: float) -> dict[str, Any]:
        """The ready file's entries once every sandbox listens."""
        assert self.proc is not None
        deadline = time.monotonic() + limit_s
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                log = (self.state / "sandboxes.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the sandboxes exited with {self.proc.returncode}:\n{log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the sandboxes did not listen within {limit_s:.0f} s")
            time.sleep(0.1)
        entries: dict[str, Any] = json.loads(self.ready_file.read_text())["sandboxes"]
        return entries

    def stop(self) -> None:
        """Close its input (it stops), then wait; kill it if it lingers."""
        proc = self.proc
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def start_rig(
    state: Path, products: Sequence[Product], *, limit_s: float = 600.0, prebind: bool = False
) -> Iterator[Rig]:
    """Sandboxes, store and daemon running on `products`; every listing bound. `timings` holds
    `store_s` (seeding the store), `sandboxes_s` (until they listen), `startup_s` (daemon
    process start until /healthz answers) and `bind_s` (the first sync of all three channels,
    run concurrently: every listing read and bound). With `prebind` the store gets the listings
    onboarding would have left (bulk rows, nothing owed) instead of a first sync, which at
    100,000 SKUs is bound by the channels' paging rates."""
    state.mkdir(parents=True, exist_ok=True)
    config = DaemonConfig(root=state / "config", database_url=sqlite_url(state / "store.db"))
    config.write()
    timings: dict[str, float] = {}
    with ExitStack() as stack:
        sandboxes = SandboxChild(state, products, f"{config.webhooks_url}/webhooks/ebay")
        started = time.monotonic()
        sandboxes.start()
        stack.callback(sandboxes.stop)
        db = Database(config.database_url or "")
        stack.callback(db.dispose)
        seeding = time.monotonic()
        seed_store(db, products)  # while the sandboxes seed themselves
        timings["store_s"] = round(time.monotonic() - seeding, 2)
        info = sandboxes.wait_ready(limit_s)
        timings["sandboxes_s"] = round(time.monotonic() - started, 2)
        if prebind:
            started = time.monotonic()
            prebind_listings(db, products, info)
            timings["prebind_s"] = round(time.monotonic() - started, 2)
        write_channel_files(DemoPaths(state), info, config.webhooks_url)
        # The daemon's log level: WARNING unless the bench's environment asks for more.
        level = os.environ.get("CHANNEL_SYNC_LOGGING__LEVEL", "WARNING")
        env = {config.admin_token_env: ADMIN_TOKEN, "CHANNEL_SYNC_LOGGING__LEVEL": level}
        daemon = Daemon(config, env)
        started = time.monotonic()
        daemon.start()
        stack.callback(daemon.kill)
        daemon.wait_healthy(timeout=limit_s)
        timings["startup_s"] = round(time.monotonic() - started, 3)
        rig = Rig(state, config, daemon, info, db, timings)
        if not prebind:
            started = time.monotonic()
            asyncio.run(sync_all(rig, limit_s))
            timings["bind_s"] = round(time.monotonic() - started, 2)
        bound = rig.listings_bound()
        if bound < len(CHANNELS) * len(products):
            raise RuntimeError(f"{bound} listings bound, {len(CHANNELS) * len(products)} wanted")
        yield rig
        try:
            code = daemon.stop(timeout=60)
        except subprocess.TimeoutExpired:
            # A reconcile cut short by the bench's limit may still be draining: the figures
            # measured so far stand; the ExitStack kills the process.
            print("the daemon did not stop within 60 s; killed", file=sys.stderr)
        else:
            if code != 0:
                print(f"the daemon exited with {code}", file=sys.stderr)


async def sync_all(rig: Rig, limit_s: float) -> dict[str, float]:
    """Poll and reconcile every channel now (concurrently, through the admin API); seconds each."""
    async with rig.admin_client(timeout=limit_s) as admin:

        async def one(channel: str) -> float:
            started = time.monotonic()
            answer = await admin.post(f"/api/channels/{channel}/sync")
            if answer.status_code != 200:
                raise RuntimeError(f"sync of {channel} answered HTTP {answer.status_code}")
            return round(time.monotonic() - started, 2)

        spent = await asyncio.gather(*(one(channel) for channel in CHANNELS))
    return dict(zip(CHANNELS, spent, strict=True))


# Ids the sandboxes give the catalogue, in seeding order (sandbox/shopify/store.py and
# sandbox/ebay/store.py count up from these); a wrong guess shows as listings bound twice.
SHOPIFY_FIRST_ITEM = 44_000_000_000_001
SHOPIFY_FIRST_VARIANT = 42_000_000_000_001
EBAY_FIRST_ITEM = 110_000_000_001


def prebind_listings(db: Database, products: Sequence[Product], info: dict[str, Any]) -> None:
    """The three channels and a listing per SKU on each, as onboarding leaves them: bound,
    believed to show the units on hand, not dirty."""
    location = next(iter(info["shopify"]["locations"].values()))
    with db.session() as session:
        ids = register_channels(session, {c: (c, True) for c in CHANNELS})
        rows: list[dict[str, Any]] = []
        for i, p in enumerate(products):
            item = f"gid://shopify/InventoryItem/{SHOPIFY_FIRST_ITEM + i}"
            variant = f"gid://shopify/ProductVariant/{SHOPIFY_FIRST_VARIANT + i}"
            ebay_item = str(EBAY_FIRST_ITEM + i)
            refs = {
                "shopify": (
                    f"{item}|{location}",
                    {"variant_id": variant, "inventory_item_id": item, "location_id": location},
                ),
                "amazon": (p.sku, None),
                "ebay": (f"trading:{ebay_item}", {"stock_api": "trading", "item_id": ebay_item}),
            }
            for channel, (ref, extra) in refs.items():
                rows.append(
                    {
                        "channel_id": ids[channel],
                        "sku": p.sku,
                        "external_ref": ref,
                        "extra": extra,
                        "is_dirty": False,
                        "last_pushed_quantity": p.units,
                    }
                )
        for start in range(0, len(rows), 10_000):
            session.execute(insert(Listing), rows[start : start + 10_000])


async def reconcile_within(rig: Rig, limit_s: float) -> dict[str, float | None]:
    """Poll and reconcile every channel now, concurrently; seconds each, None for a channel not
    done within `limit_s` (its reconcile goes on in the daemon)."""
    async with rig.admin_client(timeout=limit_s + 30) as admin:
        started = time.monotonic()
        done: dict[str, float | None] = dict.fromkeys(CHANNELS)

        async def one(channel: str) -> None:
            answer = await admin.post(f"/api/channels/{channel}/sync")
            if answer.status_code != 200:
                raise RuntimeError(f"sync of {channel} answered HTTP {answer.status_code}")
            done[channel] = round(time.monotonic() - started, 2)

        tasks = [asyncio.create_task(one(channel)) for channel in CHANNELS]
        _, late = await asyncio.wait(tasks, timeout=limit_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return done
