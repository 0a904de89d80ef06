"""Replay a trace against the running rig and measure propagation.

Each order is placed through its marketplace's control API (`POST /_sandbox/orders`) on the
trace's schedule (open loop: a slow answer does not delay the next order). Meanwhile every
sandbox's `GET /_sandbox/inventory` is read about every 0.1 s. For an accepted order placed on X and
each other channel Y: the time from X's answer until a read of Y, answered after it, shows every
SKU of the order at or below on hand minus the units accepted so far (floored at 0).

A sample is left out when Y itself sells one of those SKUs before the change shows (Y's own sale
lowers Y's count, so the read could no longer tell the push from the sale), or when Y already
showed the figure before the order (nothing to push). Both are counted.

Each sample is also kept with wall-clock times and the marketplace's order id, so that
bench/e2e_breakdown.py can say where its time went (ingest, planning, the push, the read).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.e2e_breakdown import Sample
from bench.e2e_rig import Rig, all_calls, calls_between, fetch_json
from bench.e2e_trace import CHANNELS, TraceOrder, sku_name

POLL_GAP_S = 0.1  # per channel: ~10 reads a second, light on the sandboxes' one process
ORDER_TIMEOUT_S = 30.0


@dataclass
class _Pending:
    """An order's change not yet seen on one channel."""

    order: int
    origin: str
    placed: float
    targets: dict[str, int]
    placed_wall: float = 0.0
    order_ref: str | None = None


@dataclass
class ReplayResult:
    """What one replay placed and saw."""

    accepted: list[TraceOrder] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CHANNELS})
    by_route: dict[str, list[float]] = field(default_factory=dict)
    """Latencies per `origin>destination`."""
    excluded_own_sale: Counter[str] = field(default_factory=Counter)
    already_shown: Counter[str] = field(default_factory=Counter)
    unseen: Counter[str] = field(default_factory=Counter)
    placing_lateness_s: list[float] = field(default_factory=list)
    polls: Counter[str] = field(default_factory=Counter)
    span_s: float = 0.0
    settle_s: float | None = None
    final_mismatch: dict[str, int] = field(default_factory=dict)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    """Every sample with wall-clock times, for bench/e2e_breakdown.py."""


class _Watch:
    """The samples waiting to show on each channel, and the last read of each."""

    def __init__(self, prefix: str, units: Sequence[int]) -> None:
        self.prefix = prefix
        self.units = list(units)
        self.sold: Counter[int] = Counter()
        self.pending: dict[str, dict[int, _Pending]] = {c: {} for c in CHANNELS}
        self.last: dict[str, dict[str, int]] = {c: {} for c in CHANNELS}

    def own_sale(self, channel: str, order: TraceOrder, result: ReplayResult) -> None:
        """An order starts on `channel`: its samples there on the same SKUs are spoiled."""
        skus = {sku_name(self.prefix, sku) for sku, _ in order.lines}
        waiting = self.pending[channel]
        for key in [k for k, p in waiting.items() if skus & p.targets.keys()]:
            del waiting[key]
            result.excluded_own_sale[channel] += 1

    def accepted(
        self,
        order: TraceOrder,
        answered: float,
        result: ReplayResult,
        order_ref: str | None = None,
    ) -> None:
        """An order was accepted: a sample on each other channel."""
        for sku, qty in order.lines:
            self.sold[sku] += qty
        targets = {
            sku_name(self.prefix, sku): max(0, self.units[sku] - self.sold[sku])
            for sku, _ in order.lines
        }
        for channel in CHANNELS:
            if channel == order.channel:
                continue
            shown = self.last[channel]
            if all(sku in shown and shown[sku] <= want for sku, want in targets.items()):
                result.already_shown[channel] += 1
                continue
            waiting = _Pending(
                order.index,
                order.channel,
                answered,
                targets,
                placed_wall=time.time() - (time.monotonic() - answered),
                order_ref=order_ref,
            )
            self.pending[channel][order.index] = waiting

    def read(self, channel: str, shown: dict[str, int], at: float, result: ReplayResult) -> None:
        """A read of `channel` answered at `at`: the samples it satisfies."""
        self.last[channel] = shown
        waiting = self.pending[channel]
        done = [
            key
            for key, p in waiting.items()
            if p.placed <= at and all(shown.get(s, 1 << 30) <= w for s, w in p.targets.items())
        ]
        for key in done:
            sample = waiting.pop(key)
            result.latencies[channel].append(at - sample.placed)
            route = f"{sample.origin}>{channel}"
            result.by_route.setdefault(route, []).append(at - sample.placed)
            result.samples.append(
                Sample(
                    origin=sample.origin,
                    destination=channel,
                    order_ref=sample.order_ref,
                    placed=sample.placed_wall,
                    seen=sample.placed_wall + (at - sample.placed),
                    targets=sample.targets,
                )
            )

    def expected(self) -> dict[str, int]:
        """What every channel should end at, per SKU."""
        return {
            sku_name(self.prefix, i): max(0, n - self.sold[i]) for i, n in enumerate(self.units)
        }


