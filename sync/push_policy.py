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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from connectors.base import Capabilities, StockTarget

STREAM_ROUNDS = 2  # short gaps in a row (three rounds) before changes count as a stream


@dataclass(frozen=True)
class Coalescing:
    """When a batching channel sends a batch that is not full: it waits for company, briefly.

    A change that comes alone goes after `quiet_s`. Three or more planning rounds in a row that
    each gave the channel work less than `stream_gap_s` after the one before are a stream: a
    partial batch then waits for it to pause (twice the usual gap between rounds, more when
    they come irregularly; at most `stream_gap_s`). No
    due change waits longer than `max_linger_s` in all. A full batch goes at once unless
    `hold_full`: holding full batches too, until the changes stop for the whole `stream_gap_s`,
    sends each listing about once per burst, at the price of a channel as stale as the burst is
    long (up to `max_linger_s`). A channel taking one
    listing per call never waits: every batch of it is full.

    Confirmations (a push that repeats what the channel should show already, after its own
    sale) ride in the calls changes make; when nothing else is due they wait up to
    `confirm_hold_s`, on every channel, then go together.
    """

    quiet_s: float = 0.05
    stream_gap_s: float = 0.5
    max_linger_s: float = 1.0
    hold_full: bool = False
    confirm_hold_s: float = 10.0

    @classmethod
    def for_capabilities(cls, capabilities: Capabilities) -> Coalescing:
        """No waiting where every job is a full batch (one listing per call); defaults else."""
        if capabilities.max_stock_batch <= 1:
            return cls(quiet_s=0.0, stream_gap_s=0.0, max_linger_s=0.0)
        return cls()

    @classmethod
    def tuned(
        cls,
        capabilities: Capabilities,
        *,
        max_linger_s: float | None = None,
        pause_s: float | None = None,
        hold_full: bool = False,
        confirm_hold_s: float | None = None,
    ) -> Coalescing:
        """The default for the capabilities with a channel file's `[push]` overrides."""
        base = cls.for_capabilities(capabilities)
        return cls(
            quiet_s=base.quiet_s,
            stream_gap_s=base.stream_gap_s if pause_s is None else pause_s,
            max_linger_s=base.max_linger_s if max_linger_s is None else max_linger_s,
            hold_full=hold_full,
            confirm_hold_s=base.confirm_hold_s if confirm_hold_s is None else confirm_hold_s,
        )

    def pause_s(
        self, mean_gap: float | None, dev_gap: float = 0.0, streak: int = STREAM_ROUNDS
    ) -> float:
        """How long without new work ends a stream whose rounds come `mean_gap` apart (smoothed),
        varying by `dev_gap`, after `streak` short gaps in a row."""
        if mean_gap is None or mean_gap > self.stream_gap_s or streak < STREAM_ROUNDS:
            return self.quiet_s
        if self.hold_full:
            # Fewest calls: only a silence of the full stream gap ends the burst, however
            # regular it was (a busy process sees its own commits in clumps).
            return self.stream_gap_s
        wait = max(2 * mean_gap, mean_gap + 4 * dev_gap)
        return min(self.stream_gap_s, max(self.quiet_s, wait))


