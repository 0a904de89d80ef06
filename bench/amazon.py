"""Amazon on loopback: order-to-ingest latency by SQS and by polling, API calls per 1,000 stock
changes by patches and by feed.

The real daemon (`channel-sync run`, a subprocess) with one Amazon channel on a sandbox seller
account (`python -m sandbox.amazon`, a subprocess; with `--start-sqs` its ORDER_CHANGE
notifications go to moto's SQS server on loopback). The store starts with every SKU, its on hand
and a listing bound to the sandbox's (which shows the same quantity), so nothing is pushed at
start. Two set-ups, one after the other:

1. SQS on, polling slow (`poll_interval_s` 3600: one poll at start, before any order).
   a. Order to ingest by SQS: a buyer orders one unit (`POST /_sandbox/orders`) at
      `--sqs-rate` per second; from the sandbox's answer until the order is in the store (read
      every 20 ms): the notification's trip through SQS, getOrder, the commit.
   b. Calls per 1,000 stock changes, patches: `--trickle` on-hand sets (`PUT /api/stock/{sku}`)
      at `--trickle-rate` per second, each on its own SKU, fewer at a time than the feed
      threshold; then a feed: one `channel-sync stock import` of `--burst` SKUs (more than
      `--feed-threshold`). Calls are the sandbox's own count (`GET /_sandbox/calls`) once the
      sandbox shows the final quantities and the outbox is empty, scaled to 1,000 changes.
2. No queue, polling at `--poll-interval` (the example channel file's 180 s by default): orders
   placed at random moments over `--poll-window` intervals; from the sandbox's answer until the
   order is in the store. Expect about half the interval plus the poll's own time.

    .venv/bin/python bench/amazon.py [--quick] [--database sqlite|postgresql] [--pg-url URL]
        [--sqs-orders 40] [--sqs-rate 0.4] [--poll-orders 20] [--poll-interval 180]
        [--poll-window 2] [--trickle 200] [--trickle-rate 3] [--burst 1000]
        [--feed-threshold 50] [--seed 1]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

# The repository root first: bench helpers import as `bench._common` (a namespace package).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from bench._common import DEFAULT_PG_URL, empty_store_url, open_loop, percentiles
from sync.channels import register_channels
from sync.db import Database, upgrade
from sync.models import JobState, Listing, OutboxJob, Sku, StockLevel
from sync.models import Order as OrderRow
from tests.sandbox.amazon.process import AmazonProcess
from tests.support.daemon import CHANNEL_SYNC, Daemon, DaemonConfig

CHANNEL = "amazon-us"
STOCK = 1_000
ADMIN_TOKEN = "bench-amazon-admin-token-0123456789"
SETTLE_S = 300.0
SECRETS = {
    "BENCH_AMAZON_LWA_SECRET": "client_secret",
    "BENCH_AMAZON_REFRESH_TOKEN": "refresh_token",
}


def channel_file(info: dict[str, Any], *, poll_s: float, sqs: bool, feed_threshold: int) -> str:
    """The channel file a seller would write for the sandbox account."""
    queue = ""
    if sqs:
        queue = (
            f'sqs_queue_url = "{info["sqs_queue_url"]}"\n'
            f'sqs_endpoint_url = "{info["sqs_endpoint_url"]}"\n'
            'aws_access_key_id = "bench"\n'
            'aws_secret_access_key = "env:BENCH_AWS_SECRET"\n'
        )
    return (
        'kind = "amazon"\n'
        'locations = ["default"]\n'
        f'seller_id = "{info["seller_id"]}"\n'
        'region = "na"\n'
        f"marketplace_ids = {json.dumps(info['marketplace_ids'])}\n"
        f'lwa_client_id = "{info["client_id"]}"\n'
        'lwa_client_secret = "env:BENCH_AMAZON_LWA_SECRET"\n'
        'refresh_token = "env:BENCH_AMAZON_REFRESH_TOKEN"\n'
        f'api_base_url = "{info["api_base_url"]}"\n'
        f'lwa_token_url = "{info["lwa_token_url"]}"\n'
        f"stock_feed_threshold = {feed_threshold}\n"
        f"{queue}"
        f"[schedule]\npoll_interval_s = {poll_s}\nreconcile_interval_s = 86400\n"
    )


def seed_store(db_url: str, skus: list[str]) -> None:
    """Migrated store: the channel, every SKU with STOCK on hand, a listing per SKU that the
    channel already shows at STOCK (what onboarding leaves behind)."""
    db = Database(db_url)
    try:
        upgrade(db)
        with db.session() as session:
            channel_id = register_channels(session, {CHANNEL: ("amazon", True)})[CHANNEL]
            session.add_all(Sku(sku=sku) for sku in skus)
            session.flush()
            session.add_all(StockLevel(sku=sku, location="default", on_hand=STOCK) for sku in skus)
            session.add_all(
                Listing(
                    channel_id=channel_id,
                    sku=sku,
                    external_ref=sku,
                    is_dirty=False,
                    last_pushed_quantity=STOCK,
                )
                for sku in skus
            )
    finally:
        db.dispose()


class Rig:
    """One sandbox account and the daemon on it; what the bench sold and set."""

    def __init__(
        self, amazon: AmazonProcess, daemon: Daemon, db: Database, skus: list[str]
    ) -> None:
        self.amazon = amazon
        self.daemon = daemon
        self.db = db
        self.skus = skus
        self.on_hand = dict.fromkeys(skus, STOCK)
        self.sold: Counter[str] = Counter()
        # Opened by `measure` inside the event loop that uses them.
        self.http = httpx.AsyncClient()
        self.admin = httpx.AsyncClient()

    async def measure(
        self, fn: Callable[[Rig, argparse.Namespace], Awaitable[dict[str, Any]]], args: Any
    ) -> dict[str, Any]:
        """Run one measurement with HTTP clients of this event loop."""
        async with (
            httpx.AsyncClient(timeout=30) as self.http,
            httpx.AsyncClient(
                base_url=self.daemon.config.admin_url,
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=60,
            ) as self.admin,
        ):
            return await fn(self, args)

    def control(self, path: str) -> str:
        """URL of a control API route of the sandbox."""
        return f"{self.amazon.info['url']}/_sandbox{path}"

    async def calls(self) -> dict[str, Any]:
        """The sandbox's counts of API calls (throttled ones apart) and transfers."""
        answer = await self.http.get(self.control("/calls"))
        answer.raise_for_status()
        return dict(answer.json())

    async def place_order(self, sku: str) -> str:
        """A buyer orders one unit; the order id."""
        body = {
            "lines": [{"sku": sku, "quantity": 1}],
            "buyer": {"name": "Bench Buyer", "email": "bench@example.com"},
        }
        answer = await self.http.post(self.control("/orders"), json=body)
        answer.raise_for_status()
        self.sold[sku] += 1
        return str(answer.json()["order_id"])

    def stored(self, order_ids: list[str]) -> set[str]:
        """Which of these orders are in the store (committed)."""
        with self.db.read_session() as session:
            found = session.scalars(
                select(OrderRow.external_id).where(OrderRow.external_id.in_(order_ids))
            )
            return set(found)

    def jobs_open(self) -> int:
        """Outbox jobs not yet done or dead."""
        with self.db.read_session() as session:
            return int(
                session.scalar(
                    select(func.count()).where(
                        OutboxJob.state.in_([JobState.PENDING, JobState.RUNNING])
                    )
                )
                or 0
            )

    async def settle(self) -> bool:
        """Until the sandbox shows on hand minus sold for every SKU and the outbox is empty."""
        want = {sku: max(0, self.on_hand[sku] - self.sold[sku]) for sku in self.skus}
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            shown = (await self.http.get(self.control("/inventory"))).json()
            is_shown = all(shown.get(sku) == units for sku, units in want.items())
            if is_shown and await asyncio.to_thread(self.jobs_open) == 0:
                return True
            await asyncio.sleep(0.1)
        return False

    def log_levels(self) -> dict[str, int]:
        """Warning and error lines the daemon logged."""
        text = self.daemon.output()
        return {level.lower(): text.count(f'"level": "{level}"') for level in ("WARNING", "ERROR")}


