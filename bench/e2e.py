"""End to end: order-to-other-channel propagation, stock calls against the lower bound and
oversells, ours against a periodic-sync baseline on the same trace; then start-up, memory and
reconciliation at 100,000 SKUs (issue 8, sections 3 and 4).

Set-up (bench/e2e_rig.py): the three sandbox marketplaces (Shopify, Amazon with moto's SQS on
loopback, eBay) in one child process, with their real throttling; the daemon (`channel-sync run`,
a child process) on a SQLite store with the demo's channel files; every listing bound by a first
sync. The catalogue is one pool of `--skus` SKUs per rate (same units, some only 1-3), so each
rate starts from full stock; the trace (bench/e2e_trace.py, seeded: channel, lines, Poisson
arrival) is one, and rate r replays its first r x duration seconds' worth.

1. Ours (bench/e2e_replay.py): each order placed through `POST /_sandbox/orders`; every channel's
   `GET /_sandbox/inventory` read every ~0.1 s; p50/p99 from the order's answer until each other
   channel shows it. Stock calls from `GET /_sandbox/calls` against the lower bound: the fewest
   calls that show every change within the 2 s target, the trace known in advance
   (`calls_ratio`); and against two bounds of tools with other aims: listings whose final figure
   changed / the channel's batch maximum, however late (`calls_ratio_final`), and one call per
   sale (`calls_ratio_per_order`).
   Oversells: orders the daemon flagged oversold, and units accepted beyond on hand.
2. Baseline (a pure simulation over the same trace; no process): every N minutes read all orders
   and push every quantity, N = 15 and 5, each sync instant (its best case). `--compress 1,60`:
   at 1 the trace keeps its own pace (the same orders per second as ours; a sync every 900 or
   300 s of trace); at 60 the baseline gets the same orders 60 times slower (a trace second is a
   minute of the seller's day: a sync every 15 or 5 trace seconds), a far kinder load than the
   one our daemon ran in real time. Its oversells and its API calls (per sync: order pages read,
   and every listing pushed at the channel's batch size).
   Beside it, a floor (also simulated): a tool that learns every sale the instant it is placed
   and pushes in no time, Shopify and eBay always right, Amazon corrected at its published 5
   patches a second, the most urgent listing first (`rate_bound_oversells`).
3. Scale: a fresh set-up at `--scale-skus` SKUs listed on all three channels, the store holding
   the listings onboarding would have bound (a first sync at 100,000 is paced by the channels'
   paging limits for the better part of an hour): daemon start-up (process start until
   /healthz), its resident memory (/proc VmRSS, and VmHWM for the peak), then a full reconcile
   of the three channels at once; a channel not done within `--scale-limit` seconds gets an
   estimate (the limit stretched by the share of its listing pages read).

    .venv/bin/python bench/e2e.py [--quick] [--rates 1,10,50] [--duration 60,30,6] [--skus 200]
        [--intervals 15,5] [--compress 1,60] [--scale-skus 100000] [--scale-limit 240]
        [--shopify-restore-rate 100] [--scale-only] [--settle 180] [--seed 1] [--out DIR] [--keep]

    The scale part alone: `--scale-only` (same as `--rates none`). A full reconcile at 100,000
    SKUs is bound by the channels' published rates: Amazon's searchListingsItems pages 20
    listings at 5 calls/s (5,000 pages: about 1,000 s); Shopify's variant pages cost 4 points a
    variant against the plan's restore rate (Standard 100/s: about 4,000 s; Plus 1000/s: 400 s;
    `--shopify-restore-rate` sets the sandbox's plan). `--scale-limit 1300` lets all finish.

Defaults take about 8 minutes on 2 shared cores; `--quick` 2-3 (2,000 SKUs at scale).

Writes DIR/e2e.json and DIR/e2e.png; the last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import distinct, func, select

from bench._common import percentiles
from bench.e2e_breakdown import breakdown, print_breakdown
from bench.e2e_replay import ReplayResult, replay
from bench.e2e_report import draw_chart, print_report
from bench.e2e_rig import Rig, all_calls, calls_between, reconcile_within, start_rig
from bench.e2e_trace import (
    CHANNELS,
    TraceOrder,
    make_trace,
    make_units,
    oversold_units,
    pool_products,
    simulate_periodic,
    simulate_rate_bound,
    stock_call_bounds,
    token_bucket_lags,
)
from sync.models import Channel as ChannelRow
from sync.models import Order as OrderRow
from sync.models import OrderLine

# Amazon's published patchListingsItem limit (connectors/amazon/const.py): pushing every sale to
# Amazon as it happens, one listing per call, can be no faster than this bucket lets it.
AMAZON_PATCH = (5.0, 5.0)
# The call a reconcile pages the channel's listings with, and listings per call: Shopify
# productVariants 200 (connectors/shopify/const.py VARIANTS_PAGE), Amazon searchListingsItems 20,
# eBay GetMyeBaySelling 100 per call over its two passes (as measured at 5,000 SKUs).
LISTING_READS = {
    "shopify": ("productVariants", 200),
    "amazon": ("searchListingsItems", 20),
    "ebay": ("GetMyeBaySelling", 100),
}


def seconds(values: list[float]) -> dict[str, float | int | None]:
    """n, p50, p99, max in seconds."""
    return percentiles(values, scale=1.0)


def flagged_oversold(rig: Rig, prefix: str) -> int:
    """Orders of the pool the daemon flagged oversold."""
    return sum(oversold_by_channel(rig, prefix).values())


def oversold_by_channel(rig: Rig, prefix: str) -> dict[str, int]:
    """Orders of the pool the daemon flagged oversold, by the channel each was placed on: the
    channel whose shown stock was behind."""
    with rig.db.read_session() as session:
        query = (
            select(ChannelRow.name, func.count(distinct(OrderRow.id)))
            .join(OrderRow, OrderRow.channel_id == ChannelRow.id)
            .join(OrderLine, OrderLine.order_id == OrderRow.id)
            .where(OrderRow.is_oversold.is_(True), OrderLine.sku.like(f"{prefix}-%"))
            .group_by(ChannelRow.name)
        )
        counts = {str(name): int(count) for name, count in session.execute(query)}
    return {channel: counts.get(channel, 0) for channel in CHANNELS}


def rate_figures(
    rig: Rig,
    prefix: str,
    rate: float,
    trace: list[TraceOrder],
    units: list[int],
    result: ReplayResult,
) -> dict[str, Any]:
    """Every figure of one rate: latency, calls against the bounds, oversells."""
    bounds = stock_call_bounds(result.accepted, units, rate)
    over_orders, over_units = oversold_units(result.accepted, units)
    calls = {}
    for channel in CHANNELS:
        made = result.calls[channel]
        bound = bounds[channel]
        calls[channel] = {
            **bound,
            "stock_calls": made["stock"],
            "all_calls": made["total"],
            "throttled": made["throttled"],
            # The lower bound of a tool that meets the 2 s target: the fewest calls that show
            # every change within it. The other two bound tools with no target (`final`: one
            # call per listing batch for the whole run) and tools that send each sale alone.
            "ratio": (
                round(made["stock"] / bound["within_target"], 2) if bound["within_target"] else None
            ),
            "ratio_final": round(made["stock"] / bound["final"], 2) if bound["final"] else None,
            "ratio_per_order": (
                round(made["stock"] / bound["per_order"], 2) if bound["per_order"] else None
            ),
            "by_operation": made["by_operation"],
        }
    amazon_out = sorted(o.offset / rate for o in result.accepted if o.channel != "amazon")
    return {
        "orders": len(trace),
        "span_s": result.span_s,
        "accepted": len(result.accepted),
        "refused": dict(result.refused),
        "failed": dict(result.failed),
        "placing_late_p99_s": seconds(result.placing_lateness_s)["p99"],
        "latency_s": {c: seconds(result.latencies[c]) for c in CHANNELS},
        "latency_by_route_s": {r: seconds(v) for r, v in sorted(result.by_route.items())},
        "samples_excluded_own_sale": dict(result.excluded_own_sale),
        "samples_already_shown": dict(result.already_shown),
        "samples_unseen": dict(result.unseen),
        "inventory_reads": dict(result.polls),
        "settle_s": result.settle_s,
        "final_mismatch": result.final_mismatch,
        "calls": calls,
        "oversold_flagged": flagged_oversold(rig, prefix),
        "oversold_by_channel": oversold_by_channel(rig, prefix),
        "oversold_orders_accepted": over_orders,
        "oversold_units": over_units,
        "amazon_patch_floor_s": seconds(token_bucket_lags(amazon_out, *AMAZON_PATCH)),
        "breakdown": breakdown(rig.db, result.samples),
    }


def run_rates(args: argparse.Namespace, state: Path) -> dict[str, Any]:
    """Ours at every rate on one set-up (a pool per rate), and the baseline over the same trace."""
    units = make_units(args.skus, args.seed)
    longest = max(r * d for r, d in zip(args.rates, args.durations, strict=True))
    full = make_trace(int(longest * 1.2) + 10, args.skus, args.seed)
    pools = {rate: f"R{rate:g}".replace(".", "_") for rate in args.rates}
    products = [p for prefix in pools.values() for p in pool_products(prefix, units)]
    out: dict[str, Any] = {"rates": {}, "baseline": {}, "rate_bound": {}}
    with start_rig(state / "rates", products) as rig:
        out["setup"] = dict(rig.timings)
        for rate, duration in zip(args.rates, args.durations, strict=True):
            trace = [o for o in full if o.offset / rate <= duration]
            say(f"rate {rate:g}/s: {len(trace)} orders over {duration:g} s ...")
            result = asyncio.run(
                replay(
                    rig,
                    trace,
                    rate=rate,
                    prefix=pools[rate],
                    units=units,
                    settle_limit_s=args.settle,
                )
            )
            out["rates"][f"{rate:g}"] = rate_figures(rig, pools[rate], rate, trace, units, result)
            out["baseline"][f"{rate:g}"] = {
                f"{n:g}": {
                    f"{c:g}": vars(
                        simulate_periodic(trace, units, rate=rate, interval_min=n, compress=c)
                    )
                    for c in args.compress
                }
                for n in args.intervals
            }
            out["rate_bound"][f"{rate:g}"] = vars(
                simulate_rate_bound(
                    trace,
                    units,
                    rate=rate,
                    patch_rate=AMAZON_PATCH[0],
                    patch_burst=AMAZON_PATCH[1],
                )
            )
        out["rss_mb_after_rates"] = rig.rss_mb()
    return out


async def measure_reconcile(rig: Rig, skus: int, limit_s: float) -> dict[str, Any]:
    """One full reconcile of the three channels (concurrent): seconds per channel (None: not
    done within `limit_s`) and the API calls each made meanwhile. Meanwhile `/api/status` is
    read twice a second, as the live view does (its latency), and the daemon's memory once a
    second (the largest VmRSS seen; VmHWM after covers any peak between samples)."""
    async with httpx.AsyncClient(timeout=30) as client:
        before = await all_calls(rig, client)
        started = time.monotonic()
        watching = asyncio.create_task(watch_daemon(rig))
        try:
            per_channel = await reconcile_within(rig, limit_s)
        finally:
            watching.cancel()
            watched = await asyncio.gather(watching, return_exceptions=True)
        spent = round(time.monotonic() - started, 2)
        calls = calls_between(before, await all_calls(rig, client))
    status_s, rss_seen, status_failed = (
        watched[0] if isinstance(watched[0], tuple) else ([], [], [])
    )
    return {
        "skus": skus,
        "seconds": spent if None not in per_channel.values() else None,
        "by_channel_s": per_channel,
        "calls": {c: calls[c]["total"] for c in CHANNELS},
        "calls_by_operation": {c: calls[c]["by_operation"] for c in CHANNELS},
        "limit_s": limit_s,
        "status_s": seconds(status_s),
        "status_failed": len(status_failed),
        "rss_mb_max_sampled": max(rss_seen, default=None),
        "rss_mb_timeline": rss_seen[:: max(1, len(rss_seen) // 20)],
    }


async def watch_daemon(rig: Rig) -> tuple[list[float], list[float], list[float]]:
    """Until cancelled: `/api/status` latencies (every 0.5 s), VmRSS samples (every 1 s), and
    the seconds of status reads that failed (an error status or no answer within 30 s)."""
    status_s: list[float] = []
    rss: list[float] = []
    failed: list[float] = []
    result = (status_s, rss, failed)
    async with rig.admin_client(timeout=30) as admin:
        tick = 0
        while True:
            started = time.monotonic()
            try:
                if tick % 2 == 0:
                    rss.append(rig.rss_mb()["rss_mb"])
                tick += 1
                try:
                    answer = await admin.get("/api/status")
                except httpx.HTTPError:
                    failed.append(time.monotonic() - started)
                else:
                    elapsed = time.monotonic() - started
                    (status_s if answer.status_code == 200 else failed).append(elapsed)
                await asyncio.sleep(max(0.0, 0.5 - (time.monotonic() - started)))
            except asyncio.CancelledError:
                return result


def set_shopify_restore_rate(rig: Rig, restore_rate: float) -> None:
    """Give the Shopify sandbox's cost bucket a plan's figures (CHANNELS.md: Standard 100
    points/s, Advanced 200, Plus 1000; the bucket holds 20 s of restore)."""
    answer = httpx.post(
        rig.control("shopify", "/bucket"),
        json={"restore_rate": restore_rate, "maximum_available": restore_rate * 20},
        timeout=10,
    )
    answer.raise_for_status()


def estimate_reconcile(big: dict[str, Any]) -> dict[str, float | None]:
    """Seconds a full reconcile takes per channel: measured where it finished within the limit,
    else the limit stretched by the share of the channel's listing pages read so far (pages of
    LISTING_READS; its rate limit paces them evenly)."""
    out: dict[str, float | None] = {}
    for channel in CHANNELS:
        done = big["by_channel_s"][channel]
        if done is not None:
            out[channel] = done
            continue
        operation, per_page = LISTING_READS[channel]
        made = big["calls_by_operation"][channel].get(operation, 0)
        wanted = math.ceil(big["skus"] / per_page)
        out[channel] = round(big["limit_s"] * wanted / made) if made else None
    return out


def run_scale(args: argparse.Namespace, state: Path) -> dict[str, Any]:
    """A fresh set-up at `--scale-skus` SKUs, listings bound as onboarding leaves them:
    start-up, memory, one full reconcile (within `--scale-limit`; estimated past it)."""
    products = pool_products("S", make_units(args.scale_skus, args.seed + 1))
    say(f"scale: {args.scale_skus} SKUs on three channels ...")
    with start_rig(state / "scale", products, limit_s=args.scale_limit, prebind=True) as rig:
        figures: dict[str, Any] = {"skus": args.scale_skus, **rig.timings}
        if args.shopify_restore_rate:
            set_shopify_restore_rate(rig, args.shopify_restore_rate)
        figures["shopify_restore_rate"] = args.shopify_restore_rate or 100.0
        figures["rss_after_start"] = rig.rss_mb()
        figures["reconcile"] = asyncio.run(
            measure_reconcile(rig, args.scale_skus, args.scale_limit)
        )
        figures["rss_after_reconcile"] = rig.rss_mb()
        figures["listings_bound"] = rig.listings_bound()
        figures["reconcile_s"] = figures["reconcile"]["seconds"]
        figures["reconcile_estimate_s"] = estimate_reconcile(figures["reconcile"])
    return figures


def summary_line(figures: dict[str, Any]) -> dict[str, Any]:
    """The issue's required keys first, then everything."""
    rates = figures["rates"]
    scale = figures.get("scale") or {}
    last = list(rates)[-1] if rates else None
    head = {
        "p99_s": {r: {c: f["latency_s"][c]["p99"] for c in CHANNELS} for r, f in rates.items()},
        "p50_s": {r: {c: f["latency_s"][c]["p50"] for c in CHANNELS} for r, f in rates.items()},
        "calls_ratio": {r: {c: f["calls"][c]["ratio"] for c in CHANNELS} for r, f in rates.items()},
        "calls_ratio_per_order": {
            r: {c: f["calls"][c]["ratio_per_order"] for c in CHANNELS} for r, f in rates.items()
        },
        "calls_ratio_final": {
            r: {c: f["calls"][c]["ratio_final"] for c in CHANNELS} for r, f in rates.items()
        },
        "oversells": {r: f["oversold_flagged"] for r, f in rates.items()},
        "oversells_by_channel": {r: f["oversold_by_channel"] for r, f in rates.items()},
        "oversold_units": {r: f["oversold_units"] for r, f in rates.items()},
        "baseline_oversells": _baseline(figures, "oversold_orders", 0),
        # A tool with no delay of its own, bound only by Amazon's patch rate (e2e_trace.py).
        "rate_bound_oversells": {
            r: f["oversold_orders"] for r, f in figures.get("rate_bound", {}).items()
        },
        "baseline_oversells_compressed": _baseline(figures, "oversold_orders", -1),
        "baseline_compress": [f"{c:g}" for c in figures["args"]["compress"]],
        "rss_mb_100k": (scale.get("rss_after_reconcile") or {}).get("rss_mb"),
        "peak_rss_mb_100k": (scale.get("rss_after_reconcile") or {}).get("peak_rss_mb"),
        "startup_s_100k": scale.get("startup_s"),
        "idle_rss_mb_100k": (scale.get("rss_after_start") or {}).get("rss_mb"),
        "status_p99_s_100k": ((scale.get("reconcile") or {}).get("status_s") or {}).get("p99"),
        "reconcile_s_100k": scale.get("reconcile_s"),
        "reconcile_estimate_s_100k": scale.get("reconcile_estimate_s"),
        "scale_skus": scale.get("skus"),
        "headline_rate": last,
    }
    return {**head, "detail": figures}


