"""Buyers for `channel-sync demo`: orders placed on the sandbox marketplaces at a steady rate,
and some of them cancelled again.

Each order goes to one marketplace drawn at random and asks for one SKU of the catalogue (one
unit, sometimes two), through the marketplace's control API (`POST /_sandbox/orders`), as a buyer
checking out would: the marketplace lowers its own stock and tells the daemon as it would. A
marketplace that shows too few units refuses (409): counted as sold out there. Some buyers change
their mind within seconds: the order is cancelled on the marketplace it was placed on
(`POST /_sandbox/cancel`, which all three sandboxes answer; the marketplace puts the units back on
sale and tells the daemon, by notification or at its next poll). A marketplace refuses a cancel
once the order has shipped (409): counted apart. The draws are seeded, so a run places the same
sequence of orders. Buyers are made up; they are never printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)

ORDER_TIMEOUT_S = 10.0
CANCEL_SHARE = 0.15
"""Share of the orders a marketplace accepted that their buyer cancels."""
CANCEL_AFTER_S = (0.5, 2.0)
"""A cancelling buyer changes their mind this many seconds after checking out (drawn)."""


@dataclass
class OrderTally:
    """What the buyers did, per channel; and per channel and SKU, the units they hold (placed
    minus cancelled), which tells whether a refusal was an oversell prevented."""

    placed: Counter[str] = field(default_factory=Counter)
    sold_out: Counter[str] = field(default_factory=Counter)
    prevented: Counter[str] = field(default_factory=Counter)
    cancelled: Counter[str] = field(default_factory=Counter)
    cancel_refused: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    held: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def units_ordered(self) -> Counter[str]:
        """Units held by buyers per SKU, over every channel."""
        total: Counter[str] = Counter()
        for per_sku in self.held.values():
            total.update(per_sku)
        return total

    def describe(self) -> str:
        """`N placed (shopify a, amazon b, ebay c), M refused as sold out (P oversells
        prevented), C cancelled, K failed`."""
        per_channel = ", ".join(f"{name} {n}" for name, n in sorted(self.placed.items()))
        text = f"{self.placed.total()} placed ({per_channel or 'none yet'})"
        text += f", {self.sold_out.total()} refused as sold out on the channel"
        text += f" ({self.prevented.total()} oversells prevented)"
        text += f", {self.cancelled.total()} cancelled by their buyer"
        if self.cancel_refused.total():
            text += f" ({self.cancel_refused.total()} cancel(s) refused: shipped already)"
        if self.failed.total():
            text += f", {self.failed.total()} failed"
        return text


class OrderGenerator:
    """Places orders at `rate` per second in all, on a fixed schedule (a slow answer does not
    delay the orders after it beyond catching up), and cancels some of them a little later.

    `listed` is what each marketplace showed of each SKU at the start: with it, a refusal counts
    as an oversell prevented when the marketplace would have accepted the order had nobody told
    it about the other channels' sales (see `is_prevented`)."""

    def __init__(
        self,
        sandboxes: Mapping[str, str],
        skus: Sequence[str],
        *,
        rate: float,
        seed: int = 0,
        listed: Mapping[str, int] | None = None,
        cancel_share: float = CANCEL_SHARE,
        cancel_after_s: tuple[float, float] = CANCEL_AFTER_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("the order rate must be positive")
        if not sandboxes or not skus:
            raise ValueError("orders need at least one sandbox and one SKU")
        self.sandboxes = dict(sandboxes)
        self.skus = list(skus)
        self.listed = dict(listed or {})
        self.interval_s = 1.0 / rate
        self.rng = random.Random(seed)
        # Cancellations draw apart, so that they leave the sequence of orders unchanged.
        self.cancel_rng = random.Random(f"cancel-{seed}")
        self.cancel_share = cancel_share
        self.cancel_after_s = cancel_after_s
        self.tally = OrderTally()
        self._transport = transport
        self._number = 0
        self._cancels: set[asyncio.Task[None]] = set()

    def next_order(self) -> tuple[str, dict[str, Any]]:
        """The next channel drawn and the order body to place there."""
        self._number += 1
        channel = self.rng.choice(sorted(self.sandboxes))
        quantity = 2 if self.rng.random() < 0.2 else 1
        body = {
            "lines": [{"sku": self.rng.choice(self.skus), "quantity": quantity}],
            "buyer": {
                "name": f"Demo Buyer {self._number}",
                "email": f"buyer{self._number}@example.test",
            },
        }
        return channel, body

    def is_prevented(self, channel: str, sku: str, quantity: int) -> bool:
        """Whether a refusal on `channel` is an oversell prevented: without sync the marketplace
        would still show what it listed at the start less its own buyers' units, and that would
        have covered the order. So its refusal came from units sold on the other channels that
        the daemon pushed to it; had it not been told, the order would have been taken on stock
        already sold."""
        if sku not in self.listed:
            return False
        return self.listed[sku] - self.tally.held[channel][sku] >= quantity

    async def place(self, client: httpx.AsyncClient, channel: str, body: Any) -> str | None:
        """Place one order and count how it went; the marketplace's order id when it took it."""
        url = f"{self.sandboxes[channel]}/_sandbox/orders"
        (line,) = body["lines"]
        try:
            answer = await client.post(url, json=body, timeout=ORDER_TIMEOUT_S)
        except httpx.HTTPError as exc:
            self.tally.failed[channel] += 1
            log.warning("demo order on %s failed: %s", channel, type(exc).__name__)
            return None
        if answer.status_code in (200, 201):
            self.tally.placed[channel] += 1
            self.tally.held[channel][line["sku"]] += line["quantity"]
            order_id = answer.json().get("order_id")
            return str(order_id) if order_id is not None else None
        if answer.status_code == 409:
            self.tally.sold_out[channel] += 1
            if self.is_prevented(channel, line["sku"], line["quantity"]):
                self.tally.prevented[channel] += 1
        else:
            self.tally.failed[channel] += 1
            log.warning("demo order on %s refused: HTTP %s", channel, answer.status_code)
        return None

    async def cancel(
        self, client: httpx.AsyncClient, channel: str, order_id: str, line: Mapping[str, Any]
    ) -> None:
        """The buyer cancels an order on the marketplace where they placed it."""
        url = f"{self.sandboxes[channel]}/_sandbox/cancel"
        try:
            answer = await client.post(url, json={"order_id": order_id}, timeout=ORDER_TIMEOUT_S)
        except httpx.HTTPError as exc:
            self.tally.failed[channel] += 1
            log.warning("demo cancel on %s failed: %s", channel, type(exc).__name__)
            return
        if answer.status_code == 200:
            self.tally.cancelled[channel] += 1
            self.tally.held[channel][line["sku"]] -= line["quantity"]
        elif answer.status_code == 409:
            self.tally.cancel_refused[channel] += 1
        else:
            self.tally.failed[channel] += 1
            log.warning("demo cancel on %s refused: HTTP %s", channel, answer.status_code)

    async def _cancel_later(
        self,
        client: httpx.AsyncClient,
        stop: asyncio.Event,
        channel: str,
        order_id: str,
        line: Mapping[str, Any],
        delay_s: float,
    ) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay_s)
            return  # the demo ends first: the buyer keeps the order
        await self.cancel(client, channel, order_id, line)

    def _maybe_cancel(
        self, client: httpx.AsyncClient, stop: asyncio.Event, channel: str, order_id: str, body: Any
    ) -> None:
        if self.cancel_rng.random() >= self.cancel_share:
            return
        delay_s = self.cancel_rng.uniform(*self.cancel_after_s)
        (line,) = body["lines"]
        task = asyncio.create_task(
            self._cancel_later(client, stop, channel, order_id, line, delay_s), name="demo-cancel"
        )
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)

    async def run(self, stop: asyncio.Event) -> None:
        """Place orders until `stop` is set (then let the cancels under way finish)."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        async with httpx.AsyncClient(transport=self._transport) as client:
            while not stop.is_set():
                channel, body = self.next_order()
                order_id = await self.place(client, channel, body)
                if order_id is not None:
                    self._maybe_cancel(client, stop, channel, order_id, body)
                due = max(due + self.interval_s, loop.time() - self.interval_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=max(0.0, due - loop.time()))
            await asyncio.gather(*self._cancels, return_exceptions=True)
