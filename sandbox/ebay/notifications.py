"""Notification API push: every change a subscribed topic covers becomes one signed message,
POSTed by a background task to the configured endpoint.

The endpoint is checked first, as eBay checks a destination: `GET <endpoint>?challenge_code=X`
must answer 200 with `{"challengeResponse": hex(sha256(X + verification token + endpoint))}`;
nothing is delivered to an endpoint that has not passed (the check is retried before the next
delivery). A message is `{"metadata": {"topic", "schemaVersion", "deprecated"}, "notification":
{"notificationId", "eventDate", "publishDate", "publishAttemptCount", "data"}}`, signed anew at
each attempt (publishAttemptCount and publishDate change) in `X-EBAY-SIGNATURE`. A 2xx
acknowledges it; otherwise it is retried on the knobs' schedule, then failed. The knobs
(faults.py) drop, duplicate (same notificationId), mis-sign, delay and reorder deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from sandbox.ebay.faults import NotificationKnobs
from sandbox.ebay.model import Clock, iso
from sandbox.ebay.signing import SigningKeys, compact

TOPICS = frozenset({"ORDER_CONFIRMATION", "ITEM_MARKED_SHIPPED", "MARKETPLACE_ACCOUNT_DELETION"})
"""The topics the sandbox publishes."""
RECENT_DELIVERIES = 10_000


def challenge_response(challenge_code: str, verification_token: str, endpoint: str) -> str:
    """What an endpoint must answer to eBay's check."""
    digest = hashlib.sha256()
    for part in (challenge_code, verification_token, endpoint):
        digest.update(part.encode("utf-8"))
    return digest.hexdigest()


@dataclass
class Endpoint:
    """Where notifications go, and whether it passed the challenge."""

    url: str
    verification_token: str
    topics: frozenset[str] = TOPICS
    verified: bool = False
    last_check: str = "not checked"


@dataclass
class Delivery:
    """One message on its way."""

    number: int
    topic: str
    message: dict[str, Any]
    duplicate: bool = False
    forged: bool = False
    state: str = "pending"  # pending, delivered, failed, dropped
    attempts: int = 0
    statuses: list[int | str] = field(default_factory=list)

    @property
    def notification_id(self) -> str:
        """The message's notificationId (what receivers dedupe on)."""
        notification_id: str = self.message["notification"]["notificationId"]
        return notification_id

    def describe(self) -> dict[str, Any]:
        """For `/_sandbox/notifications` (no message: it carries buyer data)."""
        return {
            "number": self.number,
            "topic": self.topic,
            "notification_id": self.notification_id,
            "duplicate": self.duplicate,
            "forged": self.forged,
            "state": self.state,
            "attempts": self.attempts,
            "statuses": list(self.statuses),
        }


