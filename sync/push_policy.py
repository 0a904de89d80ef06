"""When a batching channel's stock push goes: full batches at once, partial ones after a linger.

Like a producer's linger and batch size: a batch that is not full waits while changes keep
arriving, so a stream of sales goes out in a few full calls rather than one small call per
planning round, but never longer than a bound, and a lone sale hardly waits at all. The pusher
keeps one `Arrivals` per channel and asks it, with the channel's `Coalescing`, when a partial
batch may go.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

from connectors.base import Capabilities

STREAM_ROUNDS = 2  # short gaps in a row (three rounds) before changes count as a stream


@dataclass(frozen=True)
class Coalescing:
    """When a batching channel sends a batch that is not full: it waits for company, briefly.

    A change that comes alone goes after `quiet_s`. Three or more planning rounds in a row that
    each gave the channel work less than `stream_gap_s` after the one before are a stream: a
    partial batch then waits for it to pause (twice the last gap, at most `stream_gap_s`). No
    due change waits longer than `max_linger_s` in all. A full batch goes at once unless
    `hold_full`: holding full batches too sends each listing about once per burst, at the price
    of a channel as stale as the burst is long (up to `max_linger_s`). A channel taking one
    listing per call never waits: every batch of it is full.
    """

    quiet_s: float = 0.05
    stream_gap_s: float = 0.5
    max_linger_s: float = 1.0
    hold_full: bool = False

    @classmethod
    def for_capabilities(cls, capabilities: Capabilities) -> Coalescing:
        """No waiting where every job is a full batch (one listing per call); defaults else."""
        if capabilities.max_stock_batch <= 1:
            return cls(quiet_s=0.0, stream_gap_s=0.0, max_linger_s=0.0)
        return cls()

    def pause_s(self, gap: float | None, streak: int = STREAM_ROUNDS) -> float:
        """How long without new work ends a stream whose last two rounds were `gap` apart and
        whose last `streak` gaps were all short."""
        if gap is None or gap > self.stream_gap_s or streak < STREAM_ROUNDS:
            return self.quiet_s
        return min(self.stream_gap_s, max(self.quiet_s, 2 * gap))


@dataclass
class Arrivals:
    """When planning last gave a channel work: tells a lone change from a stream."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    last: float | None = None
    gap: float | None = None
    streak: int = 0  # short gaps in a row, up to the latest
    waiting_since: float | None = None  # the oldest due job not sent yet arrived about then

    def note(self, now: float, policy: Coalescing) -> None:
        """Planning enqueued or replaced jobs for the channel at `now` (loop time)."""
        self.gap = None if self.last is None else now - self.last
        short = self.gap is not None and self.gap <= policy.stream_gap_s
        self.streak = self.streak + 1 if short else 0
        self.last = now
        if self.waiting_since is None:
            self.waiting_since = now
        self.event.set()

    def partial_at(self, policy: Coalescing) -> float:
        """Loop time from which a batch that is not full may go."""
        if self.last is None:
            return -math.inf
        at = self.last + policy.pause_s(self.gap, self.streak)
        if self.waiting_since is not None:
            at = min(at, self.waiting_since + policy.max_linger_s)
        return at
