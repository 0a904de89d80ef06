"""The Admin GraphQL API over the shared HTTP layer: one POST per operation, paced by query cost.

Shopify meters an app on each shop with a leaky bucket of cost points; every answer carries
`extensions.cost` with the requested and actual cost and the bucket's live `throttleStatus`. The
client keeps one TokenBucket per channel, refreshed from those figures, and takes a query's
requested cost from it before sending, so it waits for room instead of collecting THROTTLED
answers. A THROTTLED answer (HTTP 200) or an HTTP 429 still happens (another app, a restart):
both are RateLimitedError with the wait Shopify's figures give, retried here a few times.

Errors, by what to do next: 401/403 and ACCESS_DENIED -> AuthError; THROTTLED and 429 ->
RateLimitedError; 5xx, INTERNAL_SERVER_ERROR and transport failures -> RetryableError for reads,
UncertainOutcomeError for writes (the shop may have applied them); any other GraphQL error ->
PermanentError with Shopify's messages. A mutation's `userErrors` are for the caller to read
(`raise_for_user_errors`), since some of them (a stale compare-and-swap) are answers, not failures.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.errors import (
    AuthError,
    ConnectorError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
)
from connectors.http import REASON_LIMIT, TokenBucket, make_client, retry_policy, send
from connectors.shopify.const import (
    ACCESS_DENIED,
    ATTEMPTS,
    BACKGROUND_RESERVE,
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    CONNECT_TIMEOUT_S,
    GRAPHQL_PATH,
    INITIAL_BUCKET,
    INITIAL_RESTORE_RATE,
    INTERNAL_ERROR,
    THROTTLED,
    TIMEOUT_S,
    TOKEN_HEADER,
    Operation,
)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

# A THROTTLED answer without figures (not seen from Shopify, but a proxy or sandbox may): wait
# about what one second of the smallest plan restores.
_UNKNOWN_THROTTLE_WAIT_S = 1.0


@dataclass(frozen=True)
class ThrottleStatus:
    """The shop's cost bucket as its last answer reported it."""

    maximum_available: float
    currently_available: float
    restore_rate: float


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _excerpt(parts: Sequence[str]) -> str:
    text = " ".join("; ".join(parts).split())
    return text if len(text) <= REASON_LIMIT else text[: REASON_LIMIT - 1] + "…"


def user_errors(payload: object, key: str = "userErrors") -> list[str]:
    """A mutation payload's user errors as "CODE: message" strings (Shopify's words, no input
    values: Shopify's messages name fields, not what was sent)."""
    if not isinstance(payload, Mapping):
        return []
    found = []
    for item in payload.get(key) or ():
        if isinstance(item, Mapping):
            code = item.get("code")
            message = str(item.get("message") or "refused")
            found.append(f"{code}: {message}" if isinstance(code, str) and code else message)
    return found


def raise_for_user_errors(
    payload: object, *, channel: str, operation: str, key: str = "userErrors"
) -> None:
    """PermanentError carrying Shopify's messages when the mutation answered user errors."""
    messages = user_errors(payload, key)
    if messages:
        reason = _excerpt(messages)
        raise PermanentError(reason, reason=reason, channel=channel, operation=operation)


@contextmanager
def answer_shape(channel: str, operation: str, *, is_write: bool = False) -> Iterator[None]:
    """Reading an answer whose shape we do not know (a missing field, a null where an object
    was due): worth another try for a read; a write may have been applied."""
    try:
        yield
    except (KeyError, TypeError, AttributeError, IndexError) as err:
        error_class = UncertainOutcomeError if is_write else RetryableError
        detail = (
            f"missing field {err.args[0]!r}" if isinstance(err, KeyError) else type(err).__name__
        )
        raise error_class(
            f"unexpected answer shape ({detail})", channel=channel, operation=operation
        ) from err


