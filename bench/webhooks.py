"""Webhook load on loopback (issue 9 §3): N verified deliveries a second for T seconds; the time
to each 200, the answers by status, and whether every delivery answered 200 ended in the store.

The set-up is bench/shopify.py's: the real daemon (`channel-sync run`, a subprocess) with two
Shopify channels, `shop-a` and `shop-b`, each a sandbox store (`python -m sandbox.shopify`, a
subprocess) selling the same `--skus` SKUs, listings bound and stock set, so each delivery is
really processed: its order ingested, the stock it sold pushed to both stores (which send their
inventory_levels/update webhooks back, as Shopify would).

The deliveries are validly signed orders/create webhooks of distinct orders with distinct
X-Shopify-Webhook-Id (bodies rendered by the sandbox's own renderer, as store A would send them,
for orders A never saw), POSTed to `/webhooks/shop-a` by `--senders` separate sender processes
(this file with `--sender-plan`; httpx with no connection limit, or with `--client raw` plain
HTTP/1.1 bytes on kept-alive asyncio streams, which costs a tenth of the CPU: on a small shared
machine httpx itself can be what falls behind) on one fixed open-loop schedule:
delivery i is due at start + i / rate whatever the answers to earlier ones, and its latency is
measured from when it was due, so a slow server cannot hide behind a slow client. The senders'
lag (start minus due) is reported: when its p99 is more than a few ms the client, not the daemon,
was the limit. After the run the store is polled (up to 180 s) until every delivery answered 200
has its `webhook_inbox` row and its order: `lost` counts deliveries answered 200 without an inbox
row, `orders_not_ingested` those whose order was not ingested by then; then until both stores
show the stock the orders left.

The daemon's CPU seconds (user + system, /proc/PID/stat) over the sending window and until the
last order was ingested, per delivery, and its peak RSS (VmHWM) are reported beside the load
average: the machine is often shared, and whatever else ran weighs on every figure.

    .venv/bin/python bench/webhooks.py [--rate 200] [--duration 60] [--senders 2]
        [--client httpx|raw]
        [--db-url postgresql://postgres@127.0.0.1:5432/postgres] [--skus 50] [--seed 1]

Without `--db-url` the store is a new SQLite file; with a PostgreSQL URL a new database is made
beside the one it names and dropped after. A readable table first, then one JSON line (last)
with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The repository root first: bench helpers import as `bench._common` (a namespace package).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

if TYPE_CHECKING:
    from bench.shopify import Delivery, Rig

STORES_SETTLE_S = 120.0
STORED_WITHIN_S = 180.0  # after the last send; past it, what is missing counts as lost
IDLE_REUSE_S = 2.0  # RawClient: well under uvicorn's 5 s keep-alive timeout
PRESENCE_QUIET_S = 3.0  # unanswered deliveries: the store unchanged this long means settled
SENDER_START_S = 0.2  # the schedule starts this long after every sender said it is ready


# --- the sender process: an open-loop schedule of POSTs, timings written to a file -------------


class RawClient:
    """HTTP/1.1 POSTs as bytes on kept-alive asyncio streams: a tenth of httpx's CPU per request
    (measured here: ~0.6 ms against ~4 ms), for when httpx itself would be the bottleneck on a
    small machine. Reads the status line and Content-Length only; a connection that errs or
    says `connection: close` is not reused."""

    def __init__(self, url: str) -> None:
        parsed = httpx.URL(url)
        self.host, self.port = parsed.host, parsed.port or 80
        self.target = parsed.raw_path.decode()
        # (reader, writer, idle since): taken newest first; one idle past IDLE_REUSE_S is
        # closed rather than reused, as the server may be closing it (keep-alive timeout).
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def post(self, body: bytes, headers: dict[str, str]) -> int:
        """Send one request; its answer's status (raises OSError/IncompleteReadError on none)."""
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = (
            f"POST {self.target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Length: {len(body)}\r\n{head}\r\n"
        ).encode() + body
        reader = writer = None
        while self.idle and reader is None:
            reader, writer, since = self.idle.pop()
            if reader.at_eof() or time.monotonic() - since > IDLE_REUSE_S:
                writer.close()
                reader = writer = None
        if reader is None or writer is None:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(request)
            answer = await reader.readuntil(b"\r\n\r\n")
            lines = answer.decode("latin-1").lower().split("\r\n")
            fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            await reader.readexactly(int(fields.get("content-length", "0")))
        except BaseException:
            writer.close()
            raise
        if fields.get("connection") == "close":
            writer.close()
        else:
            self.idle.append((reader, writer, time.monotonic()))
        return int(lines[0].split(" ", 2)[1])

    def close(self) -> None:
        """Close every idle connection."""
        for _, writer, _ in self.idle:
            writer.close()


