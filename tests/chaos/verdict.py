"""The chaos run's verdict: what the marketplaces and the store hold at the end, against what the
buyers and the seller did (DESIGN.md invariants 1, 3, 4 and 5, and no job given up).

Expected values are computed here from the harness's own record and from the tables, never by
calling the engine's planning code (the ledger checks are tests/sync/engine_harness.py's, which
are written the same way).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from sqlalchemy import select

from sync.models import Channel, Listing, OutboxJob
from sync.reservations import StockRules
from tests.chaos.actors import Ledger
from tests.chaos.rig import CHANNELS, Rig, retry_store
from tests.sync.engine_harness import (
    Snapshot,
    apply_rules,
    ledger_by_sku,
    live_units_by_sku,
    oversold_flag_problems,
)


@dataclass
class Verdict:
    """The counts the run prints; the first ones are the issue's JSON keys."""

    orders: int = 0
    stored: int = 0
    duplicates: int = 0
    missing: int = 0
    wrong_channel_quantities: int = 0
    shipments_missing: int = 0
    shipments_duplicated: int = 0
    dead_jobs: int = 0
    kills: int = 0
    wrong_state: int = 0
    unexpected_orders: int = 0
    ledger_errors: int = 0
    oversold_flag_errors: int = 0
    oversold_orders: int = 0
    cancelled: int = 0
    shipped: int = 0
    refused_checkouts: int = 0
    shipment_answers_lost: int = 0
    unexpected_exits: int = 0
    pg_restarts: int = 0
    harness_errors: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    def note(self, what: str, example: str) -> None:
        """Keep the first few examples of each kind of failure, for the report."""
        shown = self.examples.setdefault(what, [])
        if len(shown) < 5:
            shown.append(example)

    def counts(self) -> dict[str, Any]:
        """Every count, without the examples."""
        data = asdict(self)
        data.pop("examples")
        return data

    def failures(self, *, min_kills: int) -> list[str]:
        """What is wrong, as sentences; empty when the run held every invariant.

        An exit of the daemon nobody asked for is counted, not failed: the harness starts it
        again as systemd's `Restart=on-failure` would (the daemon exits when the store is
        unreachable while it starts, e.g. a restart that lands in the PostgreSQL crash)."""
        wrong = [
            f"{name} = {getattr(self, name)}"
            for name in (
                "duplicates",
                "missing",
                "wrong_state",
                "unexpected_orders",
                "ledger_errors",
                "oversold_flag_errors",
                "wrong_channel_quantities",
                "shipments_missing",
                "shipments_duplicated",
                "dead_jobs",
                "harness_errors",
            )
            if getattr(self, name)
        ]
        if self.stored != self.orders:
            wrong.append(f"stored {self.stored} of {self.orders} orders")
        if self.kills < min_kills:
            wrong.append(f"only {self.kills} kills, {min_kills} asked")
        return wrong


def _get(client: httpx.Client, url: str) -> Any:
    answer = client.get(url)
    answer.raise_for_status()
    return answer.json()


def _parcels(channel: str, body: Any) -> list[tuple[str, str | None]]:
    """(marketplace order id, tracking number) of every parcel a sandbox received."""
    found = []
    for item in body["fulfillments"]:
        if channel == "shopify":
            tracking = (item.get("tracking") or {}).get("number")
        elif channel == "amazon":
            tracking = item.get("tracking_number")
        else:
            tracking = item.get("tracking")
        found.append((str(item["order_id"]), tracking))
    return found


def judge(rig: Rig, ledger: Ledger) -> Verdict:
    """Compare the end state with what was done; the counts, with examples of what is wrong."""
    verdict = Verdict(
        kills=rig.crasher.kills,
        unexpected_exits=len(rig.crasher.unexpected_exits),
        pg_restarts=rig.cluster.restarts if rig.cluster else 0,
        refused_checkouts=ledger.refused,
        shipment_answers_lost=ledger.shipments_lost_answers,
    )
    placed = ledger.snapshot()
    verdict.orders = len(placed)
    verdict.cancelled = sum(o.cancelled for o in placed)
    verdict.shipped = sum(o.tracking is not None for o in placed)

    def read() -> tuple[Snapshot, dict[int, str]]:
        with rig.db.read_session() as session:
            names = dict(session.execute(select(Channel.id, Channel.name)).all())
            return Snapshot.read(session), names

    snapshot, names = retry_store(read)
    _judge_orders(verdict, placed, snapshot, names)
    _judge_ledger(verdict, snapshot)
    with httpx.Client(timeout=60) as client:
        _judge_stock(verdict, rig, client, snapshot, names)
        _judge_parcels(verdict, rig, client, placed)
    with rig.admin(timeout=60) as admin:
        dead = _get(admin, "/api/jobs?state=dead&limit=1000")["items"]
    verdict.dead_jobs = len(dead)
    for job in dead:
        verdict.note(
            "dead_jobs", f"{job.get('channel')} {job.get('kind')}: {job.get('last_error')}"
        )
    return verdict