def _baseline(figures: dict[str, Any], key: str, which: int) -> dict[str, dict[str, Any]]:
    """{interval: {rate: figure}} at the first (same pace) or last time compression."""
    out: dict[str, dict[str, Any]] = {}
    for rate, intervals in figures["baseline"].items():
        for interval, by_compress in intervals.items():
            chosen = list(by_compress.values())[which]
            out.setdefault(interval, {})[rate] = chosen[key]
    return out


def say(text: str) -> None:
    """Progress, on stderr (stdout holds the report)."""
    print(text, file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 1-2 minute smoke run")
    parser.add_argument("--rates", default="1,10,50", help="orders per second, comma separated")
    parser.add_argument("--duration", default="60,30,6", help="seconds per rate (one or each)")
    parser.add_argument("--skus", type=int, default=200, help="SKUs per rate's pool")
    parser.add_argument("--intervals", default="15,5", help="baseline sync intervals, minutes")
    parser.add_argument(
        "--compress", default="1,60", help="baseline time compressions (1: the same pace as ours)"
    )
    parser.add_argument("--scale-skus", type=int, default=100_000, help="0: skip the scale run")
    parser.add_argument(
        "--scale-limit", type=float, default=240.0, help="seconds for the reconcile at scale"
    )
    parser.add_argument(
        "--shopify-restore-rate",
        type=float,
        default=None,
        help="scale: the Shopify plan's points/s (Standard 100, the default; Plus 1000)",
    )
    parser.add_argument("--scale-only", action="store_true", help="only the scale run")
    parser.add_argument("--settle", type=float, default=180.0, help="seconds to wait per rate")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench-e2e")
    parser.add_argument("--keep", action="store_true", help="keep the state dirs under --out")
    args = parser.parse_args()
    if args.quick:
        args.rates, args.duration, args.skus = "1,10,50", "8,4,2", 60
        args.scale_skus = min(args.scale_skus, 2_000)
        args.scale_limit = min(args.scale_limit, 45.0)
        args.settle = min(args.settle, 60.0)
    if args.scale_only:
        args.rates = "none"
    args.rates = [float(r) for r in args.rates.split(",") if r not in ("", "none")]
    durations = [float(d) for d in args.duration.split(",")]
    args.durations = durations * len(args.rates) if len(durations) == 1 else durations
    args.durations = args.durations[: len(args.rates)] if not args.rates else args.durations
    if len(args.durations) != len(args.rates):
        parser.error("--duration: one value, or one per rate")
    args.intervals = [float(n) for n in args.intervals.split(",")]
    args.compress = [float(c) for c in args.compress.split(",")]
    return args


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    state = args.out / "state"
    shutil.rmtree(state, ignore_errors=True)
    started = time.monotonic()
    figures: dict[str, Any] = {
        "cores": os.cpu_count(),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    try:
        if args.rates:
            figures.update(run_rates(args, state))
        else:
            figures.update({"rates": {}, "baseline": {}, "rate_bound": {}})
        figures["scale"] = run_scale(args, state) if args.scale_skus > 0 else None
    finally:
        if not args.keep:
            shutil.rmtree(state, ignore_errors=True)
    figures["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    figures["runtime_s"] = round(time.monotonic() - started, 1)
    line = summary_line(figures)
    (args.out / "e2e.json").write_text(json.dumps(line, indent=2) + "\n")
    draw_chart(figures, args.out / "e2e.png")
    print_report(figures, args.out)
    for rate, by_rate in figures["rates"].items():
        print_breakdown(by_rate["breakdown"], rate)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
