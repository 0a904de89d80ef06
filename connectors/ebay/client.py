"""eBay's REST APIs (Sell Fulfillment, Sell Inventory, Notification) over the shared HTTP layer.

Every call is admitted by the daily quota of its API family first (quota.py: a long pacing wait
goes back to the caller as RateLimitedError instead of holding a worker), then sent with the
seller's user token (or the application token for the Notification API) through a per-operation
rate limiter, and retried by the shared policy. A 401/403 renews the token once before it is an
AuthError: eBay may revoke a token before the expiry it announced.

Errors, by what to do next: 401/403 after a renewal -> AuthError; 429 -> RateLimitedError;
5xx and transport failures -> RetryableError for reads and idempotent writes,
UncertainOutcomeError for the others (eBay may have applied them: createShippingFulfillment);
404 -> NotFoundError; any other 4xx -> PermanentError with eBay's own message.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from connectors.ebay import const
from connectors.ebay.auth import TokenSource
from connectors.ebay.quota import QuotaBook
from connectors.errors import AuthError, RetryableError, UncertainOutcomeError
from connectors.http import QueryParams, RateLimiters, retry_policy, send

Sleep = Callable[[float], Awaitable[None]]


@contextmanager
def answer_shape(channel: str, operation: str, *, is_write: bool = False) -> Iterator[None]:
    """Reading an answer whose shape we do not know (a missing field, a null where an object
    was due): worth another try for a read; a write may have been applied."""
    try:
        yield
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as err:
        error_class = UncertainOutcomeError if is_write else RetryableError
        detail = (
            f"missing field {err.args[0]!r}" if isinstance(err, KeyError) else type(err).__name__
        )
        raise error_class(
            f"unexpected answer shape ({detail})", channel=channel, operation=operation
        ) from err


def json_body(response: httpx.Response, *, channel: str, operation: str) -> dict[str, Any]:
    """The JSON object of an answer ({} for an empty one); RetryableError when it is not JSON."""
    if not response.content.strip():
        return {}
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as err:
        raise RetryableError("answer is not JSON", channel=channel, operation=operation) from err
    if not isinstance(body, dict):
        raise RetryableError("answer is not a JSON object", channel=channel, operation=operation)
    return body


class EbayRestClient:
    """One seller's REST endpoints: quota, token, pacing, retries."""

    def __init__(
        self,
        *,
        channel: str,
        http: httpx.AsyncClient,
        user_tokens: TokenSource,
        app_tokens: TokenSource,
        quotas: QuotaBook,
        marketplace_id: str,
        limiters: RateLimiters | None = None,
        attempts: int = const.ATTEMPTS,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channel = channel
        self._http = http
        self._user_tokens = user_tokens
        self._app_tokens = app_tokens
        self.quotas = quotas
        self._marketplace_id = marketplace_id
        self._limiters = limiters or RateLimiters(
            {}, default=const.REST_RATE, clock=clock, sleep=sleep
        )
        self._attempts = attempts
        self._sleep = sleep

    async def call(
        self,
        method: str,
        path: str,
        *,
        api: str,
        operation: str,
        is_resendable: bool,
        params: QueryParams | None = None,
        body: object = None,
        use_app_token: bool = False,
        is_priority: bool = False,
    ) -> httpx.Response:
        """Send one call (retried when safe); answer the 2xx response."""
        await self.quotas.admit(
            api,
            sleep=self._sleep,
            channel=self.channel,
            operation=operation,
            is_priority=is_priority,
        )
        policy = retry_policy(
            attempts=self._attempts,
            base=const.BACKOFF_BASE_S,
            cap=const.BACKOFF_CAP_S,
            retry_uncertain=is_resendable,
            sleep=self._sleep,
        )
        async for attempt in policy:
            with attempt:
                return await self._once(
                    method,
                    path,
                    api=api,
                    operation=operation,
                    is_resendable=is_resendable,
                    params=params,
                    body=body,
                    tokens=self._app_tokens if use_app_token else self._user_tokens,
                )
        raise AssertionError("unreachable: the retry policy re-raises the last error")

    async def _once(
        self,
        method: str,
        path: str,
        *,
        api: str,
        operation: str,
        is_resendable: bool,
        params: QueryParams | None,
        body: object,
        tokens: TokenSource,
    ) -> httpx.Response:
        token = await tokens.token()
        for is_renewed in (False, True):
            headers = {
                "Authorization": f"Bearer {token}",
                const.MARKETPLACE_HEADER: self._marketplace_id,
                "Accept": "application/json",
            }
            self.quotas.record(api)
            try:
                return await send(
                    self._http,
                    method,
                    path,
                    channel=self.channel,
                    operation=operation,
                    limiter=self._limiters.bucket(self.channel, operation),
                    params=params,
                    headers=headers,
                    json=body,
                )
            except AuthError:
                if is_renewed:
                    raise
                tokens.invalidate(token)
                token = await tokens.token()
            except RetryableError as err:
                # A 5xx (raised without a transport cause) after a write reached eBay may have
                # been applied: only an idempotent call may be resent blindly.
                is_status = err.__cause__ is None and type(err) is RetryableError
                if is_status and not is_resendable:
                    raise UncertainOutcomeError(
                        err.args[0],
                        retry_after=err.retry_after,
                        channel=self.channel,
                        operation=operation,
                    ) from err
                raise
        raise AssertionError("unreachable: the second refusal is raised")

    async def get_json(
        self,
        path: str,
        *,
        api: str,
        operation: str,
        params: QueryParams | None = None,
        use_app_token: bool = False,
        is_priority: bool = False,
    ) -> dict[str, Any]:
        """GET and decode a JSON object."""
        response = await self.call(
            "GET",
            path,
            api=api,
            operation=operation,
            is_resendable=True,
            params=params,
            use_app_token=use_app_token,
            is_priority=is_priority,
        )
        return json_body(response, channel=self.channel, operation=operation)
