"""Shopify on loopback: webhook-to-200 latency, order-to-other-store latency, API calls per
1,000 stock changes.

The real daemon (`channel-sync run`, a subprocess) with two Shopify channels, `shop-a` and
`shop-b`, each a sandbox store (`python -m sandbox.shopify`, a subprocess) selling the same SKUs
from one stock location. Three measurements, one after another on the same set-up:

1. Order to the other store: a buyer checks out one unit on store A (`POST /_sandbox/orders`),
   A sends its orders/create webhook, the daemon ingests it and pushes the new quantity to B;
   from the checkout request until B's `GET /_sandbox/inventory` shows it (read every 25 ms).
2. API calls per stock change: the seller sets on hand (`PUT /api/stock/{sku}` on the admin API)
   `--changes` times at `--changes-rate` per second over a pool of SKUs; once both stores show
   the final quantities, the GraphQL calls each store counted (`GET /_sandbox/calls`), by
   operation, scaled to 1,000 changes.
3. Webhook-to-200: validly signed orders/create deliveries (bodies rendered by the sandbox's own
   renderer, as store A would send them, for orders A never saw) POSTed to `/webhooks/shop-a` on a
   fixed schedule (open loop: a slow answer does not delay the next delivery) at each of
   `--webhook-rates` for `--webhook-seconds`; latency from the moment a delivery was due until its
   answer, the count of non-200 answers, and whether every delivery ended in the store (an inbox
   row each, and its order ingested).

Every SKU starts with the same units on both stores and in the ledger; at the end both stores
must show on hand minus the units sold, per SKU. The machine is often shared: the load average at
start and end is printed, and the daemon's CPU time per webhook delivery (from /proc), which holds
whatever else ran. SKU pools are kept small (50/100/50) on purpose: each stock push makes the
sandbox send an inventory_levels/update back per changed level, and the sandbox's webhook sender
stalls its whole event loop with a thousand deliveries in flight.

    .venv/bin/python bench/shopify.py [--quick] [--database sqlite|postgresql]
        [--pg-url postgresql://postgres@127.0.0.1:5432/postgres] [--orders 150] [--order-rate 5]
        [--changes 1000] [--changes-rate 100] [--webhook-rates 50,200] [--webhook-seconds 15]
        [--restore-rate 100] [--poll-interval 30] [--seed 1]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import ExitStack, asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

# The repository root first: bench helpers import as `bench._common` (a namespace package).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from bench._common import DEFAULT_PG_URL, empty_store_url, open_loop, percentiles
from connectors.shopify.webhooks import compute_signature
from sandbox.shopify.model import Buyer, SystemClock, gid
from sandbox.shopify.payloads import PayloadRenderer
from sandbox.shopify.store import ShopStore
from sync.db import Database
from sync.models import Listing, Sku, WebhookDelivery
from sync.models import Order as OrderRow
from tests.sandbox.shopify.process import ShopifyProcess
from tests.support.daemon import Daemon, DaemonConfig

STOCK = 100_000
ADMIN_TOKEN = "bench-shopify-admin-token-0123456789"
API_VERSION = "2026-04"
TOPICS = 6  # the subscriptions the daemon makes per store
FOREIGN_ORDER_IDS = 8_800_000_000_000  # ids of the webhook-only orders: none of A's own
SETTLE_S = 180.0
WATCH_EVERY_S = 0.025  # how often B's inventory is read while orders are placed on A

# --- the set-up: two sandbox stores, the daemon, the shared SKUs ---------------------------------


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One signed orders/create webhook, ready to POST."""

    body: bytes
    headers: dict[str, str]
    delivery_id: str
    order_id: str
    lines: tuple[tuple[str, int], ...]


def channel_file(name: str, store: ShopifyProcess, webhook_url: str, poll_s: float) -> str:
    """The channel file a seller would write for a sandbox store."""
    env = name.upper().replace("-", "_")
    return (
        'kind = "shopify"\n'
        'locations = ["default"]\n'
        f'shop = "{store.info["domain"]}"\n'
        f'access_token = "env:BENCH_{env}_TOKEN"\n'
        f'webhook_secrets = ["env:BENCH_{env}_SECRET"]\n'
        f'api_base_url = "{store.info["url"]}"\n'
        f'webhook_url = "{webhook_url}"\n'
        f'[location_ids]\ndefault = "{store.info["locations"]["Main warehouse"]}"\n'
        f"[schedule]\npoll_interval_s = {poll_s}\nreconcile_interval_s = 3600\n"
    )


