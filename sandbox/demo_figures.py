"""The figures `channel-sync demo` shows (sandbox/demo_view.py draws them): a pure function of
what the admin API and the sandboxes' control APIs answered (`Answers`) and of what the buyers
and the warehouse did, so that they can be checked from canned answers. Words:

- **Oversell prevented**: a buyer's order a marketplace refused as sold out (409) although,
  without sync, it would have taken it: what it listed at the start less its own buyers' units
  (placed, not cancelled) still covered the order. The units it lacked were sold on the other
  channels and pushed to it by the daemon; unsynced, it would have sold stock that was gone
  (sandbox/demo_orders.py `OrderGenerator.is_prevented`). A refusal of an order that the
  marketplace's own sales had exhausted is counted as sold out, not as prevented.
- **Oversold**: an order the store flags oversold now (`channel_sync_oversold_orders`): it was
  taken on a marketplace when the stock for it was already gone, and no restock or cancel has
  covered it since.
- **Errors** of a channel: its failed polls and reconciles, its stock pushes the marketplace
  rejected, and its dead outbox jobs.
- **Throttles**: calls the marketplace answered with its rate limit (its `/_sandbox/calls`).
- **Most contended SKUs**: those whose buyers hold the largest share of what was listed at the
  start (units placed minus cancelled, over every channel); before any order, the scarcest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from sandbox.demo_orders import OrderTally
from sandbox.demo_warehouse import WarehouseTally

CONTENDED = 5
SHIPMENT_LANDED = ("applied", "already_there")
JSON = Mapping[str, Any]


@dataclass(frozen=True)
class Answers:
    """One look at the admin API (`/api/status`, `/api/stock` items, `/metrics` text) and at
    each sandbox (`/_sandbox/inventory`, `/_sandbox/calls`); None or empty where it did not
    answer."""

    status: JSON | None = None
    stock: Sequence[JSON] = ()
    metrics: str = ""
    inventory: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    calls: Mapping[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class ChannelFigures:
    """One channel's row."""

    name: str
    orders_in: int = 0
    sold_out: int = 0
    prevented: int = 0
    cancelled: int = 0
    shipped: int = 0
    stock_pushes: int = 0
    shipments_pushed: int = 0
    lag_s: float | None = None
    api_calls: int = 0
    throttles: int = 0
    errors: int = 0
    oversold: int = 0


@dataclass(frozen=True)
class SkuRow:
    """A contended SKU: what we count available, and what each marketplace shows."""

    sku: str
    available: int | None
    shown: Mapping[str, int | None]


@dataclass(frozen=True)
class Figures:
    """Everything the view shows at one moment."""

    elapsed_s: float
    channels: tuple[ChannelFigures, ...]
    contended: tuple[SkuRow, ...]
    buyers: str
    warehouse: str
    daemon_answered: bool = True

    @property
    def prevented(self) -> int:
        """Oversells prevented over every channel."""
        return sum(c.prevented for c in self.channels)

    @property
    def oversold(self) -> int:
        """Orders flagged oversold over every channel."""
        return sum(c.oversold for c in self.channels)


def metric_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample in Prometheus text."""
    return [
        (s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def _sum(samples: Sequence[tuple[str, dict[str, str], float]], name: str, **match: object) -> int:
    total = 0.0
    for sample_name, labels, value in samples:
        if sample_name != name:
            continue
        if all(
            labels.get(k) in v if isinstance(v, tuple) else labels.get(k) == v
            for k, v in match.items()
        ):
            total += value
    return int(total)


def _errors(samples: Sequence[tuple[str, dict[str, str], float]], name: str) -> int:
    failed_runs = sum(
        int(value)
        for sample_name, labels, value in samples
        if sample_name == "channel_sync_scheduled_runs_total"
        and labels.get("channel") == name
        and labels.get("outcome") != "ok"
    )
    rejected = _sum(samples, "channel_sync_stock_pushes_total", channel=name, outcome="rejected")
    return failed_runs + rejected


def channel_figures(
    name: str,
    answers: Answers,
    samples: Sequence[tuple[str, dict[str, str], float]],
    buyers: OrderTally,
    warehouse: WarehouseTally,
) -> ChannelFigures:
    """One channel's figures from the answers and the tallies."""
    status: JSON = next(
        (c for c in (answers.status or {}).get("channels", []) if c.get("name") == name), {}
    )
    calls = answers.calls.get(name, {})
    return ChannelFigures(
        name=name,
        orders_in=int(status.get("orders_today", 0)),
        sold_out=buyers.sold_out[name],
        prevented=buyers.prevented[name],
        cancelled=buyers.cancelled[name],
        shipped=warehouse.shipped[name],
        stock_pushes=_sum(
            samples, "channel_sync_stock_pushes_total", channel=name, outcome="applied"
        ),
        shipments_pushed=_sum(
            samples,
            "channel_sync_fanout_pushes_total",
            channel=name,
            kind="shipment",
            outcome=SHIPMENT_LANDED,
        ),
        lag_s=status.get("lag_s"),
        api_calls=sum(int(n) for n in calls.get("calls", {}).values()),
        throttles=sum(int(n) for n in calls.get("throttled", {}).values()),
        errors=_errors(samples, name) + int(status.get("jobs_dead", 0)),
        oversold=_sum(samples, "channel_sync_oversold_orders", channel=name),
    )


def most_contended(
    listed: Mapping[str, int], ordered: Mapping[str, int], limit: int = CONTENDED
) -> list[str]:
    """The SKUs whose buyers hold the largest share of what was listed; ties (and a start with
    no orders) go to the scarcest, then by SKU."""

    def key(sku: str) -> tuple[float, int, str]:
        units = listed[sku]
        return (-ordered.get(sku, 0) / max(1, units), units, sku)

    return sorted(listed, key=key)[:limit]


def figures(
    answers: Answers,
    *,
    channels: Sequence[str],
    listed: Mapping[str, int],
    buyers: OrderTally,
    warehouse: WarehouseTally,
    elapsed_s: float,
) -> Figures:
    """The view's figures from one look and the tallies."""
    samples = metric_samples(answers.metrics) if answers.metrics else []
    available = {
        str(item["sku"]): item.get("totals", {}).get("available") for item in answers.stock
    }
    rows = tuple(
        SkuRow(
            sku,
            available.get(sku),
            {name: answers.inventory.get(name, {}).get(sku) for name in channels},
        )
        for sku in most_contended(listed, buyers.units_ordered())
    )
    return Figures(
        elapsed_s=elapsed_s,
        channels=tuple(
            channel_figures(name, answers, samples, buyers, warehouse) for name in channels
        ),
        contended=rows,
        buyers=buyers.describe(),
        warehouse=warehouse.describe(),
        daemon_answered=answers.status is not None,
    )