async def replay(
    rig: Rig,
    trace: Sequence[TraceOrder],
    *,
    rate: float,
    prefix: str,
    units: Sequence[int],
    settle_limit_s: float,
) -> ReplayResult:
    """Place the trace at `rate` (its offsets divided by the rate), read every channel until each
    change shows, wait for the daemon to settle; what happened, with the calls made."""
    result = ReplayResult()
    watch = _Watch(prefix, units)
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with (
        httpx.AsyncClient(timeout=ORDER_TIMEOUT_S, limits=limits) as client,
        httpx.AsyncClient(timeout=30) as reader,
    ):
        calls_before = await all_calls(rig, reader)
        for channel in CHANNELS:
            watch.last[channel] = await fetch_json(reader, rig.control(channel, "/inventory"))
        pollers = [
            asyncio.create_task(_poll(rig, reader, channel, watch, result, stop))
            for channel in CHANNELS
        ]
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.1
        tasks = []
        for order in trace:
            due = start + order.offset / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            result.placing_lateness_s.append(max(0.0, loop.time() - due))
            tasks.append(asyncio.create_task(_place(rig, client, order, prefix, watch, result)))
        await asyncio.gather(*tasks)
        result.span_s = round(loop.time() - start, 2)
        settled_at = await _settle(rig, reader, watch, settle_limit_s)
        result.settle_s = None if settled_at is None else round(settled_at, 2)
        stop.set()
        await asyncio.gather(*pollers)
        for channel in CHANNELS:
            result.unseen[channel] = len(watch.pending[channel])
            shown = await fetch_json(reader, rig.control(channel, "/inventory"))
            want = watch.expected()
            result.final_mismatch[channel] = sum(1 for s, n in want.items() if shown.get(s) != n)
        result.calls = calls_between(calls_before, await all_calls(rig, reader))
    result.accepted.sort(key=lambda o: o.index)
    return result


async def _place(
    rig: Rig,
    client: httpx.AsyncClient,
    order: TraceOrder,
    prefix: str,
    watch: _Watch,
    result: ReplayResult,
) -> None:
    body = {
        "lines": [{"sku": sku_name(prefix, sku), "quantity": qty} for sku, qty in order.lines],
        "buyer": {"name": f"Bench Buyer {order.index}", "email": "buyer@example.test"},
    }
    watch.own_sale(order.channel, order, result)
    try:
        answer = await client.post(rig.control(order.channel, "/orders"), json=body)
    except httpx.HTTPError:
        result.failed[order.channel] += 1
        return
    answered = time.monotonic()
    if answer.status_code in (200, 201):
        result.accepted.append(order)
        watch.accepted(order, answered, result, _order_ref(answer))
    elif answer.status_code == 409:
        result.refused[order.channel] += 1
    else:
        result.failed[order.channel] += 1


def _order_ref(answer: httpx.Response) -> str | None:
    """The marketplace's order id in a `POST /_sandbox/orders` answer (all three say order_id)."""
    try:
        body = answer.json()
    except ValueError:
        return None
    found = body.get("order_id") if isinstance(body, dict) else None
    return str(found) if found is not None else None


async def _poll(
    rig: Rig,
    client: httpx.AsyncClient,
    channel: str,
    watch: _Watch,
    result: ReplayResult,
    stop: asyncio.Event,
) -> None:
    url = rig.control(channel, "/inventory")
    while not stop.is_set():
        try:
            shown = await fetch_json(client, url)
        except httpx.HTTPError:
            await asyncio.sleep(POLL_GAP_S)
            continue
        result.polls[channel] += 1
        watch.read(channel, shown, time.monotonic(), result)
        await asyncio.sleep(POLL_GAP_S)


async def _settle(
    rig: Rig, client: httpx.AsyncClient, watch: _Watch, limit_s: float
) -> float | None:
    """Seconds after the last order until every sample showed, no job is open and every
    channel shows the expected figures; None if not within `limit_s`."""
    started = time.monotonic()
    want = watch.expected()
    while time.monotonic() - started < limit_s:
        if not any(watch.pending.values()) and await asyncio.to_thread(rig.jobs_open) == 0:
            shown = [
                await fetch_json(client, rig.control(channel, "/inventory")) for channel in CHANNELS
            ]
            if all(all(s.get(k) == n for k, n in want.items()) for s in shown):
                return time.monotonic() - started
        await asyncio.sleep(0.25)
    return None
