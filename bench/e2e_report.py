"""The end-to-end bench's output: readable tables and a PNG chart (latency per rate and channel,
oversells ours against the periodic baseline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.e2e_trace import CHANNELS


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    return str(value)


def print_report(figures: dict[str, Any], out: Path) -> None:
    """Tables per rate (latency, calls, oversells), the baseline, the scale run."""
    console = Console(width=max(140, Console().width))
    latency = Table(title="propagation: order answered on one channel -> shown on another (s)")
    for column in (
        "rate/s",
        "orders",
        "accepted",
        "refused",
        "channel",
        "n",
        "p50",
        "p99",
        "max",
        "unseen",
        "excluded",
        "settle s",
    ):
        latency.add_column(column, justify="right")
    for rate, row in figures["rates"].items():
        for i, channel in enumerate(CHANNELS):
            lat = row["latency_s"][channel]
            first = i == 0
            latency.add_row(
                rate if first else "",
                str(row["orders"]) if first else "",
                str(row["accepted"]) if first else "",
                str(sum(row["refused"].values())) if first else "",
                channel,
                str(lat["n"]),
                _fmt(lat["p50"]),
                _fmt(lat["p99"]),
                _fmt(lat["max"]),
                str(row["samples_unseen"].get(channel, 0)),
                str(row["samples_excluded_own_sale"].get(channel, 0)),
                _fmt(row["settle_s"]) if first else "",
            )
    console.print(latency)

    routes = Table(
        title="p50 / p99 by route origin>destination (s); the floor 5 patches/s puts under Amazon"
    )
    routes.add_column("rate/s", justify="right")
    for route in _routes(figures):
        routes.add_column(route, justify="right")
    routes.add_column("to amazon: patch-only floor p50 / p99", justify="right")
    for rate, row in figures["rates"].items():
        cells = []
        for route in _routes(figures):
            lat = row["latency_by_route_s"].get(route)
            cells.append(f"{_fmt(lat['p50'])} / {_fmt(lat['p99'])}" if lat else "-")
        floor = row["amazon_patch_floor_s"]
        routes.add_row(rate, *cells, f"{_fmt(floor['p50'])} / {_fmt(floor['p99'])}")
    console.print(routes)

    calls = Table(title="stock calls against the lower bound (sandboxes' own counts)")
    for column in (
        "rate/s",
        "channel",
        "stock calls",
        "bound: within 2 s",
        "ratio",
        "bound: final",
        "ratio",
        "bound: per order",
        "ratio",
        "all calls",
        "throttled",
        "mismatch at end",
    ):
        calls.add_column(column, justify="right")
    for rate, row in figures["rates"].items():
        for i, channel in enumerate(CHANNELS):
            c = row["calls"][channel]
            calls.add_row(
                rate if i == 0 else "",
                channel,
                str(c["stock_calls"]),
                str(c["within_target"]),
                _fmt(c["ratio"]),
                str(c["final"]),
                _fmt(c["ratio_final"]),
                str(c["per_order"]),
                _fmt(c["ratio_per_order"]),
                str(c["all_calls"]),
                str(c["throttled"]),
                str(row["final_mismatch"].get(channel)),
            )
    console.print(calls)

    over = Table(title="oversells on the same trace: ours (measured) vs periodic sync (simulated)")
    for column in (
        "rate/s",
        "ours: flagged",
        "by channel shopify/amazon/ebay",
        "ours: units over",
        "baseline",
        "syncs",
        "oversold orders",
        "units over",
        "refused",
        "calls shopify/amazon/ebay",
    ):
        over.add_column(column, justify="right")
    for rate, row in figures["rates"].items():
        first = True
        for interval, by_compress in figures["baseline"][rate].items():
            for compress, base in by_compress.items():
                calls_text = "/".join(str(base["calls"][c]) for c in CHANNELS)
                over.add_row(
                    rate if first else "",
                    str(row["oversold_flagged"]) if first else "",
                    "/".join(str(row["oversold_by_channel"].get(c, 0)) for c in CHANNELS)
                    if first
                    else "",
                    str(row["oversold_units"]) if first else "",
                    f"{interval} min @{compress}x ({base['interval_trace_s']:g} s of trace)",
                    str(base["syncs"]),
                    str(base["oversold_orders"]),
                    str(base["oversold_units"]),
                    str(base["refused"]),
                    calls_text,
                )
                first = False
        bound = figures.get("rate_bound", {}).get(rate)
        if bound:
            over.add_row(
                "",
                "",
                "",
                "",
                f"floor: no delay, Amazon {bound['patch_rate']:g} patches/s",
                "-",
                str(bound["oversold_orders"]),
                str(bound["oversold_units"]),
                str(bound["refused"]),
                f"0/{bound['patches']}/0",
            )
    console.print(over)

    scale = figures.get("scale")
    if scale:
        start, after = scale["rss_after_start"], scale["rss_after_reconcile"]
        rec = scale["reconcile"]
        console.print(
            f"scale: {scale['skus']} SKUs x 3 channels ({scale['listings_bound']} listings): "
            f"sandboxes listening after {scale['sandboxes_s']} s, store seeded in "
            f"{scale['store_s']} s (+{scale.get('prebind_s')} s listings); daemon start-up "
            f"{scale['startup_s']} s, RSS {start['rss_mb']} MB; full reconcile "
            f"{rec['seconds']} s (per channel {rec['by_channel_s']}, limit {rec['limit_s']} s; "
            f"estimate {scale.get('reconcile_estimate_s')}), calls {rec['calls']}; RSS after "
            f"{after['rss_mb']} MB (peak {after['peak_rss_mb']} MB); Shopify plan "
            f"{scale.get('shopify_restore_rate')} points/s; /api/status meanwhile "
            f"{rec.get('status_s')}"
        )
    console.print(
        f"{figures['cores']} cores, load average {figures['load_avg_start']} at start, "
        f"{figures['load_avg_end']} at end; runtime {figures['runtime_s']} s; "
        f"JSON {out / 'e2e.json'}, chart {out / 'e2e.png'}"
    )


def _routes(figures: dict[str, Any]) -> list[str]:
    return sorted({r for row in figures["rates"].values() for r in row["latency_by_route_s"]})


def draw_chart(figures: dict[str, Any], path: Path) -> None:
    """Left: p50/p99 propagation per rate and channel (ours; the baseline's staleness is its
    interval). Right: oversold orders per rate, ours against each baseline interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = list(figures["rates"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.8 / (2 * len(CHANNELS))
    for i, channel in enumerate(CHANNELS):
        for j, key in enumerate(("p50", "p99")):
            values = [figures["rates"][r]["latency_s"][channel][key] or 0 for r in rates]
            offset = (2 * i + j) * width - 0.4 + width / 2
            left.bar(
                [x + offset for x in range(len(rates))],
                values,
                width,
                label=f"{channel} {key}",
                alpha=1.0 if key == "p99" else 0.55,
                color=f"C{i}",
            )
    variants = (
        [
            (n, c)
            for n, by_compress in (next(iter(figures["baseline"].values())) or {}).items()
            for c in by_compress
        ]
        if figures["baseline"]
        else []
    )
    left.axhline(2.0, color="red", linewidth=0.8)
    left.set_yscale("log")
    left.set_xticks(range(len(rates)), [f"{r} orders/s" for r in rates])
    left.set_ylabel("seconds until another channel shows the sale")
    left.set_title("propagation, ours (red line: 2 s target)")
    left.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.08))

    series = [("ours", [figures["rates"][r]["oversold_flagged"] for r in rates])]
    for n, c in variants:
        values = [figures["baseline"][r][n][c]["oversold_orders"] for r in rates]
        series.append((f"every {n} min @{c}x", values))
    if figures.get("rate_bound"):
        floor = [figures["rate_bound"][r]["oversold_orders"] for r in rates]
        series.append(("floor: Amazon's rate alone", floor))
    width = 0.8 / len(series)
    for k, (label, values) in enumerate(series):
        xs = [x + k * width - 0.4 + width / 2 for x in range(len(rates))]
        bars = right.bar(xs, values, width, label=label)
        right.bar_label(bars, fontsize=7)
    right.set_xticks(range(len(rates)), [f"{r} orders/s" for r in rates])
    right.set_ylabel("oversold orders")
    right.set_title("oversells on the same trace: ours vs periodic sync")
    right.legend(fontsize=8)
    fig.suptitle(f"channel-sync end to end ({figures['cores']} cores, shared machine)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
