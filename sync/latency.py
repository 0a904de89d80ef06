"""Stock-push latency: how long a change waited between being planned and a channel applying it.

The pusher measures each applied target from its outbox job's `created_at` (written when the
planner first queued a target for that listing, and kept when a newer target replaces it before it
is sent, or when it goes back after a conflict or a retry) to the step that records the channel's
answer. So a figure is the oldest queued change's wait, retries and lingering included: what a
buyer on another channel would have waited.

Figures live in memory only: a ring per channel of the last `window_s` seconds (bounded in count
too), for the status page's chart, and a Prometheus histogram for scraping. A restart empties the
ring; the histogram is a counter like the others.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram

from connectors.base import PushOutcome
from sync.models import LANE_CONFIRM

if TYPE_CHECKING:
    from sync.push_store import Landed

WINDOW_S = 600.0  # what the status page's chart spans
MAX_PER_CHANNEL = 60_000  # 100 applied targets a second for the whole window
BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)


def applied_latencies(
    landed: Sequence[Landed], deferred: Sequence[Landed], now: datetime
) -> list[float]:
    """Seconds from planned to applied for every target a drain step recorded as applied.

    `landed` is what the step was given, `deferred` what it handed back unrecorded (another
    transaction held those listings): their figures come with the step that records them.
    A confirmation (LANE_CONFIRM) counts for nothing: it repeats what the channel shows
    already, so its wait (held for company on purpose, up to `confirm_hold_s`) was no buyer's.
    """
    held = {job.id for one in deferred for job in one.batch.jobs}
    waits = []
    for one in landed:
        if one.results is None:
            continue
        applied = {r.listing_ref for r in one.results if r.outcome == PushOutcome.APPLIED}
        for job, target in zip(one.batch.jobs, one.batch.targets, strict=True):
            if job.lane == LANE_CONFIRM:
                continue
            if job.id not in held and target.listing_ref in applied:
                waits.append(max(0.0, (now - job.created_at).total_seconds()))
    return waits


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of an ascending, non-empty sequence."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class PushLatency:
    """Per channel, the stock-push latencies of the last `window_s` seconds, and a histogram."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        window_s: float = WINDOW_S,
        max_per_channel: int = MAX_PER_CHANNEL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.window_s = window_s
        self.max_per_channel = max_per_channel
        self._clock = clock
        # Observed on the event loop, read by the admin app: possibly from a worker thread.
        self._lock = threading.Lock()
        self._rings: dict[str, deque[tuple[float, float]]] = {}
        self.histogram = (
            Histogram(
                "channel_sync_stock_push_latency_seconds",
                "Seconds from a stock change being planned to the channel applying it, by channel.",
                ["channel"],
                buckets=BUCKETS_S,
                registry=registry,
            )
            if registry is not None
            else None
        )

    def observe(self, channel: str, latencies: Sequence[float]) -> None:
        """Note applied targets' latencies (seconds), as of now."""
        if not latencies:
            return
        at = self._clock()
        with self._lock:
            ring = self._rings.setdefault(channel, deque(maxlen=self.max_per_channel))
            ring.extend((at, latency) for latency in latencies)
            self._trim(ring, at)
        if self.histogram is not None:
            child = self.histogram.labels(channel)
            for latency in latencies:
                child.observe(latency)

    def observe_step(
        self, channel: str, landed: Sequence[Landed], deferred: Sequence[Landed]
    ) -> None:
        """Note what one drain step of the pusher recorded as applied (see `applied_latencies`)."""
        if landed:
            self.observe(channel, applied_latencies(landed, deferred, datetime.now(UTC)))

    def _trim(self, ring: deque[tuple[float, float]], now: float) -> None:
        while ring and ring[0][0] < now - self.window_s:
            ring.popleft()

    def snapshot(self, *, bucket_s: float = 10.0) -> dict[str, Any]:
        """The window as JSON: per channel a summary and fixed buckets, newest last.

        A bucket is `age_s` (how many seconds before `now` it ends) with its count, median and
        maximum; buckets without a push are left out, so a gap in the chart is a quiet spell.
        """
        now = self._clock()
        with self._lock:
            for ring in self._rings.values():
                self._trim(ring, now)
            rings = {name: list(ring) for name, ring in self._rings.items()}
        channels: dict[str, Any] = {}
        for name in sorted(rings):
            points = rings[name]
            ordered = sorted(latency for _, latency in points)
            by_bucket: dict[int, list[float]] = {}
            for at, latency in points:
                by_bucket.setdefault(int((now - at) // bucket_s), []).append(latency)
            buckets = []
            for index in sorted(by_bucket, reverse=True):
                values = sorted(by_bucket[index])
                buckets.append(
                    {
                        "age_s": round(index * bucket_s, 3),
                        "count": len(values),
                        "p50_s": round(_quantile(values, 0.5), 4),
                        "max_s": round(values[-1], 4),
                    }
                )
            channels[name] = {
                "count": len(ordered),
                "p50_s": round(_quantile(ordered, 0.5), 4) if ordered else None,
                "p99_s": round(_quantile(ordered, 0.99), 4) if ordered else None,
                "max_s": round(ordered[-1], 4) if ordered else None,
                "buckets": buckets,
            }
        return {
            "now": datetime.fromtimestamp(now, UTC).isoformat(),
            "window_s": self.window_s,
            "bucket_s": bucket_s,
            "channels": channels,
        }
