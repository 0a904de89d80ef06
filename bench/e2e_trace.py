"""The end-to-end bench's workload and its pure arithmetic: a seeded catalogue with contention, a
seeded trace of orders, the periodic-sync baseline simulated over that trace, and the lower bound
of stock calls.

Nothing here starts a process or speaks HTTP, so every figure it produces can be recomputed from
the seed alone.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sandbox.demo_catalogue import Catalogue, Product

CHANNELS = ("shopify", "amazon", "ebay")

# Per channel: SKUs per stock call as our daemon's connectors batch them (connectors/*/const.py:
# Shopify inventorySetQuantities 250, eBay ReviseInventoryStatus 4, Amazon patchListingsItem 1;
# Amazon's feeds take 25,000 but are for bursts: at most one createFeed every 2 minutes).
BATCH_MAX = {"shopify": 250, "amazon": 1, "ebay": 4}
TARGET_P99_S = 2.0  # issue 8: p99 propagation under 2 s at 10 orders/s

# What the periodic tool reads per sync: orders per page of each channel's order listing, and
# calls per order for its lines (Amazon's getOrderItems; the other two list lines with the order).
ORDERS_PAGE = {"shopify": 250, "amazon": 100, "ebay": 200}
CALLS_PER_ORDER = {"shopify": 0, "amazon": 1, "ebay": 0}
# What it pushes per sync: every listing, at the channel's batch size; Amazon as one
# JSON_LISTINGS_FEED (createFeedDocument + createFeed + one getFeed) per 25,000 listings.
PUSH_BATCH = {"shopify": 250, "amazon": 25_000, "ebay": 4}
PUSH_CALLS_PER_BATCH = {"shopify": 1, "amazon": 3, "ebay": 1}


@dataclass(frozen=True)
class TraceOrder:
    """One order of the trace: where it is placed, its lines (SKU index, units) and when, in mean
    gaps from the start (seconds at a rate r: `offset / r`)."""

    index: int
    channel: str
    lines: tuple[tuple[int, int], ...]
    offset: float


def make_units(skus: int, seed: int, contended_share: float = 0.15) -> list[int]:
    """Units on hand per SKU index: a share of them scarce (1-3 units), the rest 8-40."""
    rng = random.Random(seed)
    return [
        rng.randint(1, 3) if rng.random() < contended_share else rng.randint(8, 40)
        for _ in range(skus)
    ]


def make_trace(count: int, skus: int, seed: int) -> list[TraceOrder]:
    """`count` orders over `skus` SKUs: Poisson arrivals, channels equally likely, popularity
    skewed (Zipf-like over a shuffled order, so scarce SKUs are as likely to be popular), one line
    mostly (15 % two), one unit mostly (20 % two)."""
    rng = random.Random(seed * 7919 + 1)
    ranks = list(range(skus))
    rng.shuffle(ranks)
    weights = [1.0 / (rank + 1) ** 0.8 for rank in ranks]
    population = list(range(skus))
    orders = []
    offset = 0.0
    for index in range(count):
        offset += rng.expovariate(1.0)
        n_lines = 2 if rng.random() < 0.15 and skus > 1 else 1
        picked: list[int] = []
        while len(picked) < n_lines:
            sku = rng.choices(population, weights)[0]
            if sku not in picked:
                picked.append(sku)
        lines = tuple((sku, 2 if rng.random() < 0.2 else 1) for sku in picked)
        orders.append(TraceOrder(index, rng.choice(CHANNELS), lines, offset))
    return orders


def sku_name(prefix: str, index: int) -> str:
    """The seller's SKU for index `index` of a pool."""
    return f"{prefix}-{index:06d}"


def pool_products(prefix: str, units: Sequence[int]) -> list[Product]:
    """A pool's plain products, one per SKU index."""
    return [
        Product(sku_name(prefix, i), f"Bench item {prefix} {i}", n, Decimal("9.90"))
        for i, n in enumerate(units)
    ]


def catalogue_of(products: Iterable[Product]) -> Catalogue:
    """The catalogue every sandbox lists and the store holds (plain products, no bundles)."""
    return Catalogue(products=tuple(products))


# --- the periodic-sync baseline ------------------------------------------------------------------


@dataclass(kw_only=True)
class Checkouts:
    """What the buyers of a simulated trace got: accepted, refused, and sold beyond on hand."""

    accepted: int = 0
    refused: int = 0
    oversold_orders: int = 0
    oversold_units: int = 0

    def sold(self, over: int) -> None:
        """An order accepted, `over` of its units beyond what was on hand."""
        self.accepted += 1
        if over:
            self.oversold_orders += 1
            self.oversold_units += over


