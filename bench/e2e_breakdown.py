"""Where a propagation sample's time went: ingest, planning, the push, the read that showed it.

A latency figure alone does not say what to fix. For each sample of bench/e2e_replay.py (an
order placed on X, shown on Y) this joins the store the daemon wrote:

- ingest: the order's answer until the store's `ingested_at` for it (webhook or notification
  delivery, the inbox, a getOrder if one was needed, or a poll);
- plan: ingest until the stock job that carried the change to Y was written (the pusher's
  planning round; 0 when the job was already pending and its target was replaced);
- push: until that job was recorded done (linger, a free in-flight slot, the channel's rate
  limiter, the call itself);
- show: until the replay's read of Y showed it (the read gap; negative when the read came
  before the pusher recorded the landed call).

The carrying job is, per SKU of the order, the first done stock job of Y for that SKU at or
below the figure the sample waits for, written after the order was placed; the latest of those
over the order's SKUs. Store times are the daemon's (UTC, same machine clock as the replay).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from bench._common import percentiles
from sync.db import Database
from sync.models import Channel, JobKind, JobState, Listing, OutboxJob
from sync.models import Order as OrderRow

STAGES = ("ingest", "plan", "push", "show")
SLOWEST = 10


@dataclass(frozen=True)
class Sample:
    """One propagation sample, in wall-clock seconds (time.time())."""

    origin: str
    destination: str
    order_ref: str | None  # the marketplace's order id, as the store keeps it
    placed: float
    seen: float
    targets: dict[str, int]  # SKU -> the figure the destination must show at most


def _epoch(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.timestamp()


def _store_times(
    db: Database, samples: Sequence[Sample]
) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], list[tuple[float, float, int]]]]:
    """(channel, order id) -> ingested; (channel, SKU) -> done stock jobs (created, done, qty)."""
    refs = {s.order_ref for s in samples if s.order_ref}
    ingested: dict[tuple[str, str], float] = {}
    jobs: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
    with db.read_session() as session:
        names = dict(session.execute(select(Channel.id, Channel.name)).tuples().all())
        rows = session.execute(
            select(OrderRow.channel_id, OrderRow.external_id, OrderRow.ingested_at)
        ).tuples()
        for channel_id, external_id, at in rows:
            when = _epoch(at)
            if external_id in refs and when is not None:
                ingested[(names[channel_id], external_id)] = when
        skus = dict(session.execute(select(Listing.id, Listing.sku)).tuples().all())
        done = session.execute(
            select(
                OutboxJob.channel_id, OutboxJob.payload, OutboxJob.created_at, OutboxJob.updated_at
            ).where(OutboxJob.kind == JobKind.STOCK, OutboxJob.state == JobState.DONE)
        ).tuples()
        for channel_id, payload, created, updated in done:
            sku = skus.get(int(payload.get("listing_id", -1)))
            start, end = _epoch(created), _epoch(updated)
            if sku is None or start is None or end is None:
                continue
            key = (names[channel_id], sku)
            jobs.setdefault(key, []).append((start, end, int(payload["quantity"])))
    for found in jobs.values():
        found.sort(key=lambda job: job[1])
    return ingested, jobs


def _stages(
    sample: Sample,
    ingested: dict[tuple[str, str], float],
    jobs: dict[tuple[str, str], list[tuple[float, float, int]]],
) -> dict[str, float] | None:
    ingest_at = ingested.get((sample.origin, sample.order_ref or ""))
    if ingest_at is None:
        return None
    carrying: tuple[float, float] | None = None
    for sku, want in sample.targets.items():
        first = next(
            (
                (created, done)
                for created, done, quantity in jobs.get((sample.destination, sku), ())
                if done >= sample.placed and quantity <= want
            ),
            None,
        )
        if first is None:
            return None
        if carrying is None or first[1] > carrying[1]:
            carrying = first
    if carrying is None:
        return None
    created, done = carrying
    planned = max(created, ingest_at)
    return {
        "ingest": ingest_at - sample.placed,
        "plan": planned - ingest_at,
        "push": done - planned,
        "show": sample.seen - done,
    }


def breakdown(db: Database, samples: Sequence[Sample]) -> dict[str, Any]:
    """Per route and stage: n, p50, p99, max (seconds); and the slowest samples in full."""
    ingested, jobs = _store_times(db, samples)
    by_route: dict[str, dict[str, list[float]]] = {}
    explained: list[tuple[float, str, dict[str, float]]] = []
    unexplained = 0
    for sample in samples:
        stages = _stages(sample, ingested, jobs)
        if stages is None:
            unexplained += 1
            continue
        route = f"{sample.origin}>{sample.destination}"
        for stage, value in stages.items():
            by_route.setdefault(route, {s: [] for s in STAGES})[stage].append(value)
        explained.append((sample.seen - sample.placed, route, stages))
    explained.sort(key=lambda item: item[0], reverse=True)
    return {
        "stages_by_route_s": {
            route: {stage: percentiles(values, scale=1.0) for stage, values in stages.items()}
            for route, stages in sorted(by_route.items())
        },
        "slowest": [
            {
                "route": route,
                "total_s": round(total, 2),
                **{f"{k}_s": round(v, 2) for k, v in stages.items()},
            }
            for total, route, stages in explained[:SLOWEST]
        ],
        "unexplained": unexplained,
    }


def print_breakdown(figures: dict[str, Any], rate: str) -> None:
    """A readable table of one rate's breakdown."""
    print(f"\nwhere the time went at {rate}/s (p50 / p99 seconds per stage):")
    print(f"  {'route':<16}" + "".join(f"{stage:>14}" for stage in STAGES))
    for route, stages in figures["stages_by_route_s"].items():
        cells = "".join(f"{stages[stage]['p50']:>7} /{stages[stage]['p99']:>5}" for stage in STAGES)
        print(f"  {route:<16}{cells}")
    print("  slowest samples:")
    for slow in figures["slowest"]:
        parts = " ".join(f"{stage} {slow[f'{stage}_s']:.2f}" for stage in STAGES)
        print(f"    {slow['route']:<16} {slow['total_s']:>6.2f} s = {parts}")
    if figures["unexplained"]:
        print(f"  ({figures['unexplained']} samples without a matching order or job)")