class NotificationDispatcher:
    """Turns account changes into signed messages and sends them in the background."""

    def __init__(
        self,
        keys: SigningKeys,
        *,
        knobs: Callable[[], NotificationKnobs],
        rng: random.Random,
        clock: Clock,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.keys = keys
        self.knobs = knobs
        self.rng = rng
        self.clock = clock
        self.transport = transport
        self.endpoint: Endpoint | None = None
        self.recent: deque[Delivery] = deque(maxlen=RECENT_DELIVERIES)
        self.counts: Counter[str] = Counter()
        self._numbers = iter(range(1, 1 << 62))
        self._backlog: list[tuple[Delivery, float]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._checking = asyncio.Lock()

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # ---- the endpoint -------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(transport=self.transport)
        return self._client

    async def configure(self, endpoint: Endpoint) -> Endpoint:
        """Use `endpoint` from now on, and check it at once."""
        self.endpoint = endpoint
        await self.check(endpoint)
        return endpoint

    async def check(self, endpoint: Endpoint) -> bool:
        """eBay's challenge against `endpoint`; whether it passed (kept on the endpoint)."""
        code = self._uuid()
        separator = "&" if "?" in endpoint.url else "?"
        try:
            response = await self._http().get(
                f"{endpoint.url}{separator}challenge_code={code}",
                timeout=self.knobs().timeout_s,
            )
        except httpx.HTTPError as err:
            endpoint.verified, endpoint.last_check = False, type(err).__name__
            return False
        expected = challenge_response(code, endpoint.verification_token, endpoint.url)
        try:
            answered = response.json().get("challengeResponse")
        except (ValueError, AttributeError):
            answered = None
        endpoint.verified = response.status_code == 200 and answered == expected
        endpoint.last_check = (
            "passed"
            if endpoint.verified
            else f"HTTP {response.status_code}, challengeResponse "
            + ("wrong" if answered else "missing")
        )
        self.counts["challenges"] += 1
        return endpoint.verified

    # ---- messages -----------------------------------------------------------------------

    def on_change(self, topic: str, data: dict[str, Any]) -> None:
        """A change: one message if the endpoint takes the topic (maybe dropped or doubled)."""
        endpoint = self.endpoint
        if endpoint is None or topic not in endpoint.topics:
            self.counts["unsubscribed"] += 1
            return
        now = iso(self.clock.now())
        message = {
            "metadata": {"topic": topic, "schemaVersion": "1.0", "deprecated": False},
            "notification": {
                "notificationId": f"{self._uuid()}_{self._uuid()}",
                "eventDate": now,
                "publishDate": now,
                "publishAttemptCount": 1,
                "data": data,
            },
        }
        knobs = self.knobs()
        delivery = Delivery(next(self._numbers), topic, message)
        delivery.forged = bool(knobs.bad_signature_rate) and (
            self.rng.random() < knobs.bad_signature_rate
        )
        self.recent.append(delivery)
        self.counts["created"] += 1
        if knobs.drop_rate and self.rng.random() < knobs.drop_rate:
            delivery.state = "dropped"
            self.counts["dropped"] += 1
            return
        self._schedule(delivery, knobs)
        if knobs.duplicate_rate and self.rng.random() < knobs.duplicate_rate:
            copy = replace(
                delivery,
                number=next(self._numbers),
                message=json.loads(json.dumps(message)),
                duplicate=True,
                statuses=[],
            )
            self.recent.append(copy)
            self.counts["duplicated"] += 1
            self._schedule(copy, knobs)

    def _schedule(self, delivery: Delivery, knobs: NotificationKnobs) -> None:
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

    def _body(self, delivery: Delivery, knobs: NotificationKnobs) -> tuple[bytes, str]:
        message = delivery.message
        signature = self.keys.sign(compact(message), forged=delivery.forged)
        if knobs.body_format == "compact":
            return compact(message), signature
        return json.dumps(message, indent=2, ensure_ascii=False).encode("utf-8"), signature

    async def _attempt(self, delivery: Delivery, knobs: NotificationKnobs) -> int | str:
        endpoint = self.endpoint
        if endpoint is None:
            return "no endpoint"
        if not endpoint.verified:
            async with self._checking:
                if not endpoint.verified and not await self.check(endpoint):
                    return "endpoint not verified"
        notification = delivery.message["notification"]
        notification["publishAttemptCount"] = delivery.attempts
        notification["publishDate"] = iso(self.clock.now())
        body, signature = self._body(delivery, knobs)
        headers = {"Content-Type": "application/json", "X-EBAY-SIGNATURE": signature}
        try:
            response = await self._http().post(
                endpoint.url, content=body, headers=headers, timeout=knobs.timeout_s
            )
        except httpx.HTTPError as err:
            return type(err).__name__
        return response.status_code

    async def _deliver(self, delivery: Delivery, wait: float) -> None:
        if wait:
            await asyncio.sleep(wait)
        while True:
            knobs = self.knobs()
            delivery.attempts += 1
            outcome = await self._attempt(delivery, knobs)
            delivery.statuses.append(outcome)
            if isinstance(outcome, int) and 200 <= outcome < 300:
                delivery.state = "delivered"
                self.counts["delivered"] += 1
                return
            retries = knobs.retry_delays_s
            if delivery.attempts > len(retries):
                delivery.state = "failed"
                self.counts["failed"] += 1
                return
            self.counts["retried"] += 1
            await asyncio.sleep(retries[delivery.attempts - 1])

    def describe(self, limit: int = RECENT_DELIVERIES) -> dict[str, Any]:
        """The endpoint, counts and the last `limit` deliveries, for `/_sandbox/notifications`."""
        endpoint = self.endpoint
        recent = list(self.recent)[-limit:] if limit else []
        return {
            "endpoint": None
            if endpoint is None
            else {
                "url": endpoint.url,
                "topics": sorted(endpoint.topics),
                "verified": endpoint.verified,
                "last_check": endpoint.last_check,
            },
            "current_kid": self.keys.current_kid,
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