@contextmanager
def start_rig(root: Path, db_url: str, args: argparse.Namespace, *, sqs: bool) -> Iterator[Rig]:
    """Sandbox account with every SKU listed, the store seeded, the daemon healthy."""
    skus = [f"AMZ-{i:04d}" for i in range(max(args.burst, args.trickle_skus, args.order_skus))]
    seed_store(db_url, skus)
    with ExitStack() as stack:
        root.mkdir(parents=True)
        extra = ["--start-sqs"] if sqs else []
        amazon = stack.enter_context(AmazonProcess(root, [*extra, "--seed", str(args.seed)]))
        for i in range(0, len(skus), 100):
            listings = [{"sku": sku, "quantity": STOCK} for sku in skus[i : i + 100]]
            amazon.control("POST", "/listings", {"listings": listings})
        config = DaemonConfig(root=root / "cfg", database_url=db_url)
        poll_s = 3600.0 if sqs else args.poll_interval
        config.channels = {
            CHANNEL: channel_file(
                amazon.info, poll_s=poll_s, sqs=sqs, feed_threshold=args.feed_threshold
            )
        }
        config.write()
        env = {config.admin_token_env: ADMIN_TOKEN, "BENCH_AWS_SECRET": "bench"}
        env |= {var: amazon.info[key] for var, key in SECRETS.items()}
        daemon = Daemon(config, env).start()
        stack.callback(daemon.kill)
        daemon.wait_healthy(timeout=60)
        db = Database(db_url)
        stack.callback(db.dispose)
        rig = Rig(amazon, daemon, db, skus)
        yield rig
        code = daemon.stop()
        if code != 0:
            print(f"the daemon exited with {code}", file=sys.stderr)