class Rig:
    """The running set-up, and what the bench did to it (on hand set, units sold per SKU)."""

    def __init__(
        self,
        stores: dict[str, ShopifyProcess],
        daemon: Daemon,
        db_url: str,
        skus: dict[str, list[str]],
        seed: int,
    ) -> None:
        self.stores = stores
        self.daemon = daemon
        self.db_url = db_url
        self.skus = skus
        self.all_skus = [sku for pool in skus.values() for sku in pool]
        self.on_hand = dict.fromkeys(self.all_skus, STOCK)
        self.sold: Counter[str] = Counter()
        self.unsettled = 0
        self.mismatches: list[dict[str, Any]] = []
        self.slow_reads = 0  # control API reads of a store that took over 30 s
        self.slowest_read_s = 0.0
        self.setup_s = 0.0
        self.http = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=None))
        self.admin = httpx.AsyncClient(
            base_url=daemon.config.admin_url,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=60,
            limits=httpx.Limits(max_connections=None),
        )
        self.rng = random.Random(seed)
        # Webhook bodies as store A renders them: the same SKUs, added in the same order, so the
        # variant and inventory item ids in the bodies are A's.
        self.shop = ShopStore(
            stores["a"].info["shop"],
            currency="USD",
            clock=SystemClock(),
            rng=random.Random(seed),
            locations=("Main warehouse",),
        )
        first = min(self.shop.locations)
        for sku in self.all_skus:
            self.shop.add_variant(
                sku,
                price=Decimal("10.00"),
                title="Default Title",
                product_title=sku,
                stock={first: 10**9},
            )
        self.renderer = PayloadRenderer(self.shop, utc_offset_minutes=-300)

    def sandbox(self, name: str, path: str) -> str:
        """URL of a control API route of store `name`."""
        return f"{self.stores[name].info['url']}/_sandbox{path}"

    async def inventory(self, name: str) -> dict[str, int]:
        """What store `name` shows, per SKU (a read that times out is counted and asked again)."""
        for attempt in range(3):
            started = time.monotonic()
            try:
                answer = await self.http.get(self.sandbox(name, "/inventory"))
            except httpx.TimeoutException:
                self.slow_reads += 1
                if attempt == 2:
                    raise
                continue
            self.slowest_read_s = max(self.slowest_read_s, time.monotonic() - started)
            answer.raise_for_status()
            return dict(answer.json())
        raise AssertionError("unreachable")

    async def calls(self) -> dict[str, dict[str, dict[str, int]]]:
        """API calls each store counted so far, by operation, throttled ones apart."""
        counted = {}
        for name in self.stores:
            answer = await self.http.get(self.sandbox(name, "/calls"))
            answer.raise_for_status()
            counted[name] = answer.json()
        return counted

    @staticmethod
    def calls_since(
        before: dict[str, dict[str, dict[str, int]]], after: dict[str, dict[str, dict[str, int]]]
    ) -> dict[str, dict[str, int]]:
        """Calls per store and operation between two counts, with `total` and `throttled`."""
        made: dict[str, dict[str, int]] = {}
        for name, now in after.items():
            then = before[name]
            ops = {
                op: n - then["calls"].get(op, 0)
                for op, n in sorted(now["calls"].items())
                if n > then["calls"].get(op, 0)
            }
            throttled = sum(now["throttled"].values()) - sum(then["throttled"].values())
            made[name] = {**ops, "total": sum(ops.values()), "throttled": throttled}
        return made

    async def place_order(self, name: str, lines: list[tuple[str, int]]) -> int:
        """A buyer checks out on store `name`; the answer's status."""
        body = {
            "lines": [{"sku": sku, "quantity": units} for sku, units in lines],
            "buyer": {"first_name": "Bench", "last_name": "Buyer", "email": "b@example.com"},
        }
        return (await self.http.post(self.sandbox(name, "/orders"), json=body)).status_code

    async def set_on_hand(self, sku: str, units: int) -> int:
        """`PUT /api/stock/{sku}` on the daemon; the answer's status."""
        body = {"location": "default", "on_hand": units}
        return (await self.admin.put(f"/api/stock/{sku}", json=body)).status_code

    def expected(self) -> dict[str, int]:
        """What every store should show: on hand minus units sold, per SKU."""
        return {sku: max(0, self.on_hand[sku] - self.sold[sku]) for sku in self.all_skus}

    async def settle(self, limit_s: float = SETTLE_S) -> float:
        """Wait until both stores show `expected()`; the monotonic time they did (or gave up)."""
        deadline = time.monotonic() + limit_s
        want = self.expected()
        while time.monotonic() < deadline:
            shown = [await self.inventory(name) for name in self.stores]
            now = time.monotonic()
            if all({sku: s.get(sku) for sku in want} == want for s in shown):
                return now
            await asyncio.sleep(0.02)
        self.unsettled += 1
        await self.note_mismatches(want)
        return time.monotonic()

    async def note_mismatches(self, want: dict[str, int]) -> None:
        """Keep a few SKUs a store shows wrong, with the ledger's view of them (no buyer data)."""
        by_store = {name: await self.inventory(name) for name in self.stores}
        for sku, units in want.items():
            if len(self.mismatches) >= 10:
                return
            if all(shown.get(sku) == units for shown in by_store.values()):
                continue
            ledger = (await self.admin.get(f"/api/stock/{sku}")).json()
            self.mismatches.append(
                {
                    "sku": sku,
                    "want": units,
                    "shown": {name: shown.get(sku) for name, shown in by_store.items()},
                    "ledger": ledger.get("totals"),
                    "last_pushed": {
                        c["channel"]: c["last_pushed_quantity"] for c in ledger.get("channels", [])
                    },
                }
            )

    async def check_final(self) -> dict[str, Any]:
        """Whether both stores show on hand minus sold for every SKU; wrong listings."""
        want = self.expected()
        wrong = 0
        for name in self.stores:
            shown = await self.inventory(name)
            wrong += sum(1 for sku, units in want.items() if shown.get(sku) != units)
        return {
            "correct": wrong == 0,
            "wrong": wrong,
            "unsettled_waits": self.unsettled,
            "mismatches": self.mismatches,
            "inventory_reads_timed_out": self.slow_reads,
            "slowest_inventory_read_s": round(self.slowest_read_s, 3),
        }

    def webhook_deliveries(self, first: int, count: int) -> list[Delivery]:
        """`count` signed orders/create deliveries of new orders (numbered from `first`) of one or
        two units of the webhook SKUs, as store A would send them."""
        pool = self.skus["webhooks"]
        info = self.stores["a"].info
        made = []
        for n in range(first, first + count):
            lines = [(sku, self.rng.randint(1, 2)) for sku in self.rng.sample(pool, 1)]
            buyer = Buyer(first_name="Bench", last_name="Buyer", email=f"b{n}@example.com")
            payload = self.renderer.order(self.shop.place_order(lines, buyer))
            payload["id"] = FOREIGN_ORDER_IDS + n
            payload["admin_graphql_api_id"] = gid("Order", FOREIGN_ORDER_IDS + n)
            body = json.dumps(payload).encode()
            event = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
            headers = {
                "Content-Type": "application/json",
                "X-Shopify-Topic": "orders/create",
                "X-Shopify-Hmac-Sha256": compute_signature(body, info["secret"]),
                "X-Shopify-Shop-Domain": info["domain"],
                "X-Shopify-API-Version": API_VERSION,
                "X-Shopify-Webhook-Id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                "X-Shopify-Event-Id": event,
                "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(),
            }
            made.append(
                Delivery(
                    body,
                    headers,
                    f"event:{event}:orders/create",
                    payload["admin_graphql_api_id"],
                    tuple(lines),
                )
            )
            for sku, units in lines:
                self.sold[sku] += units
        return made

    async def deliver(self, delivery: Delivery) -> int:
        """POST one delivery to the daemon's webhook receiver; the answer's status."""
        url = f"{self.daemon.config.webhooks_url}/webhooks/shop-a"
        answer = await self.http.post(url, content=delivery.body, headers=delivery.headers)
        return answer.status_code

    def wait_stored(
        self, delivery_ids: list[str], order_ids: list[str], timeout: float = SETTLE_S
    ) -> dict[str, Any]:
        """Poll the store until every delivery has its inbox row and its order; what it holds."""
        db = Database(self.db_url)
        started = time.monotonic()
        try:
            while True:
                inbox = orders = 0
                with db.read_session() as session:
                    for i in range(0, len(delivery_ids), 500):
                        inbox += (
                            session.scalar(
                                select(func.count()).where(
                                    WebhookDelivery.delivery_id.in_(delivery_ids[i : i + 500])
                                )
                            )
                            or 0
                        )
                        orders += (
                            session.scalar(
                                select(func.count()).where(
                                    OrderRow.external_id.in_(order_ids[i : i + 500])
                                )
                            )
                            or 0
                        )
                done = inbox == len(delivery_ids) and orders == len(order_ids)
                if done or time.monotonic() - started > timeout:
                    return {
                        "inbox_rows": inbox,
                        "orders_stored": orders,
                        "all_stored": done,
                        "ingested_within_s": round(time.monotonic() - started, 2),
                    }
                time.sleep(0.05)
        finally:
            db.dispose()

    def orders_present(self, order_ids: list[str]) -> set[str]:
        """Which of these orders the store holds."""
        if not order_ids:
            return set()
        db = Database(self.db_url)
        try:
            with db.read_session() as session:
                return set(
                    session.scalars(
                        select(OrderRow.external_id).where(OrderRow.external_id.in_(order_ids))
                    )
                )
        finally:
            db.dispose()

    def daemon_cpu_s(self) -> float:
        """User and system CPU seconds the daemon process has used (Linux /proc; 0 elsewhere)."""
        assert self.daemon.proc is not None
        try:
            fields = Path(f"/proc/{self.daemon.proc.pid}/stat").read_text().rsplit(")", 1)[1]
        except OSError:
            return 0.0
        utime, stime = fields.split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    def daemon_log_levels(self) -> dict[str, int]:
        """Warning and error lines the daemon logged."""
        text = self.daemon.output()
        return {level.lower(): text.count(f'"level": "{level}"') for level in ("WARNING", "ERROR")}