@dataclass
class BaselineResult(Checkouts):
    """What a periodic tool would have done with the trace."""

    interval_min: float
    interval_trace_s: float
    syncs: int
    calls: dict[str, int] = field(default_factory=dict)


def simulate_periodic(
    trace: Sequence[TraceOrder],
    units: Sequence[int],
    *,
    rate: float,
    interval_min: float,
    compress: float,
) -> BaselineResult:
    """Replay the trace against three channels that only learn the truth at each sync.

    Each channel shows its own count and lowers it on its own sales; a buyer is refused when it
    shows too few. Every `interval_min` minutes of the seller's day (`interval_min * 60 /
    compress` seconds of the trace) the tool reads all orders and sets every listing on every
    channel to on hand minus units sold, instantly (its best case). An accepted order is oversold
    when the units sold so far exceed on hand for one of its SKUs."""
    interval_s = interval_min * 60.0 / compress
    shown = {channel: list(units) for channel in CHANNELS}
    sold = [0] * len(units)
    result = BaselineResult(interval_min, round(interval_s, 3), syncs=0)
    calls: Counter[str] = Counter()
    since_sync: Counter[str] = Counter()
    next_sync = interval_s
    end = trace[-1].offset / rate if trace else 0.0

    def sync() -> None:
        result.syncs += 1
        for channel in CHANNELS:
            pages = max(1, math.ceil(since_sync[channel] / ORDERS_PAGE[channel]))
            calls[channel] += pages + since_sync[channel] * CALLS_PER_ORDER[channel]
            batches = math.ceil(len(units) / PUSH_BATCH[channel])
            calls[channel] += batches * PUSH_CALLS_PER_BATCH[channel]
            counts = shown[channel]
            for sku, on_hand in enumerate(units):
                counts[sku] = max(0, on_hand - sold[sku])
        since_sync.clear()

    for order in trace:
        at = order.offset / rate
        while next_sync <= at:
            sync()
            next_sync += interval_s
        counts = shown[order.channel]
        if any(counts[sku] < qty for sku, qty in order.lines):
            result.refused += 1
            continue
        since_sync[order.channel] += 1
        over = 0
        for sku, qty in order.lines:
            counts[sku] -= qty
            before = max(0, units[sku] - sold[sku])
            sold[sku] += qty
            over += max(0, qty - before)
        result.sold(over)
    while next_sync <= end:  # a sync due within the trace's span after its last order
        sync()
        next_sync += interval_s
    result.calls = {channel: calls[channel] for channel in CHANNELS}
    return result


# --- a tool bound only by Amazon's published patch rate ------------------------------------------


@dataclass
class RateBoundResult(Checkouts):
    """What a tool with no delay of its own would have let through, Amazon's rate its only bound."""

    patch_rate: float
    patch_burst: float
    patches: int = 0


def simulate_rate_bound(
    trace: Sequence[TraceOrder],
    units: Sequence[int],
    *,
    rate: float,
    patch_rate: float,
    patch_burst: float,
) -> RateBoundResult:
    """Replay the trace against a tool that learns every sale the instant it is placed and
    pushes in no time: Shopify and eBay always show the truth (their call limits do not bind at
    these rates); Amazon is corrected one listing per patch from a bucket of `patch_rate` a
    second holding `patch_burst` (full at the start), each token spent the moment it is there on
    the listing it shows too much of that is most urgent (sold out first, then fewest left, then
    the oldest change). Amazon lowers its own count on its own sales. The oversells left are
    what Amazon's published rate costs a tool that shows every unit it has and has no delay of
    its own (the listing chosen greedily: an estimate of the floor, not a proven optimum)."""
    result = RateBoundResult(patch_rate, patch_burst)
    truth = list(units)
    amazon = list(units)
    changed_at: dict[int, float] = {}  # listings Amazon shows too much of: since when
    tokens, clock = patch_burst, 0.0

    def patch_until(moment: float) -> None:
        nonlocal tokens, clock
        while changed_at:
            at = clock if tokens >= 1.0 else clock + (1.0 - tokens) / patch_rate
            if at > moment:
                break
            tokens, clock = min(patch_burst, tokens + (at - clock) * patch_rate), at
            sku = min(changed_at, key=lambda s: (truth[s] > 0, truth[s], changed_at[s]))
            amazon[sku] = truth[sku]
            del changed_at[sku]
            tokens -= 1.0
            result.patches += 1
        tokens, clock = min(patch_burst, tokens + (moment - clock) * patch_rate), moment

    for order in trace:
        at = order.offset / rate
        patch_until(at)
        shown = amazon if order.channel == "amazon" else truth
        if any(shown[sku] < qty for sku, qty in order.lines):
            result.refused += 1
            continue
        over = 0
        for sku, qty in order.lines:
            over += max(0, qty - truth[sku])
            truth[sku] = max(0, truth[sku] - qty)
            if order.channel == "amazon":
                amazon[sku] -= qty
            if amazon[sku] > truth[sku]:
                changed_at.setdefault(sku, at)
            else:
                changed_at.pop(sku, None)
        result.sold(over)
    return result