async def send_plan(
    items: Sequence[tuple[int, dict[str, Any]]], url: str, rate: float, start: float, client: str
) -> list[dict[str, Any]]:
    """POST each (i, delivery) when due, at monotonic `start + i / rate`, each in its own task
    whatever the earlier ones still wait for, with httpx (no connection limit) or `RawClient`;
    every one's timing and status."""
    results: list[dict[str, Any]] = []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    raw = RawClient(url)
    async with httpx.AsyncClient(limits=limits, timeout=30) as web:

        async def post(body: bytes, headers: dict[str, str]) -> int:
            if client == "raw":
                return await asyncio.wait_for(raw.post(body, headers), 30)
            return (await web.post(url, content=body, headers=headers)).status_code

        async def one(i: int, item: dict[str, Any], due: float) -> None:
            started = time.monotonic()
            body = base64.b64decode(item["body"])
            try:
                status, error = await post(body, item["headers"]), None
            except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                status, error = 0, type(exc).__name__  # no answer: counted, the run goes on
            answered = time.monotonic()
            results.append(
                {"i": i, "due": due, "started": started, "answered": answered, "status": status}
                | ({"error": error} if error else {})
            )

        tasks = []
        for i, item in items:
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, item, due)))
        await asyncio.gather(*tasks)
    raw.close()
    return results


def sender_main(args: argparse.Namespace) -> None:
    """One sender process: its share (`--sender-part k/n`: deliveries i with i % n == k) of the
    plan, timings and its own CPU seconds written to `--sender-out`. Says `ready` on stdout once
    loaded, then reads the schedule's start (monotonic, the same clock in every process on
    Linux) from stdin, so start-up time never makes the first deliveries late."""
    k, n = (int(x) for x in args.sender_part.split("/"))
    lines = Path(args.sender_plan).read_text().splitlines()
    mine = [(i, json.loads(line)) for i, line in enumerate(lines) if i % n == k]
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    cpu_before = time.process_time()
    results = asyncio.run(send_plan(mine, args.sender_url, args.rate, start, args.client))
    cpu_s = round(time.process_time() - cpu_before, 3)
    Path(args.sender_out).write_text(json.dumps({"results": results, "cpu_s": cpu_s}))


# --- the bench --------------------------------------------------------------------------------


def pct(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, p50, p95, p99 and max of seconds, in ms."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000, 2)

    return {"n": len(ordered), "p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": at(1.0)}


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), MB; 0 where /proc has no such figure."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def write_plan(path: Path, deliveries: Sequence[Delivery]) -> None:
    """One JSON line per delivery: its body (base64) and headers."""
    with path.open("w") as plan:
        for d in deliveries:
            body = base64.b64encode(d.body).decode()
            plan.write(json.dumps({"body": body, "headers": d.headers}) + "\n")


async def run_senders(
    rig: Rig, root: Path, deliveries: Sequence[Delivery], args: argparse.Namespace
) -> tuple[list[dict[str, Any]], float, float, float]:
    """Spawn the senders on one schedule; every delivery's timing, the senders' CPU s, the
    schedule's start (monotonic) and the daemon's CPU s then."""
    plan = root / "plan.jsonl"
    await asyncio.to_thread(write_plan, plan, deliveries)
    url = f"{rig.daemon.config.webhooks_url}/webhooks/shop-a"
    procs = []
    for k in range(args.senders):
        out = root / f"sent.{k}.json"
        command = [
            sys.executable,
            __file__,
            *("--sender-plan", str(plan), "--sender-out", str(out), "--sender-url", url),
            *("--rate", str(args.rate), "--sender-part", f"{k}/{args.senders}"),
            *("--client", args.client),
        ]
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        procs.append((proc, out))
    for proc, _ in procs:
        assert proc.stdout is not None
        if (await asyncio.wait_for(proc.stdout.readline(), 120)).strip() != b"ready":
            raise RuntimeError("a sender did not start")
    start = time.monotonic() + SENDER_START_S
    daemon_cpu_at_start = rig.daemon_cpu_s()
    for proc, _ in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{start!r}\n".encode())
        await proc.stdin.drain()
    results: list[dict[str, Any]] = []
    cpu = 0.0
    for proc, out in procs:
        code = await proc.wait()
        if code != 0:
            raise RuntimeError(f"a sender exited with {code}")
        sent = json.loads(await asyncio.to_thread(out.read_text))
        results.extend(sent["results"])
        cpu += sent["cpu_s"]
    results.sort(key=lambda r: r["i"])
    return results, cpu, start, daemon_cpu_at_start