def add_skus(db_url: str, skus: list[str]) -> None:
    """The SKUs the seller sells (what onboarding would create)."""
    db = Database(db_url)
    try:
        with db.session() as session:
            session.add_all(Sku(sku=sku) for sku in skus)
    finally:
        db.dispose()


def count_listings(db_url: str) -> int:
    """Listings bound so far, over every channel."""
    db = Database(db_url)
    try:
        with db.read_session() as session:
            return int(session.scalar(select(func.count()).select_from(Listing)) or 0)
    finally:
        db.dispose()


async def wait_until(check: Callable[[], Awaitable[bool]], limit_s: float, what: str) -> None:
    """Await `check()` until truthy; fail naming `what` after `limit_s` seconds."""
    deadline = time.monotonic() + limit_s
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {limit_s} s waiting for {what}")
        await asyncio.sleep(0.1)


@asynccontextmanager
async def start_rig(
    root: Path, db_url: str, args: argparse.Namespace, skus: dict[str, list[str]]
) -> AsyncIterator[Rig]:
    """Two sandbox stores with every SKU, the daemon with a channel on each, listings bound,
    on hand set in the ledger, both stores showing it."""
    started = time.monotonic()
    every = [sku for pool in skus.values() for sku in pool]
    with ExitStack() as stack:
        stores = {}
        for name in ("a", "b"):
            (root / name).mkdir()
            store = ShopifyProcess(
                root / name,
                [
                    *("--shop", f"bench-{name}", "--seed", str(args.seed)),
                    *("--restore-rate", str(args.restore_rate)),
                ],
            )
            stores[name] = stack.enter_context(store)
            body = {"products": [{"sku": sku, "stock": STOCK} for sku in every]}
            store.control("POST", "/products", body)
        config = DaemonConfig(root=root / "cfg", database_url=db_url)
        config.channels = {
            f"shop-{name}": channel_file(
                f"shop-{name}",
                store,
                f"{config.webhooks_url}/webhooks/shop-{name}",
                args.poll_interval,
            )
            for name, store in stores.items()
        }
        config.write()
        env = {config.admin_token_env: ADMIN_TOKEN}
        for name, store in stores.items():
            env[f"BENCH_SHOP_{name.upper()}_TOKEN"] = store.info["token"]
            env[f"BENCH_SHOP_{name.upper()}_SECRET"] = store.info["secret"]
        daemon = Daemon(config, env).start()
        stack.callback(daemon.kill)
        daemon.wait_healthy(timeout=60)
        rig = Rig(stores, daemon, db_url, skus, args.seed)
        try:

            async def subscribed() -> bool:
                for name in stores:
                    answer = await rig.http.get(rig.sandbox(name, "/webhooks?limit=0"))
                    uris = [s["uri"] for s in answer.json()["subscriptions"]]
                    if sum(uri.endswith(f"/webhooks/shop-{name}") for uri in uris) < TOPICS:
                        return False
                return True

            await wait_until(subscribed, 60, "the daemon to subscribe to both stores")
            await asyncio.to_thread(add_skus, db_url, every)

            # On hand first, then the listings: the first push then sets what the stores show
            # already, so neither store sends an inventory_levels/update per SKU back (the
            # sandbox's webhook sender does not cope well with a thousand at once).
            sem = asyncio.Semaphore(8)

            async def put(sku: str) -> None:
                async with sem:
                    status = await rig.set_on_hand(sku, STOCK)
                    if status != 200:
                        raise RuntimeError(f"PUT /api/stock/{sku} answered {status}")

            await asyncio.gather(*(put(sku) for sku in every))

            asked = 0.0

            async def bound() -> bool:
                nonlocal asked
                if await asyncio.to_thread(count_listings, db_url) >= 2 * len(every):
                    return True
                if time.monotonic() - asked > 30:  # a reconcile of many SKUs waits for cost
                    asked = time.monotonic()
                    for name in stores:
                        # Still reconciling when it times out: the listings count says when done.
                        with contextlib.suppress(httpx.TimeoutException):
                            await rig.admin.post(f"/api/channels/shop-{name}/sync", timeout=120)
                return False

            await wait_until(bound, 300, "reconcile to bind every SKU on both stores")
            await rig.settle()
            if rig.unsettled:
                raise RuntimeError("the stores never showed the initial stock")
            rig.setup_s = round(time.monotonic() - started, 1)
            yield rig
        finally:
            await rig.http.aclose()
            await rig.admin.aclose()
            code = daemon.stop()
            if code != 0:
                print(f"the daemon exited with {code}", file=sys.stderr)