class ShopifyClient:
    """One shop's Admin GraphQL endpoint, for one channel."""

    def __init__(
        self,
        *,
        channel: str,
        base_url: str,
        token: str,
        transport: httpx.AsyncBaseTransport | None = None,
        attempts: int = ATTEMPTS,
        timeout_s: float = TIMEOUT_S,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self.channel = channel
        self._http = make_client(
            base_url=base_url.rstrip("/"),
            channel=channel,
            timeout=httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s)),
            headers={TOKEN_HEADER: token, "Accept": "application/json"},
            transport=transport,
        )
        self._bucket = TokenBucket(INITIAL_RESTORE_RATE, INITIAL_BUCKET, clock=clock, sleep=sleep)
        self._costs: dict[str, float] = {}
        self._attempts = attempts
        self._sleep = sleep
        self.throttle_status: ThrottleStatus | None = None

    @property
    def bucket(self) -> TokenBucket:
        """Our copy of the shop's cost bucket (for tests and status)."""
        return self._bucket

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def execute(
        self,
        operation: Operation,
        variables: Mapping[str, Any] | None = None,
        *,
        is_resendable: bool | None = None,
    ) -> dict[str, Any]:
        """Run one operation and answer its `data`; queries (and mutations carrying an
        idempotency key: pass `is_resendable=True`) are resent after an unclear outcome."""
        resendable = (not operation.is_mutation) if is_resendable is None else is_resendable
        policy = retry_policy(
            attempts=self._attempts,
            base=BACKOFF_BASE_S,
            cap=BACKOFF_CAP_S,
            retry_uncertain=resendable,
            sleep=self._sleep,
        )
        async for attempt in policy:
            with attempt:
                return await self._execute_once(operation, variables or {}, resendable)
        raise AssertionError("unreachable: the retry policy re-raises the last error")

    async def _execute_once(
        self, operation: Operation, variables: Mapping[str, Any], resendable: bool
    ) -> dict[str, Any]:
        name = operation.name
        cost = self._costs.get(name, float(operation.cost))
        # Never ask our bucket for more than it can hold: Shopify's own check is against the
        # requested cost, and a query over the bucket size would wait forever here.
        tokens = max(1.0, min(cost, self._bucket.burst))
        try:
            response = await send(
                self._http,
                "POST",
                GRAPHQL_PATH,
                channel=self.channel,
                operation=name,
                limiter=self._bucket,
                tokens=tokens,
                reserve=BACKGROUND_RESERVE if operation.is_background else 0.0,
                json={"query": operation.document, "operationName": name, "variables": variables},
            )
        except ValueError as err:
            # Our bucket shrank below this query's cost while it waited (the shop's live figures
            # said so): nothing was sent; take the new figures on the next attempt.
            raise RateLimitedError(
                "cost bucket shrank while waiting",
                retry_after=0.0,
                channel=self.channel,
                operation=name,
            ) from err
        except RetryableError as err:
            # A 5xx (raised without a transport cause) after a write reached Shopify may have
            # been applied: only an idempotent write may be resent blindly.
            is_status = err.__cause__ is None and type(err) is RetryableError
            if is_status and not resendable:
                raise UncertainOutcomeError(
                    err.args[0], retry_after=err.retry_after, channel=self.channel, operation=name
                ) from err
            raise
        try:
            body = json.loads(response.content)
        except (ValueError, UnicodeDecodeError) as err:
            raise self._unclear("answer is not JSON", name, resendable) from err
        if not isinstance(body, Mapping):
            raise self._unclear("answer is not a JSON object", name, resendable)
        self._observe(name, body.get("extensions"))
        errors = body.get("errors")
        if errors:
            raise self._graphql_error(errors, name, resendable, cost)
        data = body.get("data")
        if not isinstance(data, dict):
            raise self._unclear("answer has no data", name, resendable)
        return data

    def _unclear(self, message: str, operation: str, resendable: bool) -> ConnectorError:
        error_class = RetryableError if resendable else UncertainOutcomeError
        return error_class(message, channel=self.channel, operation=operation)

    def _observe(self, operation: str, extensions: object) -> None:
        cost = extensions.get("cost") if isinstance(extensions, Mapping) else None
        if not isinstance(cost, Mapping):
            return
        requested = _number(cost.get("requestedQueryCost"))
        if requested is not None and requested > 0:
            self._costs[operation] = requested
        status = cost.get("throttleStatus")
        if not isinstance(status, Mapping):
            return
        maximum = _number(status.get("maximumAvailable"))
        current = _number(status.get("currentlyAvailable"))
        rate = _number(status.get("restoreRate"))
        if maximum is None or current is None or rate is None or maximum <= 0 or rate <= 0:
            return
        self.throttle_status = ThrottleStatus(maximum, current, rate)
        self._bucket.update(rate=rate, burst=maximum, available=current)

    def _graphql_error(
        self, errors: object, operation: str, resendable: bool, cost: float
    ) -> ConnectorError:
        items = errors if isinstance(errors, list) else [errors]
        codes: list[str] = []
        messages: list[str] = []
        for item in items:
            if isinstance(item, Mapping):
                extensions = item.get("extensions")
                code = extensions.get("code") if isinstance(extensions, Mapping) else None
                if isinstance(code, str):
                    codes.append(code)
                message = str(item.get("message") or "error")
                messages.append(f"{code}: {message}" if isinstance(code, str) else message)
            else:
                messages.append(str(item))
        reason = _excerpt(messages) or "GraphQL error"
        if THROTTLED in codes:
            return RateLimitedError(
                reason,
                retry_after=self._throttle_wait(operation, cost),
                channel=self.channel,
                operation=operation,
            )
        if ACCESS_DENIED in codes:
            return AuthError(reason, channel=self.channel, operation=operation)
        if INTERNAL_ERROR in codes:
            return self._unclear(reason, operation, resendable)
        return PermanentError(reason, reason=reason, channel=self.channel, operation=operation)

    def _throttle_wait(self, operation: str, cost: float) -> float:
        status = self.throttle_status
        if status is None:
            self._bucket.penalize(_UNKNOWN_THROTTLE_WAIT_S)
            return _UNKNOWN_THROTTLE_WAIT_S
        needed = min(self._costs.get(operation, cost), status.maximum_available)
        return max(0.0, (needed - status.currently_available) / status.restore_rate)