@dataclass
class Arrivals:
    """What a channel's drain needs to tell a lone change from a stream of them.

    Two clocks: when the store last changed (`active`: every commit that may change stock wakes
    the pusher) and when planning last gave this channel work (`note`). The stream is read from
    the first, because planning rounds come as fast as the machine plans, not as fast as orders
    arrive. The gaps between changes are smoothed as TCP smooths round-trip times (RFC 6298: a
    mean, and a mean deviation weighted 4x), so a stream served by a busy machine, whose commits
    come irregularly, is not taken for a pause at its first slow one.
    """

    event: asyncio.Event = field(default_factory=asyncio.Event)
    # Planning gave the channel a push to a listing's last units since the drain last claimed.
    urgent: asyncio.Event = field(default_factory=asyncio.Event)
    last: float | None = None  # planning last gave the channel work
    last_active: float | None = None  # the store last changed
    mean_gap: float | None = None
    dev_gap: float = 0.0
    streak: int = 0  # short gaps in a row, up to the latest change
    waiting_since: float | None = None  # the oldest due job not sent yet arrived about then

    def active(self, now: float, policy: Coalescing) -> None:
        """The store changed at `now` (loop time): a commit woke the pusher."""
        gap = None if self.last_active is None else now - self.last_active
        self.last_active = now
        if gap is None or gap > policy.stream_gap_s:
            self.streak, self.mean_gap, self.dev_gap = 0, None, 0.0
        elif self.mean_gap is None:
            self.streak, self.mean_gap, self.dev_gap = 1, gap, gap / 2
        else:
            self.streak += 1
            self.dev_gap = 0.75 * self.dev_gap + 0.25 * abs(self.mean_gap - gap)
            self.mean_gap = 0.875 * self.mean_gap + 0.125 * gap

    def note(self, now: float, *, urgent: bool = False) -> None:
        """Planning enqueued or replaced jobs for the channel at `now` (loop time); `urgent`:
        one of them pushes a listing's last units."""
        self.last = now
        if self.waiting_since is None:
            self.waiting_since = now
        self.event.set()
        if urgent:
            self.urgent.set()

    def partial_at(self, policy: Coalescing) -> float:
        """Loop time from which a batch that is not full may go."""
        if self.last is None:
            return -math.inf
        at = self.last + policy.quiet_s
        if self.last_active is not None and self.streak >= STREAM_ROUNDS:
            at = max(at, self.last_active + policy.pause_s(self.mean_gap, self.dev_gap))
        if self.waiting_since is not None:
            at = min(at, self.waiting_since + policy.max_linger_s)
        return at


@runtime_checkable
class StockClaimSizing(Protocol):
    """A connector whose best batch depends on how many targets wait (Amazon: one patch per
    listing at 5/s for a few, one feed for very many)."""

    def stock_batch_size(self, due: int) -> int:
        """Targets to hand over in one push when `due` are waiting."""
        ...


def claim_sizing(connector: object) -> Callable[[int], int] | None:
    """The connector's batch sizing, if it has one (else its capabilities' maximum holds)."""
    return connector.stock_batch_size if isinstance(connector, StockClaimSizing) else None


@runtime_checkable
class StockPushParts(Protocol):
    """A connector that sends parts of one batch by paths of very different speeds (Amazon: the
    last units patched in a second, the rest in a feed Amazon processes for minutes).

    The pusher pushes each part on its own and records it when it lands: a listing's next push
    waits while its previous one is in flight, so a patched listing left in the batch until the
    feed was done could not be pushed again (sold out, after its last-units patch) for as long.
    """

    def stock_push_parts(self, targets: Sequence[StockTarget]) -> list[list[int]]:
        """The positions in `targets` of each part to push on its own, every one in one part."""
        ...


def push_parts(connector: object) -> Callable[[Sequence[StockTarget]], list[list[int]]] | None:
    """The connector's way of parting a batch, if it has one (else a batch is one push)."""
    return connector.stock_push_parts if isinstance(connector, StockPushParts) else None


@runtime_checkable
class SlowStockPushes(Protocol):
    """A connector some of whose pushes the channel takes minutes to land (Amazon's feeds).

    The jobs of such a push are overtakable: a push to one of its listings' last units goes
    beside it rather than waiting minutes while buyers see stock that is gone. Once the slow one
    lands, the listing's newest figure is pushed again, in case the channel applied the older
    figure last (`sync/stock_push.py::record_results`).
    """

    def stock_push_is_slow(self, targets: Sequence[StockTarget]) -> bool:
        """True when pushing `targets` (one part, see `StockPushParts`) takes the slow path."""
        ...


def slow_pushes(connector: object) -> Callable[[Sequence[StockTarget]], bool] | None:
    """The connector's test for a slow push, if it has one (else no push is slow)."""
    return connector.stock_push_is_slow if isinstance(connector, SlowStockPushes) else None