async def order_to_other_store(
    rig: Rig, skus: list[str], orders: int, rate: float
) -> dict[str, Any]:
    """Orders of one unit placed on A at `rate`; seconds until B shows each (p50/p99)."""
    baseline = await rig.inventory("b")
    sold: Counter[str] = Counter()
    waiting: list[tuple[str, int, float]] = []  # (sku, B at or below this, placed at)
    seen: list[float] = []
    calls_before = await rig.calls()
    placed_all = asyncio.Event()

    async def watch() -> None:
        while waiting or not placed_all.is_set():
            shown = await rig.inventory("b")
            now = time.monotonic()
            for entry in list(waiting):
                sku, at_most, placed = entry
                if shown.get(sku, STOCK) <= at_most:
                    seen.append(now - placed)
                    waiting.remove(entry)
            await asyncio.sleep(WATCH_EVERY_S)

    async def place(i: int) -> int:
        sku = skus[i % len(skus)]
        placed = time.monotonic()
        status = await rig.place_order("a", [(sku, 1)])
        if status == 201:
            sold[sku] += 1
            waiting.append((sku, baseline[sku] - sold[sku], placed))
        return status

    watcher = asyncio.create_task(watch())
    sent = await open_loop(orders, rate, place)
    placed_all.set()
    try:
        await asyncio.wait_for(asyncio.shield(watcher), timeout=60)
    except TimeoutError:
        watcher.cancel()
    rig.sold.update(sold)
    await rig.settle()
    calls = rig.calls_since(calls_before, await rig.calls())
    return {
        "orders": orders,
        "rate_per_s": rate,
        "placed": sum(1 for s in sent if s.status == 201),
        "not_seen_within_60s": len(waiting),
        "seconds": percentiles(seen, scale=1.0),
        "calls": calls,
    }


