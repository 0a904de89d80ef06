"""Who acts during the chaos run, each in a thread of its own: buyers placing and cancelling
orders on the marketplaces, the seller recording shipments through the admin API, the crasher
SIGKILLing the daemon, and the database administrator whose PostgreSQL crashes once.

Every random choice comes from a generator seeded from the run's seed, one per actor, so a run
repeats its catalogue, its orders, their fates and its kill moments (the daemon's timing is the
machine's). The seller never trusts an answer it may not have received: after a lost answer it
reads the order back, and the verdict is taken from the marketplaces, not from the answers.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select

from sandbox.demo_catalogue import Product
from sync.models import Channel
from sync.models import Order as OrderRow
from tests.chaos.rig import CHANNELS, Rig, retry_store

PRICE = Decimal("9.90")
SCARCE_UNITS = 2
CARRIER = "UPS"


@dataclass(frozen=True)
class Catalogue:
    """The run's SKUs: plenty of most, a few units of the scarce ones (so oversells happen)."""

    plentiful: tuple[str, ...]
    scarce: tuple[str, ...]
    products: tuple[Product, ...]


def make_catalogue(orders: int) -> Catalogue:
    """Enough plentiful SKUs and units that none runs out over `orders` orders; a few scarce
    SKUs of 2 units each, which about a fifth of the orders take one of."""
    plentiful = tuple(f"CH-P{n:03}" for n in range(max(8, min(40, orders // 100))))
    scarce = tuple(f"CH-S{n:02}" for n in range(2 + orders // 2000))
    units = orders * 4 // len(plentiful) + 50
    products = tuple(Product(sku, sku, units, PRICE) for sku in plentiful) + tuple(
        Product(sku, sku, SCARCE_UNITS, PRICE) for sku in scarce
    )
    return Catalogue(plentiful, scarce, products)


@dataclass
class Placed:
    """An order a buyer placed, what the harness did to it since, and so what it must end as."""

    index: int
    channel: str
    external_ids: tuple[str, ...]  # the marketplace's ids (Shopify: GID and legacy id)
    lines: dict[str, int]
    fate: str  # "ship", "cancel" or "keep": what the harness means to do
    cancelled: bool = False
    tracking: str | None = None  # set once a shipment is recorded in the daemon

    @property
    def expected_status(self) -> str:
        """The canonical status it must be stored with at the end."""
        if self.cancelled:
            return "cancelled"
        return "shipped" if self.tracking else "open"


@dataclass
class Ledger:
    """What the actors did, shared between their threads."""

    placed: list[Placed] = field(default_factory=list)
    refused: int = 0  # checkouts a marketplace refused (not enough stock shown)
    cancel_refused: int = 0
    shipments_lost_answers: int = 0  # POSTs whose answer never came (daemon killed)
    shipments_found_recorded: int = 0  # ... and which the read-back found recorded
    lock: threading.Lock = field(default_factory=threading.Lock)
    buying_done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    def snapshot(self) -> list[Placed]:
        """The placed orders so far."""
        with self.lock:
            return list(self.placed)


def _order_body(rng: random.Random, catalogue: Catalogue) -> tuple[dict[str, int], bool]:
    """Lines (SKU -> units) of one checkout, and whether it takes a scarce SKU."""
    count = 1 if rng.random() < 0.7 else rng.randint(2, 3)
    skus = rng.sample(catalogue.plentiful, count)
    lines = {sku: 1 if rng.random() < 0.8 else 2 for sku in skus}
    scarce = rng.random() < 0.2
    if scarce:
        lines[rng.choice(catalogue.scarce)] = 1
    return lines, scarce


def _fate(rng: random.Random, scarce: bool) -> str:
    # Scarce orders may be oversold: a seller does not ship what it does not hold, so they are
    # only kept or cancelled.
    draw = rng.random()
    if draw < 0.10 or (scarce and draw < 0.15):
        return "cancel"
    if not scarce and draw < 0.40:
        return "ship"
    return "keep"


def _place(client: httpx.Client, rig: Rig, channel: str, lines: dict[str, int]) -> Any:
    body = {"lines": [{"sku": sku, "quantity": n} for sku, n in lines.items()]}
    answer = client.post(rig.control(channel, "/orders"), json=body)
    if answer.status_code == 409:
        return None
    answer.raise_for_status()
    return answer.json()


def _cancel(client: httpx.Client, rig: Rig, order: Placed) -> bool:
    body: dict[str, Any] = {"order_id": order.external_ids[0]}
    if order.channel == "shopify":
        body |= {"restock": True, "reason": "CUSTOMER"}
    answer = client.post(rig.control(order.channel, "/cancel"), json=body)
    if answer.status_code == 409:
        return False
    answer.raise_for_status()
    return True


def buyers(
    rig: Rig, catalogue: Catalogue, ledger: Ledger, *, orders: int, rate: float, seed: int
) -> None:
    """Place `orders` checkouts at about `rate` per second over the three marketplaces, and
    cancel the ones fated to be cancelled a little later, on the marketplace."""
    rng = random.Random(seed)
    due: list[tuple[int, Placed]] = []  # (cancel once this many orders were placed, order)
    started = time.monotonic()
    with httpx.Client(timeout=30) as client:
        for n in range(orders):
            if ledger.stop.is_set():
                break
            # The buyers keep their own timetable: the daemon being down changes nothing here.
            pause = started + n / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            channel = rng.choice(CHANNELS)
            lines, scarce = _order_body(rng, catalogue)
            fate = _fate(rng, scarce)
            answer = _place(client, rig, channel, lines)
            if answer is None:
                with ledger.lock:
                    ledger.refused += 1
            else:
                ids: tuple[str, ...] = (str(answer["order_id"]),)
                if channel == "shopify":
                    ids += (str(answer["legacy_id"]),)
                order = Placed(n, channel, ids, lines, fate)
                with ledger.lock:
                    ledger.placed.append(order)
                if fate == "cancel":
                    due.append((n + rng.randint(1, 40), order))
            for entry in [d for d in due if d[0] <= n]:
                due.remove(entry)
                _cancel_one(client, rig, ledger, entry[1])
        for _, order in due:
            _cancel_one(client, rig, ledger, order)
    ledger.buying_done.set()


def _cancel_one(client: httpx.Client, rig: Rig, ledger: Ledger, order: Placed) -> None:
    done = _cancel(client, rig, order)
    with ledger.lock:
        if done:
            order.cancelled = True
        else:
            ledger.cancel_refused += 1


def _stored_ids(rig: Rig, orders: list[Placed]) -> dict[int, int]:
    """Placed index -> the store's order id, for the ones stored already."""
    wanted = {(o.channel, ext): o.index for o in orders for ext in o.external_ids}

    def read() -> dict[int, int]:
        with rig.db.read_session() as session:
            rows = session.execute(
                select(Channel.name, OrderRow.external_id, OrderRow.id)
                .join(Channel, OrderRow.channel_id == Channel.id)
                .where(OrderRow.external_id.in_(sorted({ext for _, ext in wanted})))
            )
            return {wanted[(c, e)]: i for c, e, i in rows if (c, e) in wanted}

    return retry_store(read)


def seller(rig: Rig, ledger: Ledger, *, min_age_s: float = 2.0, limit_s: float = 600.0) -> None:
    """Record a shipment, through the admin API, of every order fated to ship that the store
    holds, a little after it shows up; once the buyers are done, one last pass over what the
    store holds then (an order it does not hold yet stays unshipped: expected open)."""
    deadline = time.monotonic() + limit_s
    first_seen: dict[int, float] = {}
    with rig.admin(timeout=30) as admin:
        while not ledger.stop.is_set() and time.monotonic() < deadline:
            last_pass = ledger.buying_done.is_set()
            todo = [o for o in ledger.snapshot() if o.fate == "ship" and o.tracking is None]
            stored = _stored_ids(rig, todo[:500]) if todo else {}
            now = time.monotonic()
            for order in todo:
                if order.index not in stored:
                    continue
                # A little after the store first shows it, as a warehouse would pack it.
                seen = first_seen.setdefault(order.index, now)
                if not last_pass and now - seen < min_age_s:
                    continue
                tracking = f"1ZCHAOS{order.index:08}"
                if _record_shipment(rig, admin, ledger, stored[order.index], tracking):
                    order.tracking = tracking
                if ledger.stop.is_set():
                    return
            if last_pass and len(todo) <= 500:
                return
            time.sleep(0.2)


def _record_shipment(
    rig: Rig, admin: httpx.Client, ledger: Ledger, order_id: int, tracking: str
) -> bool:
    """POST the shipment; after a lost answer, POST again: the daemon answers 409 when every
    unit is shipped already, and the order read back says whether it was ours."""
    lost = False
    for _ in range(50):
        try:
            answer = admin.post(
                f"/api/orders/{order_id}/shipments", json={"carrier": CARRIER, "tracking": tracking}
            )
        except httpx.TransportError:
            lost = True
            with ledger.lock:
                ledger.shipments_lost_answers += 1
            rig.crasher.wait_healthy()
            continue
        if answer.status_code == 201:
            return True
        if answer.status_code == 409:
            detail = admin.get(f"/api/orders/{order_id}").json()
            if detail["status"] == "shipped" and lost:
                with ledger.lock:
                    ledger.shipments_found_recorded += 1
                return True
            with ledger.lock:
                ledger.errors.append(
                    f"shipment of order {order_id} refused: {answer.status_code} "
                    f"{answer.json().get('detail')} (status {detail['status']}, "
                    f"answer lost before: {lost})"
                )
            return False
        if answer.status_code >= 500 or answer.status_code == 503:
            time.sleep(0.5)  # the store restarting under the daemon
            continue
        with ledger.lock:
            ledger.errors.append(f"shipment of order {order_id}: HTTP {answer.status_code}")
        return False
    return False


def killer(
    rig: Rig, ledger: Ledger, *, kills: int, span_s: float, seed: int, say: Callable[[str], None]
) -> None:
    """SIGKILL the daemon `kills` times at seeded random moments spread over `span_s` seconds,
    each time down for a random moment (orders keep coming) and started again on the same
    config and store."""
    rng = random.Random(seed)
    crasher = rig.crasher
    moments = sorted(rng.uniform(0.03, 0.97) * span_s for _ in range(kills))
    started = time.monotonic()
    for at in moments:
        while not ledger.stop.is_set():
            left = started + at - time.monotonic()
            if left <= 0:
                break
            ledger.stop.wait(min(left, 0.5))
            crasher.revive()
        if ledger.stop.is_set():
            return
        crasher.wait_healthy()
        crasher.kill()
        say(f"kill {crasher.kills} at {time.monotonic() - started:.1f} s")
        ledger.stop.wait(rng.uniform(0.05, 2.0))
        crasher.start()


def db_crasher(rig: Rig, ledger: Ledger, *, at_s: float, say: Callable[[str], None]) -> None:
    """Crash and restart the store's PostgreSQL once, `at_s` seconds in, under the daemon."""
    if rig.cluster is None:
        return
    if ledger.stop.wait(at_s):
        return
    started = time.monotonic()
    rig.cluster.crash_restart()
    say(f"PostgreSQL crashed and restarted ({time.monotonic() - started:.1f} s)")