def _judge_orders(
    verdict: Verdict, placed: list[Any], snapshot: Snapshot, names: dict[int, str]
) -> None:
    """Invariant 1: each placed order stored once, with the state the harness left it in."""
    rows = Counter((names[o.channel_id], o.external_id) for o in snapshot.orders.values())
    by_key = {(names[o.channel_id], o.external_id): o for o in snapshot.orders.values()}
    lines: dict[int, Counter[str]] = defaultdict(Counter)
    for line in snapshot.lines:
        lines[line.order_id][line.sku or "?"] += line.quantity
    known = set()
    for order in placed:
        keys = [(order.channel, ext) for ext in order.external_ids]
        known.update(keys)
        found = [key for key in keys if key in rows]
        if not found:
            verdict.missing += 1
            verdict.note("missing", f"{order.channel} {order.external_ids[0]}")
            continue
        verdict.stored += 1
        copies = sum(rows[key] for key in found)
        verdict.duplicates += copies - 1
        row = by_key[found[0]]
        if row.status.value != order.expected_status or lines[row.id] != Counter(order.lines):
            verdict.wrong_state += 1
            verdict.note(
                "wrong_state",
                f"{order.channel} {order.external_ids[0]}: stored {row.status.value} "
                f"{dict(lines[row.id])}, expected {order.expected_status} {order.lines}",
            )
        verdict.oversold_orders += bool(row.is_oversold)
    for key in set(rows) - known:
        verdict.unexpected_orders += rows[key]
        verdict.note("unexpected_orders", f"{key[0]} {key[1]}")


def _judge_ledger(verdict: Verdict, snapshot: Snapshot) -> None:
    """Invariant 3: reserved + consumed = live lines per SKU; negative available only under an
    order flagged oversold, and no order flagged where every place it reserves is covered."""
    ledger, live = ledger_by_sku(snapshot), live_units_by_sku(snapshot)
    for sku in sorted(set(ledger) | set(live)):
        if ledger.get(sku, 0) != live.get(sku, 0):
            verdict.ledger_errors += 1
            verdict.note("ledger", f"{sku}: ledger {ledger.get(sku, 0)}, lines {live.get(sku, 0)}")
    for problem in oversold_flag_problems(snapshot):
        verdict.oversold_flag_errors += 1
        verdict.note("oversold", problem)


def _judge_stock(
    verdict: Verdict, rig: Rig, client: httpx.Client, snapshot: Snapshot, names: dict[int, str]
) -> None:
    """Invariant 4: each sandbox shows, per SKU, what the rules give for the final ledger (the
    demo's channel files set no rules: the defaults)."""
    available = snapshot.available()
    rules = StockRules()
    expected: dict[str, dict[str, int]] = {c: {} for c in CHANNELS}
    for channel_id, _ref, sku in snapshot.listings:
        sellable = max(0, available.get((sku, "default"), 0))
        expected[names[channel_id]][sku] = apply_rules(rules, sellable)
    for channel in CHANNELS:
        shown = _get(client, rig.control(channel, "/inventory"))
        for sku, units in sorted(expected[channel].items()):
            if shown.get(sku) != units:
                verdict.wrong_channel_quantities += 1
                with rig.admin() as admin:  # what the daemon believes it told the channel
                    told = [
                        (c["last_pushed_quantity"], c["is_dirty"])
                        for c in _get(admin, f"/api/stock/{sku}")["channels"]
                        if c["channel"] == channel
                    ]
                verdict.note(
                    "stock",
                    f"{channel} {sku}: shows {shown.get(sku)}, rules give {units}; "
                    f"the daemon believes it told it (quantity, dirty) {told}; "
                    f"its last pushes {_pushes(rig, channel, sku)}",
                )


def _pushes(rig: Rig, channel: str, sku: str) -> list[tuple[Any, ...]]:
    """The listing's last stock jobs: (id, state, attempts, quantity, seq, note), newest last."""

    def read() -> list[tuple[Any, ...]]:
        with rig.db.read_session() as session:
            listing_id = session.scalar(
                select(Listing.id)
                .join(Channel, Listing.channel_id == Channel.id)
                .where(Channel.name == channel, Listing.sku == sku)
            )
            jobs = session.scalars(
                select(OutboxJob)
                .where(OutboxJob.identity_key == f"stock:{listing_id}")
                .order_by(OutboxJob.id.desc())
                .limit(4)
            )
            return [
                (
                    job.id,
                    job.state.value,
                    job.attempts,
                    job.payload.get("quantity"),
                    job.payload.get("seq"),
                    (job.last_error or "")[:80],
                )
                for job in reversed(list(jobs))
            ]

    return retry_store(read)


def _judge_parcels(verdict: Verdict, rig: Rig, client: httpx.Client, placed: list[Any]) -> None:
    """Invariant 5: every shipment recorded here is on its origin channel exactly once."""
    for channel in CHANNELS:
        parcels = Counter(_parcels(channel, _get(client, rig.control(channel, "/fulfillments"))))
        wanted = {
            (order.external_ids[0], order.tracking)
            for order in placed
            if order.channel == channel and order.tracking
        }
        for key in wanted:
            if parcels[key] == 0:
                verdict.shipments_missing += 1
                verdict.note("shipments_missing", f"{channel} {key}")
            elif parcels[key] > 1:
                verdict.shipments_duplicated += parcels[key] - 1
                verdict.note("shipments_duplicated", f"{channel} {key} x{parcels[key]}")
        for key, n in parcels.items():
            if key not in wanted:
                verdict.shipments_duplicated += n
                verdict.note("shipments_unexpected", f"{channel} {key} x{n}")