async def calls_per_stock_change(
    rig: Rig, skus: list[str], changes: int, rate: float, seed: int
) -> dict[str, Any]:
    """`changes` on-hand sets over `skus` at `rate`; API calls per store, per 1,000 changes."""
    rng = random.Random(seed)
    plan: list[tuple[str, int]] = []
    last = {sku: rig.on_hand[sku] for sku in skus}
    for _ in range(changes):
        sku = rng.choice(skus)
        units = last[sku] + rng.choice((-1, 1)) * rng.randint(1, 500)
        last[sku] = units
        plan.append((sku, units))
    # One set at a time per SKU, in the order planned: two sets of one SKU in flight together
    # could commit in either order, and the ledger would not end where the plan does.
    locks = {sku: asyncio.Lock() for sku in skus}
    calls_before = await rig.calls()

    async def put(i: int) -> int:
        sku, units = plan[i]
        async with locks[sku]:
            status = await rig.set_on_hand(sku, units)
        if status == 200:
            rig.on_hand[sku] = units
        return status

    started = time.monotonic()
    sent = await open_loop(changes, rate, put)
    statuses = Counter(s.error or str(s.status) for s in sent)
    converged = await rig.settle()
    seconds = time.monotonic() - started
    calls = rig.calls_since(calls_before, await rig.calls())
    per_1000 = {
        store: {op: round(n * 1000 / changes, 1) for op, n in ops.items()}
        for store, ops in calls.items()
    }
    return {
        "changes": changes,
        "rate_per_s": rate,
        "skus": len(skus),
        "answers": dict(sorted(statuses.items())),
        "seconds_to_converge": round(converged - started, 2),
        "window_s": round(seconds, 2),
        "calls": calls,
        "calls_per_1000": per_1000,
    }


