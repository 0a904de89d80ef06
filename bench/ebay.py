"""eBay on loopback: order-to-ingest latency by notification hint and by poll, and Trading calls
per 1,000 stock changes.

The real daemon (`channel-sync run`, a subprocess) with two eBay channels, each a sandbox account
(`python -m sandbox.ebay`, a subprocess) with its own Trading listings:

- `ebay-hint` sends its notifications to the daemon's `/webhooks/ebay-hint` (eBay's endpoint
  check first) and is polled only when the run starts: its orders come in by hint
  (ORDER_CONFIRMATION -> the daemon reads that order).
- `ebay-poll` sends none and is polled every `--poll-interval` seconds: its orders come in by
  the poll.

Measured, one after another:

1. Order to ingest, per path: `--orders` buyers check out one unit each (`POST /_sandbox/orders`)
   at `--order-rate` per second; the latency of an order is from just before its checkout request
   until the daemon stored it (`orders.ingested_at`, the daemon's clock, the same machine).
2. Trading calls per 1,000 stock changes: the seller sets on hand (`PUT /api/stock/{sku}`, which
   wakes the pusher) `--changes` times at `--changes-rate` per second over the `--listings`
   Trading listings of `ebay-hint`; once eBay shows every final figure, the
   ReviseInventoryStatus calls the sandbox counted, scaled to 1,000 changes, beside the two
   bounds (one call per change; one call per 4 listings changed) and the daemon's own count of
   the day's Trading calls (`/api/status`, kept in the store) against the sandbox's.

    .venv/bin/python bench/ebay.py [--quick] [--database sqlite|postgresql]
        [--pg-url postgresql://postgres@127.0.0.1:5432/postgres] [--orders 100]
        [--order-rate 5] [--poll-interval 5] [--changes 1000] [--changes-rate 100]
        [--listings 100] [--seed 1]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

# The repository root first: bench helpers import as `bench._common` (a namespace package).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from bench._common import DEFAULT_PG_URL, empty_store_url, percentiles
from sync.db import Database
from sync.models import Listing, Sku
from sync.models import Order as OrderRow
from sync.stock_ops import import_stock_csv
from tests.sandbox.ebay.process import EbayProcess
from tests.support.daemon import Daemon, DaemonConfig

T = TypeVar("T")
ADMIN_TOKEN = "bench-ebay-admin-token-0123456789"
CLIENT_ID = "Sandbox-chsync-SBX-bench01"
CLIENT_SECRET = "SBX-bench-client-secret-0123456789"
REFRESH_TOKEN = "v^1.1#i^1#r^1#bench-refresh-token-0123456789"
VERIFICATION_TOKEN = "bench-verification-token-0123456789abcdef"
STOCK = 100_000
DAY = 86_400
SETTLE_S = 300.0


def wait(check: Callable[[], T | None], limit_s: float, what: str, every_s: float = 0.05) -> T:
    """Poll `check` until it answers something truthy; RuntimeError after `limit_s`."""
    deadline = time.monotonic() + limit_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up after {limit_s:.0f} s waiting for {what}")
        time.sleep(every_s)


def channel_file(name: str, sandbox: EbayProcess, webhooks_url: str, poll_s: float) -> str:
    """The channel file a seller would write for a sandbox account."""
    info = sandbox.info
    return (
        'kind = "ebay"\n'
        'locations = ["default"]\n'
        f'client_id = "{CLIENT_ID}"\n'
        'client_secret = "env:BENCH_EBAY_CLIENT_SECRET"\n'
        'refresh_token = "env:BENCH_EBAY_REFRESH_TOKEN"\n'
        'verification_token = "env:BENCH_EBAY_VERIFICATION_TOKEN"\n'
        f'notification_endpoint_url = "{webhooks_url}/webhooks/{name}"\n'
        f'api_base_url = "{info["api_base_url"]}"\n'
        f'trading_api_url = "{info["trading_url"]}"\n'
        f'identity_url = "{info["identity_url"]}"\n'
        f"[schedule]\npoll_interval_s = {poll_s}\nreconcile_interval_s = {DAY}\n"
    )


@dataclass
class Rig:
    """The running set-up."""

    sandboxes: dict[str, EbayProcess]
    daemon: Daemon
    admin: httpx.Client
    db_url: str
    skus: dict[str, list[str]]
    sold: Counter[str] = field(default_factory=Counter)  # units bought per SKU (all reserved)

    def control(self, name: str, method: str, path: str, body: object = None) -> Any:
        """The control API of one sandbox."""
        return self.sandboxes[name].control(method, path, body)

    def calls(self, name: str, operation: str) -> int:
        """Calls of `operation` one sandbox counted."""
        return int(self.control(name, "GET", "/calls")["calls"].get(operation, 0))

    def ingested(self, external_ids: list[str]) -> dict[str, datetime]:
        """When the daemon stored each of these orders (those it has)."""
        db = Database(self.db_url)
        try:
            with db.read_session() as session:
                return dict(
                    session.execute(
                        select(OrderRow.external_id, OrderRow.ingested_at).where(
                            OrderRow.external_id.in_(external_ids)
                        )
                    ).all()
                )
        finally:
            db.dispose()

    def is_settled(self) -> bool:
        """No outbox job pending or running."""
        return not any(
            self.admin.get("/api/jobs", params={"state": state}).json()["items"]
            for state in ("pending", "running")
        )


def set_on_hand(db_url: str, on_hand: dict[str, int]) -> None:
    """Create the SKUs and set their on hand in one transaction (as `stock import` would)."""
    db = Database(db_url)
    try:

        def work(session: Any) -> None:
            known = set(session.scalars(select(Sku.sku)))
            session.add_all(Sku(sku=sku) for sku in on_hand if sku not in known)
            session.flush()
            rows = "".join(f"{sku},default,{n}\n" for sku, n in on_hand.items())
            import_stock_csv(session, f"sku,location,on_hand\n{rows}".encode())

        db.transact(work)
    finally:
        db.dispose()


def count_listings(db_url: str) -> int:
    """Listings bound in the store."""
    db = Database(db_url)
    try:
        with db.read_session() as session:
            return len(session.scalars(select(Listing.id)).all())
    finally:
        db.dispose()


@contextmanager
def start_rig(args: argparse.Namespace, db_url: str, root: Path) -> Iterator[Rig]:
    """Two sandbox accounts and the daemon, SKUs in the ledger, listings bound."""
    skus = {
        "ebay-hint": [f"H{n:04d}" for n in range(args.listings)],
        "ebay-poll": [f"P{n:04d}" for n in range(max(4, min(args.listings, 20)))],
    }
    with ExitStack() as stack:
        sandboxes = {}
        for n, (name, pool) in enumerate(skus.items()):
            flags = ["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET]
            flags += ["--refresh-token", REFRESH_TOKEN, "--seed", str(args.seed + n)]
            for sku in pool:
                flags += ["--listing", f"{sku}={STOCK}"]
            (root / name).mkdir()
            sandboxes[name] = stack.enter_context(EbayProcess(root / name, flags))
        config = DaemonConfig(root=root / "cfg", database_url=db_url, drain_deadline_s=10)
        config.channels = {
            "ebay-hint": channel_file(
                "ebay-hint", sandboxes["ebay-hint"], config.webhooks_url, DAY
            ),
            "ebay-poll": channel_file(
                "ebay-poll", sandboxes["ebay-poll"], config.webhooks_url, args.poll_interval
            ),
        }
        config.write()
        env = {
            config.admin_token_env: ADMIN_TOKEN,
            "BENCH_EBAY_CLIENT_SECRET": CLIENT_SECRET,
            "BENCH_EBAY_REFRESH_TOKEN": REFRESH_TOKEN,
            "BENCH_EBAY_VERIFICATION_TOKEN": VERIFICATION_TOKEN,
        }
        daemon = Daemon(config, env).start()
        stack.callback(daemon.kill)
        daemon.wait_healthy(timeout=60)
        admin = stack.enter_context(
            httpx.Client(
                base_url=config.admin_url,
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=120,
            )
        )
        set_on_hand(db_url, {sku: STOCK for pool in skus.values() for sku in pool})
        total = sum(len(pool) for pool in skus.values())
        rig = Rig(sandboxes, daemon, admin, db_url, skus)

        def bound() -> bool:
            if count_listings(db_url) == total:
                return True
            for name in skus:
                admin.post(f"/api/channels/{name}/sync")
            return False

        wait(bound, 120, "every listing bound", every_s=0.5)
        shown = rig.control(
            "ebay-hint",
            "POST",
            "/notifications",
            {
                "endpoint": f"{config.webhooks_url}/webhooks/ebay-hint",
                "verification_token": VERIFICATION_TOKEN,
                "topics": ["ORDER_CONFIRMATION"],
            },
        )
        if not shown["endpoint"]["verified"]:
            raise RuntimeError("the daemon failed eBay's endpoint check")
        wait(rig.is_settled, SETTLE_S, "the set-up to settle")
        yield rig
        daemon.stop(signal.SIGTERM, timeout=60)


def order_latency(rig: Rig, name: str, count: int, rate: float, seed: int) -> dict[str, Any]:
    """Checkouts on one account at `rate` per second; seconds until each order was stored."""
    rng = random.Random(seed)
    placed: dict[str, datetime] = {}
    start = time.monotonic()
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sku = rng.choice(rig.skus[name])
        rig.sold[sku] += 1
        at = datetime.now(UTC)
        answer = rig.control(name, "POST", "/orders", {"lines": [{"sku": sku, "quantity": 1}]})
        placed[answer["order_id"]] = at
    ids = list(placed)

    def all_stored() -> dict[str, datetime] | None:
        found = rig.ingested(ids)
        return found if len(found) == len(ids) else None

    stored = wait(
        all_stored,
        SETTLE_S,
        f"the {count} orders of {name} in the store",
        every_s=0.2,
    )
    latencies = [(stored[i] - placed[i]).total_seconds() for i in ids]
    return {"orders": count, "rate_per_s": rate, "latency_ms": percentiles(latencies)}


def trading_calls(rig: Rig, changes: int, rate: float, seed: int) -> dict[str, Any]:
    """Stock changes over the hint account's Trading listings; calls per 1,000 changes."""
    name = "ebay-hint"
    pool = rig.skus[name]
    rng = random.Random(seed)
    before = rig.calls(name, "ReviseInventoryStatus")
    trading_before = int(rig.control(name, "GET", "/quotas")["apis"]["trading"]["used"])
    final: dict[str, int] = {}
    start = time.monotonic()
    for i in range(changes):
        if rate > 0:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        sku = rng.choice(pool)
        on_hand = rng.randint(1, 1000)
        answer = rig.admin.put(
            f"/api/stock/{sku}", json={"location": "default", "on_hand": on_hand}
        )
        answer.raise_for_status()
        final[sku] = on_hand
    sent_s = time.monotonic() - start

    def shown() -> bool:
        inventory = rig.control(name, "GET", "/inventory")
        return (
            all(inventory[sku] == n - rig.sold[sku] for sku, n in final.items())
            and rig.is_settled()
        )

    wait(shown, SETTLE_S, "eBay to show every final on hand", every_s=0.2)
    settled_s = time.monotonic() - start
    calls = rig.calls(name, "ReviseInventoryStatus") - before
    sandbox_used = int(rig.control(name, "GET", "/quotas")["apis"]["trading"]["used"])

    def ours() -> int | None:
        status = rig.admin.get("/api/status").json()
        (channel,) = [c for c in status["channels"] if c["name"] == name]
        found = [q for q in (channel["budgets"] or {}).get("quotas", []) if q["api"] == "trading"]
        return int(found[0]["used"]) if found and found[0]["used"] == sandbox_used else None

    our_used = wait(ours, 30, "the daemon's stored count of Trading calls to catch up")
    scale = 1000 / changes
    return {
        "changes": changes,
        "rate_per_s": rate,
        "listings": len(pool),
        "listings_changed": len(final),
        "send_s": round(sent_s, 2),
        "achieved_rate_per_s": round(changes / sent_s, 1),
        "settled_s": round(settled_s, 2),
        "revise_calls": calls,
        "revise_calls_per_1000_changes": round(calls * scale, 1),
        "bound_one_call_per_change": 1000,
        "bound_four_listings_per_call": math.ceil(len(final) / 4),
        "trading_calls_today_sandbox": sandbox_used,
        "trading_calls_today_ours": our_used,
        "trading_calls_during_run": sandbox_used - trading_before,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Set up, measure, tear down."""
    figures: dict[str, Any] = {"database": args.database}
    with (
        empty_store_url(args.database, args.pg_url) as db_url,
        tempfile.TemporaryDirectory(prefix="bench-ebay-") as tmp,
    ):
        started = time.monotonic()
        with start_rig(args, db_url, Path(tmp)) as rig:
            figures["setup_s"] = round(time.monotonic() - started, 1)
            figures["hint"] = order_latency(rig, "ebay-hint", args.orders, args.order_rate, 11)
            poll = order_latency(rig, "ebay-poll", args.orders, args.order_rate, 12)
            figures["poll"] = {**poll, "poll_interval_s": args.poll_interval}
            figures["trading"] = trading_calls(rig, args.changes, args.changes_rate, args.seed)
            hint_counts = rig.control("ebay-hint", "GET", "/notifications?limit=0")["counts"]
            figures["hint"]["notifications"] = hint_counts
    return figures


def print_report(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    """The readable table, then the JSON line."""
    console = Console(width=120)
    table = Table(title=f"eBay on loopback ({figures['database']} store)")
    for column in ("path", "orders", "rate/s", "p50 ms", "p99 ms", "max ms", "note"):
        table.add_column(column, justify="left" if column in ("path", "note") else "right")
    for path, note in (
        ("hint", "ORDER_CONFIRMATION -> getOrder"),
        ("poll", f"getOrders every {args.poll_interval:g} s"),
    ):
        row = figures[path]
        lat = row["latency_ms"]
        table.add_row(
            path,
            str(row["orders"]),
            f"{row['rate_per_s']:g}",
            str(lat["p50"]),
            str(lat["p99"]),
            str(lat["max"]),
            note,
        )
    console.print(table)
    trading = figures["trading"]
    calls = Table(title="Trading calls for stock changes (ReviseInventoryStatus, 4 per call)")
    for column in ("changes", "listings", "calls", "per 1,000", "1/change", "4/call", "settled s"):
        calls.add_column(column, justify="right")
    calls.add_row(
        str(trading["changes"]),
        f"{trading['listings_changed']}/{trading['listings']}",
        str(trading["revise_calls"]),
        str(trading["revise_calls_per_1000_changes"]),
        str(trading["bound_one_call_per_change"]),
        str(trading["bound_four_listings_per_call"]),
        str(trading["settled_s"]),
    )
    console.print(calls)
    console.print(
        f"Trading calls today: sandbox {trading['trading_calls_today_sandbox']}, "
        f"daemon's stored count {trading['trading_calls_today_ours']}"
    )
    print(json.dumps(figures, sort_keys=True))


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (30 orders, 300 changes)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--orders", type=int, default=100, help="orders per path")
    parser.add_argument("--order-rate", type=float, default=5.0, help="checkouts per second")
    parser.add_argument("--poll-interval", type=float, default=5.0, help="seconds (ebay-poll)")
    parser.add_argument("--changes", type=int, default=1000, help="on-hand changes")
    parser.add_argument("--changes-rate", type=float, default=100.0, help="per second; 0: flat out")
    parser.add_argument("--listings", type=int, default=100, help="Trading listings changed")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.quick:
        args.orders, args.changes = min(args.orders, 30), min(args.changes, 300)
    if args.orders < 1 or args.changes < 1 or args.listings < 1 or args.order_rate <= 0:
        parser.error("--orders, --changes, --listings and --order-rate must be positive")
    return args


def main() -> None:
    """Run the benchmark and print its figures."""
    args = parse_args()
    print_report(args, run(args))


if __name__ == "__main__":
    main()