# --- the lower bound of stock calls --------------------------------------------------------------


def stock_call_bounds(
    accepted: Sequence[TraceOrder],
    units: Sequence[int],
    rate: float = 1.0,
    window_s: float = TARGET_P99_S,
) -> dict[str, dict[str, int]]:
    """Per channel, from the orders the channels accepted:

    - `final`: listings whose final quantity differs from what the channel's own sales leave
      (some other channel sold the SKU), divided by the channel's batch maximum: the fewest stock
      calls that end every listing right, however late;
    - `per_order`: every accepted order on another channel that changes a listing here needs its
      own call(s) to be visible within seconds (its changed lines / batch maximum, rounded up),
      unless orders are coalesced; the floor for pushing each sale as it happens;
    - `within_target`: the fewest calls that show every change within `window_s` of its order
      (orders at `offset / rate` s), knowing the trace in advance: greedy windows (each opens
      at the first change not yet sent, and holds every change of the next `window_s`, the
      fewest send moments there can be), each costing its distinct changed listings / batch
      maximum. Pushing takes time too, so a daemon that meets the target must send sooner:
      this bound is below what any real one can reach;
    - `changed_listings`: the listings counted in `final`."""
    remaining = list(units)
    changed: dict[str, set[int]] = {channel: set() for channel in CHANNELS}
    per_order: Counter[str] = Counter()
    moves: dict[str, list[tuple[float, list[int]]]] = {channel: [] for channel in CHANNELS}
    for order in accepted:
        moved = []
        for sku, qty in order.lines:
            before = max(0, remaining[sku])
            remaining[sku] -= qty
            if max(0, remaining[sku]) != before:
                moved.append(sku)
        for channel in CHANNELS:
            if channel == order.channel or not moved:
                continue
            changed[channel].update(moved)
            per_order[channel] += math.ceil(len(moved) / BATCH_MAX[channel])
            moves[channel].append((order.offset / rate, moved))
    return {
        channel: {
            "final": math.ceil(len(changed[channel]) / BATCH_MAX[channel]),
            "per_order": per_order[channel],
            "within_target": _windowed_calls(moves[channel], window_s, BATCH_MAX[channel]),
            "changed_listings": len(changed[channel]),
        }
        for channel in CHANNELS
    }


def _windowed_calls(
    moves: Sequence[tuple[float, Sequence[int]]], window_s: float, batch_max: int
) -> int:
    """Calls of greedy `window_s` windows over the changes (time, listings), oldest first."""
    calls = 0
    opened: float | None = None
    held: set[int] = set()
    for at, listings in sorted(moves, key=lambda move: move[0]):
        if opened is None or at > opened + window_s:
            calls += math.ceil(len(held) / batch_max)
            opened, held = at, set()
        held.update(listings)
    return calls + math.ceil(len(held) / batch_max)


def oversold_units(accepted: Sequence[TraceOrder], units: Sequence[int]) -> tuple[int, int]:
    """(orders, units) sold beyond on hand, over every channel, in the order accepted."""
    left = list(units)
    orders = units_over = 0
    for order in accepted:
        over = 0
        for sku, qty in order.lines:
            over += max(0, qty - max(0, left[sku]))
            left[sku] -= qty
        if over:
            orders += 1
            units_over += over
    return orders, units_over


def token_bucket_lags(times: Sequence[float], rate: float, burst: float) -> list[float]:
    """For requests wanted at `times` (sorted, seconds), the least wait each must make behind a
    bucket of `rate` per second holding `burst` tokens, full at time 0: a published rate limit's
    floor on latency, whatever the client does."""
    lags = []
    tokens = burst
    clock = 0.0
    for wanted in times:
        at = max(wanted, clock)
        tokens = min(burst, tokens + (at - clock) * rate)
        if tokens < 1.0:
            at += (1.0 - tokens) / rate
            tokens = 1.0
        tokens -= 1.0
        clock = at
        lags.append(at - wanted)
    return lags