async def webhook_latency(rig: Rig, rate: float, seconds: float, first: int) -> dict[str, Any]:
    """Signed orders/create deliveries to the daemon at `rate` for `seconds`, open loop."""
    count = max(1, round(rate * seconds))
    deliveries = rig.webhook_deliveries(first, count)
    cpu_before = rig.daemon_cpu_s(), time.process_time()
    sent = await open_loop(count, rate, lambda i: rig.deliver(deliveries[i]))
    cpu_sending = rig.daemon_cpu_s() - cpu_before[0], time.process_time() - cpu_before[1]
    latency = [s.answered - s.due for s in sent]
    lag = [s.started - s.due for s in sent]
    statuses = Counter(s.error or str(s.status) for s in sent)
    acked = [d for d, s in zip(deliveries, sent, strict=True) if s.status == 200]
    unacked = [d for d, s in zip(deliveries, sent, strict=True) if s.status != 200]
    # Only what was answered 200 must be stored (Shopify would send the rest again).
    ids = [d.order_id for d in acked]
    stored = await asyncio.to_thread(rig.wait_stored, [d.delivery_id for d in acked], ids)
    # One not answered 200 may still have been stored (answered too late); the rest never sold.
    present = await asyncio.to_thread(rig.orders_present, [d.order_id for d in unacked])
    for delivery in unacked:
        if delivery.order_id not in present:
            rig.sold.subtract(dict(delivery.lines))
    return {
        "rate_per_s": rate,
        "deliveries": count,
        "latency_ms": percentiles(latency),
        "send_lag_ms": percentiles(lag),
        "non_200": sum(n for answer, n in statuses.items() if answer != "200"),
        "answers": dict(sorted(statuses.items())),
        "unanswered_but_stored": len(present),
        **stored,
        # CPU time while sending (daemon: receiving, and whatever else it did meanwhile), per
        # delivery: what the figures above cost, whatever else the machine was running.
        "daemon_cpu_ms_per_delivery": round(cpu_sending[0] * 1000 / count, 2),
        "bench_cpu_ms_per_delivery": round(cpu_sending[1] * 1000 / count, 2),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """The set-up, then the three measurements; every figure."""
    pools = {"orders": args.order_skus, "changes": args.change_skus, "webhooks": args.webhook_skus}
    skus = {name: [f"{name[:3].upper()}-{i:04d}" for i in range(n)] for name, n in pools.items()}
    with (
        tempfile.TemporaryDirectory(prefix="bench-shopify-") as tmp,
        empty_store_url(args.database, args.pg_url) as db_url,
    ):
        async with start_rig(Path(tmp), db_url, args, skus) as rig:
            figures: dict[str, Any] = {"setup_s": rig.setup_s}
            figures["order_to_other_store"] = await order_to_other_store(
                rig, skus["orders"], args.orders, args.order_rate
            )
            figures["stock_changes"] = await calls_per_stock_change(
                rig, skus["changes"], args.changes, args.changes_rate, args.seed
            )
            figures["webhooks"] = {}
            first = 0
            for rate in args.webhook_rates:
                result = await webhook_latency(rig, rate, args.webhook_seconds, first)
                figures["webhooks"][f"{rate:g}"] = result
                first += result["deliveries"]
            await rig.settle()
            figures["final"] = await rig.check_final()
            figures["daemon_log"] = rig.daemon_log_levels()
    return figures


def print_report(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    """The readable tables."""
    console = Console(width=max(120, Console().width))
    hooks = Table(title=f"webhook-to-200, open loop, {args.webhook_seconds:g} s per rate (ms)")
    for column in (
        "rate/s",
        "sent",
        "p50",
        "p99",
        "max",
        "non-200",
        "send lag p99",
        "cpu ms/hook",
        "stored",
    ):
        hooks.add_column(column, justify="right")
    for rate, row in figures["webhooks"].items():
        lat = row["latency_ms"]
        hooks.add_row(
            rate,
            str(row["deliveries"]),
            str(lat["p50"]),
            str(lat["p99"]),
            str(lat["max"]),
            str(row["non_200"]),
            str(row["send_lag_ms"]["p99"]),
            str(row["daemon_cpu_ms_per_delivery"]),
            f"{row['inbox_rows']} inbox / {row['orders_stored']} orders",
        )
    console.print(hooks)
    o = figures["order_to_other_store"]
    s = o["seconds"]
    console.print(
        f"order on A -> visible on B: {o['placed']} orders at {o['rate_per_s']:g}/s, p50 "
        f"{s['p50']} s, p99 {s['p99']} s, max {s['max']} s, not seen {o['not_seen_within_60s']}"
    )
    c = figures["stock_changes"]
    calls = Table(
        title=f"GraphQL calls per 1,000 stock changes ({c['changes']} sets at "
        f"{c['rate_per_s']:g}/s over {c['skus']} SKUs)"
    )
    for column in ("store", "operation", "calls", "per 1,000 changes"):
        calls.add_column(column, justify="right")
    for store, ops in c["calls"].items():
        for op, n in ops.items():
            calls.add_row(store, op, str(n), str(c["calls_per_1000"][store][op]))
    console.print(calls)
    final = figures["final"]
    console.print(
        f"converged {c['seconds_to_converge']} s after the first set; final quantities right on "
        f"both stores: {'yes' if final['correct'] else 'no'} ({final['wrong']} wrong); "
        f"daemon log {figures['daemon_log']}; {figures['cores']} cores; "
        f"{figures['database']}; load average {figures['loadavg_1m']}; "
        f"runtime {figures['runtime_s']} s"
    )


def parse_args() -> argparse.Namespace:
    """Command line; `--quick` shrinks every count for a smoke run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--pg-url", default=os.environ.get("CHANNEL_SYNC_BENCH_PG_URL", DEFAULT_PG_URL)
    )
    parser.add_argument("--orders", type=int, default=150)
    parser.add_argument("--order-rate", type=float, default=5.0)
    parser.add_argument("--order-skus", type=int, default=50)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--changes-rate", type=float, default=100.0)
    parser.add_argument("--change-skus", type=int, default=100)
    parser.add_argument("--webhook-rates", default="50,200")
    parser.add_argument("--webhook-seconds", type=float, default=15.0)
    parser.add_argument("--webhook-skus", type=int, default=50)
    parser.add_argument("--restore-rate", type=float, default=100.0, help="sandbox cost points/s")
    parser.add_argument("--poll-interval", type=float, default=30.0, help="daemon order polls, s")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.quick:
        args.orders, args.order_skus = 20, 20
        args.changes, args.change_skus = 200, 40
        args.webhook_seconds, args.webhook_skus = 3.0, 40
    args.webhook_rates = [float(r) for r in str(args.webhook_rates).split(",") if r.strip()]
    return args


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    load_before = os.getloadavg()
    figures = asyncio.run(run(args))
    # The machine is shared: what else ran weighs on every figure.
    figures["loadavg_1m"] = {"start": load_before[0], "end": os.getloadavg()[0]}
    figures["cores"] = os.cpu_count()
    figures["database"] = args.database
    figures["quick"] = args.quick
    figures["restore_rate"] = args.restore_rate
    figures["runtime_s"] = round(time.monotonic() - started, 1)
    print_report(args, figures)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
