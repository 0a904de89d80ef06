"""A MockTransport handler that answers the connector's operations as the Admin API does.

Each operation is answered by a function of its variables (or a fixed `data`); every answer
carries `extensions.cost` with the bucket figures the test set. A fake clock drives pacing: the
connector's sleeps advance it, and are recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

Answer = dict[str, Any] | httpx.Response | Exception
TOKEN = "shpat_mock_4d1e"
BASE_URL = "https://demo-shop.myshopify.com"


class FakeClock:
    """Monotonic time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)


class FakeShop:
    """Answers by operation name; records every request with the fake time it was sent at."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.handlers: dict[str, Callable[[dict[str, Any]], Answer] | list[Answer]] = {}
        self.requests: list[httpx.Request] = []
        self.sent_at: list[float] = []
        self.throttle = {
            "maximumAvailable": 2000.0,
            "currentlyAvailable": 2000.0,
            "restoreRate": 100.0,
        }
        self.requested_cost = 10

    def on(self, name: str, answer: Callable[[dict[str, Any]], Answer] | Answer) -> None:
        """Answer `name` with `answer` (a function of the variables, or a fixed answer)."""
        self.handlers[name] = answer if callable(answer) else (lambda _v: answer)  # type: ignore[misc,return-value]

    def queue(self, name: str, *answers: Answer) -> None:
        """Answer `name` with these, one per call, in order."""
        self.handlers[name] = list(answers)

    def calls(self, name: str) -> list[dict[str, Any]]:
        """The variables of every call of `name`, in order."""
        return [b["variables"] for b in self.bodies() if b["operationName"] == name]

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    def cost(self) -> dict[str, Any]:
        return {
            "requestedQueryCost": self.requested_cost,
            "actualQueryCost": min(self.requested_cost, 10),
            "throttleStatus": dict(self.throttle),
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.sent_at.append(self.clock.now)
        body = json.loads(request.content)
        handler = self.handlers.get(body["operationName"])
        if handler is None:
            raise AssertionError(f"unexpected operation {body['operationName']}")
        answer = handler.pop(0) if isinstance(handler, list) else handler(body["variables"])
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        if "errors" in answer or "data" in answer:
            return httpx.Response(200, json={**answer, "extensions": {"cost": self.cost()}})
        return httpx.Response(200, json={"data": answer, "extensions": {"cost": self.cost()}})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def page(nodes: list[Any], *, more: bool = False, cursor: str | None = None) -> dict[str, Any]:
    """A connection as the Admin API answers it."""
    return {"pageInfo": {"hasNextPage": more, "endCursor": cursor}, "nodes": nodes}
