"""The reference marketplace's HTTP API, one method per operation, answering its raw JSON.

Every call goes through the shared HTTP layer: a token bucket per operation, `send()` mapping
statuses and transport failures onto the error tree, and a fresh tenacity policy that waits at
least the channel's Retry-After. Reads are resent after an unclear outcome; writes only when the
channel dedupes them (an idempotency key on an idempotent channel), else the engine decides.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from connectors.errors import UncertainOutcomeError
from connectors.http import QueryParams, RateLimiters, make_client, retry_policy, send
from connectors.reference.const import (
    API_PREFIX,
    ATTEMPTS,
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    IDEMPOTENCY_HEADER,
    RATE_LIMIT,
)

Sleep = Callable[[float], Awaitable[None]]


class ReferenceClient:
    """One channel account of the reference marketplace."""

    def __init__(
        self,
        *,
        channel: str,
        base_url: str,
        token: str,
        timeout_s: float,
        max_in_flight: int,
        transport: httpx.AsyncBaseTransport | None = None,
        attempts: int = ATTEMPTS,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.channel = channel
        self._http = make_client(
            base_url=base_url,
            channel=channel,
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            transport=transport,
        )
        self._limiters = RateLimiters({}, default=RATE_LIMIT, sleep=sleep)
        self._slots = asyncio.Semaphore(max_in_flight)
        self._attempts = attempts
        self._sleep = sleep

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        is_resendable: bool,
        params: QueryParams | None = None,
        body: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        bucket = self._limiters.bucket(self.channel, operation)
        policy = retry_policy(
            attempts=self._attempts,
            base=BACKOFF_BASE_S,
            cap=BACKOFF_CAP_S,
            retry_uncertain=is_resendable,
            sleep=self._sleep,
        )
        async for attempt in policy:
            with attempt:
                async with self._slots:
                    response = await send(
                        self._http,
                        method,
                        API_PREFIX + path,
                        channel=self.channel,
                        operation=operation,
                        limiter=bucket,
                        params=params,
                        json=body,
                        headers=headers,
                    )
                try:
                    return json.loads(response.content)
                except (ValueError, UnicodeDecodeError) as err:
                    # Answered 2xx but unreadable: it may well have been applied.
                    raise UncertainOutcomeError(
                        "answer is not JSON", channel=self.channel, operation=operation
                    ) from err
        raise AssertionError("unreachable: the retry policy re-raises the last error")

    async def get_account(self) -> Any:
        """GET /v1/account."""
        return await self._call("GET", "/account", "get_account", is_resendable=True)

    async def list_orders(self, updated_since: datetime, cursor: str | None, limit: int) -> Any:
        """GET /v1/orders: one page of orders updated at or after `updated_since`."""
        params: dict[str, str | int] = {"updated_since": updated_since.isoformat(), "limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        return await self._call("GET", "/orders", "list_orders", is_resendable=True, params=params)

    async def get_order(self, order_id: str) -> Any:
        """GET /v1/orders/{id}."""
        return await self._call("GET", _order_path(order_id), "get_order", is_resendable=True)

    async def set_stock(self, items: Sequence[Mapping[str, Any]]) -> Any:
        """POST /v1/stock: a batch of listings, answered item by item."""
        return await self._call(
            "POST", "/stock", "set_stock", is_resendable=False, body={"items": list(items)}
        )

    async def get_stock(self, listing_refs: Sequence[str]) -> Any:
        """GET /v1/stock?listing=...: what these listings hold now."""
        return await self._call(
            "GET", "/stock", "get_stock", is_resendable=True, params={"listing": list(listing_refs)}
        )

    async def list_listings(self, cursor: str | None, limit: int) -> Any:
        """GET /v1/listings: one page of listings."""
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        return await self._call(
            "GET", "/listings", "list_listings", is_resendable=True, params=params
        )

    async def create_fulfillment(
        self, order_id: str, body: Mapping[str, Any], *, key: str, is_deduped: bool
    ) -> Any:
        """POST /v1/orders/{id}/fulfillments with our key; resent on an unclear outcome only
        when the channel dedupes on it (`is_deduped`)."""
        return await self._call(
            "POST",
            f"{_order_path(order_id)}/fulfillments",
            "create_fulfillment",
            is_resendable=is_deduped,
            body=body,
            headers={IDEMPOTENCY_HEADER: key},
        )

    async def list_fulfillments(self, order_id: str) -> Any:
        """GET /v1/orders/{id}/fulfillments."""
        return await self._call(
            "GET", f"{_order_path(order_id)}/fulfillments", "list_fulfillments", is_resendable=True
        )

    async def cancel_order(
        self, order_id: str, body: Mapping[str, Any], *, key: str, is_deduped: bool
    ) -> Any:
        """POST /v1/orders/{id}/cancel with our key."""
        return await self._call(
            "POST",
            f"{_order_path(order_id)}/cancel",
            "cancel_order",
            is_resendable=is_deduped,
            body=body,
            headers={IDEMPOTENCY_HEADER: key},
        )


def _order_path(order_id: str) -> str:
    # An id is one path segment whatever it holds ("/" included).
    return f"/orders/{quote(order_id, safe='')}"