async def order_latency(rig: Rig, offsets: list[float], seed: int) -> dict[str, Any]:
    """Orders of one unit placed `offsets` seconds after the start; seconds until each is in
    the store."""
    rng = random.Random(seed)
    pool = rig.skus[: max(1, len(rig.skus) // 4)]
    pending: dict[str, float] = {}
    seen: list[float] = []
    placed_all = asyncio.Event()
    limit_s = max(offsets, default=0) + 3 * (max(offsets, default=0) / max(1, len(offsets))) + 240

    async def watch() -> None:
        deadline = time.monotonic() + limit_s
        while (pending or not placed_all.is_set()) and time.monotonic() < deadline:
            if pending:
                found = await asyncio.to_thread(rig.stored, list(pending))
                now = time.monotonic()
                for order_id in found:
                    seen.append(now - pending.pop(order_id))
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    start = time.monotonic()
    for offset in sorted(offsets):
        await asyncio.sleep(max(0.0, start + offset - time.monotonic()))
        order_id = await rig.place_order(rng.choice(pool))
        pending[order_id] = time.monotonic()
    placed_all.set()
    await watcher
    return {
        "orders": len(offsets),
        "not_ingested": len(pending),
        "gave_up_after_s": round(limit_s),
        "seconds": percentiles(seen, scale=1.0),
    }


def _calls_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    made = {
        op: n - before["calls"].get(op, 0)
        for op, n in sorted(after["calls"].items())
        if n > before["calls"].get(op, 0)
    }
    transfers = sum(after["transfers"].values()) - sum(before["transfers"].values())
    throttled = sum(after["throttled"].values()) - sum(before["throttled"].values())
    return {**made, "total": sum(made.values()), "transfers": transfers, "throttled": throttled}


async def trickle(rig: Rig, changes: int, rate: float) -> dict[str, Any]:
    """`changes` on-hand sets at `rate`, one SKU each: patches."""
    pool = rig.skus[: max(1, min(len(rig.skus), changes))]
    plan = [
        (pool[i % len(pool)], rig.on_hand[pool[i % len(pool)]] - 1 - i // len(pool))
        for i in range(changes)
    ]
    before = await rig.calls()
    started = time.monotonic()

    async def put(i: int) -> int:
        sku, units = plan[i]
        body = {"location": "default", "on_hand": units}
        return (await rig.admin.put(f"/api/stock/{sku}", json=body)).status_code

    sent = await open_loop(changes, rate, put)
    for sku, units in plan:
        rig.on_hand[sku] = units
    settled = await rig.settle()
    calls = _calls_between(before, await rig.calls())
    return _per_1000("patches", changes, calls, settled, time.monotonic() - started) | {
        "rate_per_s": rate,
        "refused": sum(1 for s in sent if s.status != 200),
    }


async def burst(rig: Rig, size: int, config_dir: Path) -> dict[str, Any]:
    """One stock import of `size` SKUs: one transaction, one feed."""
    chosen = rig.skus[:size]
    rows = ["sku,location,on_hand"]
    for sku in chosen:
        rig.on_hand[sku] -= 2
        rows.append(f"{sku},default,{rig.on_hand[sku]}")
    csv = config_dir / "burst.csv"
    csv.write_text("\n".join(rows) + "\n")
    before = await rig.calls()
    started = time.monotonic()
    done = await asyncio.to_thread(
        subprocess.run,
        [CHANNEL_SYNC, "stock", "import", str(csv), "--config", str(config_dir)],
        env={**os.environ, **rig.daemon.env},
        capture_output=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"stock import failed: {done.stderr.decode()[-500:]}")
    settled = await rig.settle()
    calls = _calls_between(before, await rig.calls())
    return _per_1000("feed", size, calls, settled, time.monotonic() - started)


def _per_1000(
    how: str, changes: int, calls: dict[str, int], settled: bool, seconds: float
) -> dict[str, Any]:
    return {
        "how": how,
        "changes": changes,
        "calls": calls,
        "calls_per_1000_changes": round(calls["total"] * 1000 / changes, 1),
        "settled": settled,
        "seconds_to_settle": round(seconds, 2),
    }


async def measure_sqs(rig: Rig, args: argparse.Namespace) -> dict[str, Any]:
    """1a and 1b on the SQS set-up."""
    offsets = [i / args.sqs_rate for i in range(args.sqs_orders)]
    figures: dict[str, Any] = {"sqs": await order_latency(rig, offsets, args.seed)}
    figures["sqs"]["rate_per_s"] = args.sqs_rate
    await rig.settle()
    figures["patches"] = await trickle(rig, args.trickle, args.trickle_rate)
    figures["feed"] = await burst(rig, args.burst, rig.daemon.config.root)
    figures["sqs_daemon_log"] = rig.log_levels()
    return figures


async def measure_polling(rig: Rig, args: argparse.Namespace) -> dict[str, Any]:
    """2 on the polling set-up."""
    rng = random.Random(args.seed + 1)
    window = args.poll_window * args.poll_interval
    offsets = [rng.uniform(0, window) for _ in range(args.poll_orders)]
    result = await order_latency(rig, offsets, args.seed)
    calls = await rig.calls()
    result |= {
        "interval_s": args.poll_interval,
        "search_orders_calls": calls["calls"].get("searchOrders", 0),
        "daemon_log": rig.log_levels(),
    }
    return {"polling": result}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both set-ups, one after the other; every figure."""
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-amazon-") as tmp:
        with (
            empty_store_url(args.database, args.pg_url) as db_url,
            start_rig(Path(tmp) / "sqs", db_url, args, sqs=True) as rig,
        ):
            figures |= asyncio.run(rig.measure(measure_sqs, args))
        with (
            empty_store_url(args.database, args.pg_url) as db_url,
            start_rig(Path(tmp) / "poll", db_url, args, sqs=False) as rig,
        ):
            figures |= asyncio.run(rig.measure(measure_polling, args))
    return figures


def print_report(figures: dict[str, Any]) -> None:
    """The readable tables."""
    console = Console(width=max(120, Console().width))
    latency = Table(title="order placed on the sandbox -> in the store (seconds)")
    for column in ("path", "orders", "p50", "p99", "max", "not ingested", "set-up"):
        latency.add_column(column, justify="right")
    for path in ("sqs", "polling"):
        row = figures[path]
        s = row["seconds"]
        how = (
            f"{row['rate_per_s']:g}/s, polling every 3600 s"
            if path == "sqs"
            else f"random moments, polling every {row['interval_s']:g} s"
        )
        latency.add_row(
            path,
            str(row["orders"]),
            str(s["p50"]),
            str(s["p99"]),
            str(s["max"]),
            str(row["not_ingested"]),
            how,
        )
    console.print(latency)
    calls = Table(title="API calls per 1,000 stock changes")
    for column in ("how", "changes", "calls (by operation)", "per 1,000", "throttled", "settled"):
        calls.add_column(column, justify="right")
    for key in ("patches", "feed"):
        row = figures[key]
        ops = ", ".join(
            f"{op} {n}" for op, n in row["calls"].items() if op not in ("total", "throttled")
        )
        calls.add_row(
            row["how"],
            str(row["changes"]),
            ops,
            str(row["calls_per_1000_changes"]),
            str(row["calls"]["throttled"]),
            f"{'yes' if row['settled'] else 'NO'} in {row['seconds_to_settle']} s",
        )
    console.print(calls)
    console.print(
        f"daemon log: sqs set-up {figures['sqs_daemon_log']}, polling set-up "
        f"{figures['polling']['daemon_log']}; {figures['cores']} cores; {figures['database']}; "
        f"runtime {figures['runtime_s']} s"
    )


def parse_args() -> argparse.Namespace:
    """Command line; `--quick` shrinks every count and the poll interval for a smoke run."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (a few minutes)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--pg-url", default=os.environ.get("CHANNEL_SYNC_BENCH_PG_URL", DEFAULT_PG_URL)
    )
    parser.add_argument("--sqs-orders", type=int, default=40)
    parser.add_argument("--sqs-rate", type=float, default=0.4, help="getOrder allows 0.5/s")
    parser.add_argument("--order-skus", type=int, default=100)
    parser.add_argument("--poll-orders", type=int, default=20)
    parser.add_argument("--poll-interval", type=float, default=180.0, help="seconds")
    parser.add_argument("--poll-window", type=float, default=2.0, help="in poll intervals")
    parser.add_argument("--trickle", type=int, default=200, help="on-hand sets, one at a time")
    parser.add_argument("--trickle-rate", type=float, default=3.0, help="patches allow 5/s")
    parser.add_argument("--trickle-skus", type=int, default=200)
    parser.add_argument("--burst", type=int, default=1000, help="SKUs in one stock import")
    parser.add_argument("--feed-threshold", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.quick:
        args.sqs_orders, args.poll_orders, args.poll_interval = 10, 8, 20.0
        args.trickle, args.burst = 40, 120
    return args


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    figures = run(args)
    figures["cores"] = os.cpu_count()
    figures["database"] = args.database
    figures["quick"] = args.quick
    figures["feed_threshold"] = args.feed_threshold
    figures["runtime_s"] = round(time.monotonic() - started, 1)
    print_report(figures)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
