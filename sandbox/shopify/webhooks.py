"""Webhook delivery: every store change with a subscribed topic becomes one delivery per
subscription, POSTed by a background task, signed as Shopify signs
(`X-Shopify-Hmac-Sha256` = base64 HMAC-SHA256 of the raw body with the app's client secret).

A delivery is answered in time by a 2xx or retried on the knobs' schedule with the same body,
webhook id and event id; one that exhausts its retries is failed, and its subscription deleted
(Shopify deletes API-made subscriptions after repeated failures). The knobs (faults.py) drop,
duplicate, delay and reorder deliveries. Bodies are rendered when the change happens, so a late
or retried delivery carries the state of its moment, as Shopify's do.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import random
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from sandbox.shopify.faults import WebhookKnobs
from sandbox.shopify.model import Clock
from sandbox.shopify.payloads import PayloadRenderer
from sandbox.shopify.store import ShopStore

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 20  # deliveries being posted at once; the rest wait their turn

TOPIC_ENUMS = {
    "orders/create": "ORDERS_CREATE",
    "orders/updated": "ORDERS_UPDATED",
    "orders/cancelled": "ORDERS_CANCELLED",
    "orders/fulfilled": "ORDERS_FULFILLED",
    "orders/partially_fulfilled": "ORDERS_PARTIALLY_FULFILLED",
    "fulfillments/create": "FULFILLMENTS_CREATE",
    "inventory_levels/update": "INVENTORY_LEVELS_UPDATE",
    "app/uninstalled": "APP_UNINSTALLED",
}
"""REST topic names (X-Shopify-Topic) -> WebhookSubscriptionTopic, for what the sandbox emits."""

RECENT_DELIVERIES = 10_000
"""How many deliveries `/_sandbox/webhooks` remembers."""


def sign(secret: str, body: bytes) -> str:
    """The X-Shopify-Hmac-Sha256 value of a body."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass
