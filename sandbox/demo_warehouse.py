"""The demo's warehouse: it ships the store's open orders a few seconds after it sees them,
through the admin API, as a seller's warehouse or 3PL integration would.

Every second it lists the open orders (`GET /api/orders?status=open`), gives each one it has not
seen a delay drawn from a seeded generator (2 to 8 s), and when that passes records a parcel
(`POST /api/orders/{id}/shipments`, every open unit, a carrier and a made-up tracking number).
The daemon then pushes it to the order's origin marketplace. It leaves alone the orders it cannot
fill: oversold ones (no units on the shelf for them) and ones the marketplace ships itself. An
order cancelled in between is refused by the store (409): counted, not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)

SHIP_AFTER_S = (2.0, 8.0)
"""Seconds between the warehouse seeing an order and the parcel leaving (drawn)."""
LOOK_EVERY_S = 1.0
PAGE = 1000
CARRIERS = ("UPS", "USPS", "FedEx")
"""Carriers every demo marketplace knows by these names."""


@dataclass
class WarehouseTally:
    """What the warehouse did, per channel of the order."""

    shipped: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)

    def describe(self) -> str:
        """`N parcels shipped, M refused (cancelled meanwhile)`."""
        text = f"{self.shipped.total()} parcel(s) shipped"
        if self.refused.total():
            text += f", {self.refused.total()} refused by the store (cancelled meanwhile)"
        if self.failed.total():
            text += f", {self.failed.total()} failed"
        return text


@dataclass(frozen=True)
class _Due:
    order_id: int
    channel: str
    at: float


class Warehouse:
    """Ships open orders after a drawn delay, through the admin API (`admin` carries the base URL
    and the bearer token)."""

    def __init__(self, admin: httpx.AsyncClient, *, seed: int = 0) -> None:
        self.admin = admin
        self.rng = random.Random(f"warehouse-{seed}")
        self.tally = WarehouseTally()
        self._seen: set[int] = set()
        self._due: list[_Due] = []

    def tracking_number(self, carrier: str) -> str:
        """A tracking number shaped like the carrier's."""
        digits = "".join(self.rng.choice("0123456789") for _ in range(16))
        if carrier == "UPS":
            return f"1Z{digits}"
        if carrier == "USPS":
            return f"9400{digits}00"
        return digits[:12]

    def take(self, orders: Sequence[Mapping[str, Any]], now: float) -> int:
        """Schedule the orders not seen before that the warehouse can fill; how many."""
        taken = 0
        for order in sorted(orders, key=lambda o: int(o["id"])):
            order_id = int(order["id"])
            if order_id in self._seen:
                continue
            self._seen.add(order_id)
            if order.get("is_oversold") or not order.get("is_reserving", True):
                continue
            delay_s = self.rng.uniform(*SHIP_AFTER_S)
            self._due.append(_Due(order_id, str(order.get("channel")), now + delay_s))
            taken += 1
        return taken

    def due(self, now: float) -> list[_Due]:
        """The parcels whose time has come, and forget them."""
        ready = [d for d in self._due if d.at <= now]
        self._due = [d for d in self._due if d.at > now]
        return ready

    async def open_orders(self) -> list[Mapping[str, Any]]:
        """Every open order in the store (a few pages at most in a demo)."""
        found: list[Mapping[str, Any]] = []
        params: dict[str, str | int] = {"status": "open", "limit": PAGE}
        for _ in range(10):
            answer = await self.admin.get("/api/orders", params=params)
            answer.raise_for_status()
            page = answer.json()
            found += page.get("items", [])
            if not page.get("next_cursor"):
                break
            params["cursor"] = page["next_cursor"]
        return found

    async def ship(self, due: _Due) -> None:
        """Record one parcel with every open unit of the order."""
        carrier = self.rng.choice(CARRIERS)
        body = {"carrier": carrier, "tracking": self.tracking_number(carrier)}
        try:
            answer = await self.admin.post(f"/api/orders/{due.order_id}/shipments", json=body)
        except httpx.HTTPError as exc:
            self.tally.failed[due.channel] += 1
            log.warning("demo warehouse: shipment failed: %s", type(exc).__name__)
            return
        if answer.status_code == 201:
            self.tally.shipped[due.channel] += 1
        elif answer.status_code == 409:
            self.tally.refused[due.channel] += 1
        else:
            self.tally.failed[due.channel] += 1
            log.warning("demo warehouse: shipment refused: HTTP %s", answer.status_code)

    async def run(self, stop: asyncio.Event) -> None:
        """Look for open orders and ship them until `stop` is set."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                self.take(await self.open_orders(), loop.time())
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("demo warehouse: orders unreadable: %s", type(exc).__name__)
            for due in self.due(loop.time()):
                await self.ship(due)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=LOOK_EVERY_S)