async def settled_presence(rig: Rig, order_ids: list[str]) -> set[str]:
    """Which of these orders (not answered 200) the store holds once that stops changing: a
    request the client gave up on may still be in the daemon, and be stored late."""
    present = await asyncio.to_thread(rig.orders_present, order_ids)
    deadline = time.monotonic() + STORED_WITHIN_S
    while time.monotonic() < deadline:
        await asyncio.sleep(PRESENCE_QUIET_S)
        again = await asyncio.to_thread(rig.orders_present, order_ids)
        if again == present:
            break
        present = again
    return present


def daemon_errors(rig: Rig, limit: int = 5) -> list[str]:
    """The first error messages the daemon logged (JSON log lines; messages hold no buyer data)."""
    found: list[str] = []
    for line in rig.daemon.output().splitlines():
        if '"level": "ERROR"' in line and len(found) < limit:
            try:
                found.append(str(json.loads(line).get("message", ""))[:300])
            except ValueError:
                found.append(line[:300])
    return found


async def measure(rig: Rig, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The load run on a ready rig; every figure."""
    count = max(1, round(args.rate * args.duration))
    deliveries = rig.webhook_deliveries(0, count)
    sent, sender_cpu, start, cpu_start = await run_senders(rig, root, deliveries, args)
    cpu_sent = rig.daemon_cpu_s()
    window_s = time.monotonic() - start
    latency = [s["answered"] - s["due"] for s in sent]
    lag = [s["started"] - s["due"] for s in sent]
    statuses = Counter(s.get("error") or str(s["status"]) for s in sent)
    acked = [deliveries[s["i"]] for s in sent if s["status"] == 200]
    stored = await asyncio.to_thread(
        rig.wait_stored,
        [d.delivery_id for d in acked],
        [d.order_id for d in acked],
        STORED_WITHIN_S,
    )
    cpu_stored = rig.daemon_cpu_s()
    unacked = [deliveries[s["i"]] for s in sent if s["status"] != 200]
    present = await settled_presence(rig, [d.order_id for d in unacked])
    for delivery in unacked:
        if delivery.order_id not in present:
            rig.sold.subtract(dict(delivery.lines))
    settling = time.monotonic()
    settled_at = await rig.settle(STORES_SETTLE_S)
    final = await rig.check_final()
    assert rig.daemon.proc is not None
    return {
        "rate_per_s": args.rate,
        "duration_s": args.duration,
        "deliveries": count,
        "senders": args.senders,
        "client": args.client,
        "latency_ms": pct(latency),
        "send_lag_ms": pct(lag),
        "answers": dict(sorted(statuses.items())),
        "status_5xx": sum(n for a, n in statuses.items() if a.isdigit() and a.startswith("5")),
        "no_answer": sum(n for a, n in statuses.items() if not a.isdigit() or a == "0"),
        "answered_200": len(acked),
        **stored,
        # Lost: answered 200 but not in the inbox (the promise a 200 makes). Orders still not
        # ingested when the wait ended are counted apart: the inbox worker was behind.
        "lost": len(acked) - stored["inbox_rows"],
        "orders_not_ingested": len(acked) - stored["orders_stored"],
        "unanswered_but_stored": len(present),
        "stores_settled_s_after_stored": round(settled_at - settling, 2),
        "stores_correct": final["correct"],
        "stores_wrong_listings": final["wrong"],
        "daemon_cpu_s_sending": round(cpu_sent - cpu_start, 2),
        "daemon_cpu_ms_per_delivery_sending": round((cpu_sent - cpu_start) * 1000 / count, 2),
        "daemon_cpu_ms_per_delivery_until_stored": round(
            (cpu_stored - cpu_start) * 1000 / count, 2
        ),
        "daemon_peak_rss_mb": peak_rss_mb(rig.daemon.proc.pid),
        "sender_cpu_ms_per_delivery": round(sender_cpu * 1000 / count, 2),
        "sending_window_s": round(window_s, 2),
        "daemon_log": rig.daemon_log_levels(),
        "daemon_errors": daemon_errors(rig),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Set up, measure, tear down."""
    from bench._common import empty_store_url
    from bench.shopify import start_rig

    skus = {"orders": [], "changes": [], "webhooks": [f"HOOK-{i:04d}" for i in range(args.skus)]}
    dialect = "postgresql" if args.db_url else "sqlite"
    rig_args = argparse.Namespace(seed=args.seed, restore_rate=args.restore_rate, poll_interval=30)
    with (
        tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp,
        empty_store_url(dialect, args.db_url or "") as db_url,
    ):
        root = Path(tmp)
        figures: dict[str, Any] = {"database": dialect}
        try:
            async with start_rig(root, db_url, rig_args, skus) as rig:
                figures["setup_s"] = rig.setup_s
                figures |= await measure(rig, root, args)
                figures["daemon_stop"] = "clean"
        except subprocess.TimeoutExpired:
            # SIGTERM's drain outlasted the wait (a loaded machine): killed; the figures stand.
            if "deliveries" not in figures:
                raise
            figures["daemon_stop"] = "timed out, killed"
    return figures


def print_report(figures: dict[str, Any]) -> None:
    """The readable table."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    table = Table(
        title=f"webhook load: {figures['rate_per_s']:g}/s for {figures['duration_s']:g} s, "
        f"open loop, {figures['database']}, {figures['senders']} {figures['client']} sender(s) "
        "(ms from when each delivery was due)"
    )
    for column in ("sent", "p50", "p95", "p99", "max", "5xx", "no answer", "lag p99", "lost"):
        table.add_column(column, justify="right")
    lat = figures["latency_ms"]
    table.add_row(
        str(figures["deliveries"]),
        str(lat["p50"]),
        str(lat["p95"]),
        str(lat["p99"]),
        str(lat["max"]),
        str(figures["status_5xx"]),
        str(figures["no_answer"]),
        str(figures["send_lag_ms"]["p99"]),
        str(figures["lost"]),
    )
    console.print(table)
    console.print(
        f"answers {figures['answers']}; stored {figures['inbox_rows']} inbox rows / "
        f"{figures['orders_stored']} orders ({figures['orders_not_ingested']} not ingested) of "
        f"{figures['answered_200']} answered 200, within "
        f"{figures['ingested_within_s']} s of the last answer; stores right: "
        f"{'yes' if figures['stores_correct'] else 'no'}"
    )
    console.print(
        f"daemon CPU {figures['daemon_cpu_ms_per_delivery_sending']} ms/delivery while sending, "
        f"{figures['daemon_cpu_ms_per_delivery_until_stored']} ms until all stored; peak RSS "
        f"{figures['daemon_peak_rss_mb']} MB; senders {figures['sender_cpu_ms_per_delivery']} "
        f"ms/delivery; load average {figures['loadavg_1m']}; {figures['cores']} cores; daemon "
        f"log {figures['daemon_log']}; runtime {figures['runtime_s']} s"
    )


def parse_args() -> argparse.Namespace:
    """Command line (the `--sender-*` options are for the sender processes this spawns)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="deliveries per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of sending")
    parser.add_argument("--db-url", default="", help="PostgreSQL server URL (default: SQLite)")
    parser.add_argument("--senders", type=int, default=2, help="sender processes")
    parser.add_argument(
        "--client",
        choices=("httpx", "raw"),
        default="httpx",
        help="httpx, or bytes on asyncio streams (RawClient) when httpx cannot keep up",
    )
    parser.add_argument("--skus", type=int, default=50, help="SKUs the orders are spread over")
    parser.add_argument("--restore-rate", type=float, default=100.0, help="sandbox cost points/s")
    parser.add_argument("--seed", type=int, default=1)
    for hidden in ("plan", "out", "url", "start", "part"):
        parser.add_argument(f"--sender-{hidden}", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.sender_plan:
        sender_main(args)
        return
    started = time.monotonic()
    load_before = os.getloadavg()
    figures = asyncio.run(run(args))
    figures["loadavg_1m"] = {"start": load_before[0], "end": os.getloadavg()[0]}
    figures["cores"] = os.cpu_count()
    figures["runtime_s"] = round(time.monotonic() - started, 1)
    print_report(figures)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