class Delivery:
    """One webhook on its way to one subscription's address."""

    number: int
    subscription_id: int
    topic: str
    uri: str
    api_version: str
    body: bytes
    webhook_id: str
    event_id: str
    triggered_at: str
    duplicate: bool = False
    state: str = "pending"  # pending, delivered, failed, dropped
    attempts: int = 0
    statuses: list[int | str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """For `/_sandbox/webhooks` (no body: it carries buyer data)."""
        return {
            "number": self.number,
            "topic": self.topic,
            "uri": self.uri,
            "webhook_id": self.webhook_id,
            "event_id": self.event_id,
            "triggered_at": self.triggered_at,
            "duplicate": self.duplicate,
            "state": self.state,
            "attempts": self.attempts,
            "statuses": list(self.statuses),
        }


class WebhookDispatcher:
    """Turns store changes into signed deliveries and sends them in the background."""

    def __init__(
        self,
        store: ShopStore,
        renderer: PayloadRenderer,
        *,
        secret: str,
        knobs: Callable[[], WebhookKnobs],
        rng: random.Random,
        clock: Clock,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store = store
        self.renderer = renderer
        self.secret = secret
        self.knobs = knobs
        self.rng = rng
        self.clock = clock
        self.transport = transport
        self.recent: deque[Delivery] = deque(maxlen=RECENT_DELIVERIES)
        self.counts: Counter[str] = Counter()
        self._numbers = iter(range(1, 1 << 62))
        self._backlog: list[tuple[Delivery, float]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        # Shopify sends from many workers, not from one process all at once: a thousand posts in
        # flight on one client would spend this event loop on connection-pool bookkeeping and
        # starve the API and the control routes.
        self._sending = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._idle = asyncio.Event()
        self._idle.set()
        store.listeners.append(self.on_change)

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def on_change(self, topic: str, resource: object) -> None:
        """A store change: one delivery per subscription to its topic (some dropped or doubled)."""
        enum_name = TOPIC_ENUMS.get(topic)
        targets = [s for s in self.store.subscriptions.values() if s.topic == enum_name]
        if not targets:
            return
        payload = self.renderer.render(topic, resource)
        triggered_at = self.clock.now().isoformat().replace("+00:00", "Z")
        knobs = self.knobs()
        for subscription in targets:
            shown = payload
            if subscription.include_fields:
                shown = {k: v for k, v in payload.items() if k in subscription.include_fields}
            delivery = Delivery(
                number=next(self._numbers),
                subscription_id=subscription.id,
                topic=topic,
                uri=subscription.uri,
                api_version=subscription.api_version,
                body=json.dumps(shown, separators=(",", ":")).encode("utf-8"),
                webhook_id=self._uuid(),
                event_id=self._uuid(),
                triggered_at=triggered_at,
            )
            self.recent.append(delivery)
            self.counts["created"] += 1
            if knobs.drop_rate and self.rng.random() < knobs.drop_rate:
                delivery.state = "dropped"
                self.counts["dropped"] += 1
                continue
            self._schedule(delivery, knobs)
            if knobs.duplicate_rate and self.rng.random() < knobs.duplicate_rate:
                copy = replace(
                    delivery,
                    number=next(self._numbers),
                    webhook_id=self._uuid(),
                    duplicate=True,
                    statuses=[],
                )
                self.recent.append(copy)
                self.counts["duplicated"] += 1
                self._schedule(copy, knobs)

    def _schedule(self, delivery: Delivery, knobs: WebhookKnobs) -> None:
        wait = knobs.delay_s + (self.rng.uniform(0.0, knobs.jitter_s) if knobs.jitter_s else 0.0)
        self._idle.clear()
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no event loop yet: start() sends these
            self._backlog.append((delivery, wait))
            return
        self._start(delivery, wait)

    def _start(self, delivery: Delivery, wait: float) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(delivery, wait))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks and not self._backlog:
            self._idle.set()

    def start(self) -> None:
        """Send what was queued before the event loop ran (call from inside the loop)."""
        backlog, self._backlog = self._backlog, []
        for delivery, wait in backlog:
            self._start(delivery, wait)

    async def wait_idle(self) -> None:
        """Until no delivery is pending (or retrying)."""
        await self._idle.wait()

    def _headers(self, delivery: Delivery) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "User-Agent": "Shopify-Captain-Hook",
            "X-Shopify-Topic": delivery.topic,
            "X-Shopify-Hmac-Sha256": sign(self.secret, delivery.body),
            "X-Shopify-Shop-Domain": self.store.domain,
            "X-Shopify-API-Version": delivery.api_version,
            "X-Shopify-Webhook-Id": delivery.webhook_id,
            "X-Shopify-Event-Id": delivery.event_id,
            "X-Shopify-Triggered-At": delivery.triggered_at,
        }

    async def _deliver(self, delivery: Delivery, wait: float) -> None:
        if wait:
            await asyncio.sleep(wait)
        if self._client is None:
            self._client = httpx.AsyncClient(transport=self.transport)
        while True:
            knobs = self.knobs()
            delivery.attempts += 1
            try:
                async with self._sending:
                    response = await self._client.post(
                        delivery.uri,
                        content=delivery.body,
                        headers=self._headers(delivery),
                        timeout=knobs.timeout_s,
                    )
                outcome: int | str = response.status_code
            except httpx.HTTPError as err:
                outcome = type(err).__name__
            delivery.statuses.append(outcome)
            if isinstance(outcome, int) and 200 <= outcome < 300:
                delivery.state = "delivered"
                self.counts["delivered"] += 1
                return
            retries = knobs.retry_delays_s
            if delivery.attempts > len(retries):
                self._give_up(delivery, knobs)
                return
            self.counts["retried"] += 1
            await asyncio.sleep(retries[delivery.attempts - 1])

    def _give_up(self, delivery: Delivery, knobs: WebhookKnobs) -> None:
        delivery.state = "failed"
        self.counts["failed"] += 1
        if knobs.remove_failing_subscriptions:
            removed = self.store.subscriptions.pop(delivery.subscription_id, None)
            if removed is not None:
                log.warning(
                    "webhook subscription %s (%s) deleted after %d failed attempts",
                    removed.id,
                    delivery.topic,
                    delivery.attempts,
                )

    def describe(self, limit: int = RECENT_DELIVERIES) -> dict[str, Any]:
        """Counts and the last `limit` deliveries, for `/_sandbox/webhooks`."""
        recent = list(self.recent)[-limit:] if limit else []
        return {
            "counts": dict(sorted(self.counts.items())),
            "pending": sum(1 for d in self.recent if d.state == "pending"),
            "deliveries": [d.describe() for d in recent],
        }

    async def aclose(self) -> None:
        """Stop sending: cancel pending deliveries, close the HTTP client."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._backlog.clear()
        self._idle.set()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
