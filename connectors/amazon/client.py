"""One seller's Selling Partner API: each operation paced, retried and mapped onto the error tree.

Every call goes `call(operation, request)`: `request` runs one of the package's methods (sdk.py
wires them to our transport), inside a fresh tenacity policy, with the seller's token bucket for
that operation. Buckets are shared by every connector in the process that speaks for the same
seller in the same region, because Amazon counts per selling partner, not per channel file.

Errors, by what to do next: 429 -> RateLimitedError (Amazon sends no Retry-After: the bucket is
emptied and backoff applies); 5xx and transport failures -> RetryableError for reads and
idempotent writes, UncertainOutcomeError for confirmShipment (Amazon may have applied it); 400 ->
PermanentError with Amazon's `errors[].message`; 404 -> NotFoundError; 401/403 -> the cached
access token is dropped and the call made once more, then AuthError. Login with Amazon refusing
the refresh token is AuthError at once, and for AUTH_FAILURE_HOLD_S every call fails fast with it
instead of asking again (check_connection always asks).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from sp_api.base.exceptions import SellingApiException
from tenacity import AsyncRetrying

from connectors.amazon import const
from connectors.amazon.sdk import (
    Exchange,
    SdkApis,
    build_apis,
    current_exchange,
    forget_token,
    reserve_token_cache,
)
from connectors.errors import (
    AuthError,
    ConnectorError,
    PermanentError,
    RetryableError,
    UncertainOutcomeError,
)
from connectors.http import RateLimiters, TokenBucket, make_client, retry_policy, send

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
Json = dict[str, Any]

_SHARED_LIMITERS = RateLimiters(const.PACED_LIMITS)
"""The process's buckets, keyed by seller: two channel files of one seller share them."""


@contextmanager
def answer_shape(channel: str, operation: str, *, is_write: bool = False) -> Iterator[None]:
    """Reading an answer whose shape is not the model's (a field missing, a null where an object
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


@dataclass(frozen=True)
class Credentials:
    """A seller's Login with Amazon credentials."""

    client_id: str
    client_secret: str
    refresh_token: str

    def __repr__(self) -> str:
        return f"Credentials(client_id={self.client_id!r}, client_secret='**********', ...)"


@dataclass(frozen=True)
class Endpoints:
    """Where the seller's region answers (or a loopback sandbox)."""

    api: str
    token: str = const.LWA_TOKEN_URL


class AmazonClient:
    """One seller's SP-API, for one channel."""

    def __init__(
        self,
        *,
        channel: str,
        seller_id: str,
        region: str,
        marketplace_ids: tuple[str, ...],
        credentials: Credentials,
        endpoints: Endpoints,
        transport: httpx.AsyncBaseTransport | None = None,
        limiters: RateLimiters | None = None,
        attempts: int = const.ATTEMPTS,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        if not marketplace_ids:
            raise ValueError("an Amazon channel needs at least one marketplace id")
        self.channel = channel
        self.seller_id = seller_id
        self.marketplace_ids = marketplace_ids
        self._limiters = limiters or _SHARED_LIMITERS
        self._bucket_owner = f"{region}:{seller_id}"
        self._refresh_token = credentials.refresh_token
        self._attempts = attempts
        self._sleep = sleep
        self._clock = clock
        self._auth_failure: tuple[AuthError, float] | None = None
        self.http = make_client(
            base_url=endpoints.api.rstrip("/"),
            channel=channel,
            timeout=httpx.Timeout(const.TIMEOUT_S, connect=const.CONNECT_TIMEOUT_S),
            headers={"Accept": "application/json"},
            transport=transport,
        )
        if credentials.refresh_token:
            reserve_token_cache(credentials.refresh_token)
        self.apis: SdkApis = build_apis(
            channel=channel,
            http=self.http,
            endpoint=endpoints.api.rstrip("/"),
            token_url=endpoints.token,
            client_id=credentials.client_id,
            client_secret=credentials.client_secret,
            refresh_token=credentials.refresh_token,
            marketplace_id=marketplace_ids[0],
            lwa_limiter=self.bucket(const.LWA_TOKEN),
        )

    def bucket(self, operation: str) -> TokenBucket:
        """This seller's token bucket for `operation`."""
        return self._limiters.bucket(self._bucket_owner, operation)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    # Calls -----------------------------------------------------------------------------------

    async def call(
        self,
        operation: str,
        request: Callable[[SdkApis], Awaitable[object]],
        *,
        is_resendable: bool = True,
        reserve: float = 0.0,
    ) -> Json:
        """Run one package call as `operation`; answer Amazon's JSON body ({} when empty).

        `is_resendable`: a read or an idempotent write, safe to send again after an unclear
        outcome; confirmShipment is not, and comes back UncertainOutcomeError instead.
        `reserve`: tokens of the operation's bucket this call leaves to calls without one
        (`TokenBucket.acquire`).
        """
        self._raise_held_auth_failure()
        policy = retry_policy(
            attempts=self._attempts,
            base=const.BACKOFF_BASE_S,
            cap=const.BACKOFF_CAP_S,
            retry_uncertain=is_resendable,
            sleep=self._sleep,
        )
        async for attempt in policy:
            with attempt:
                return await self._call_once(operation, request, is_resendable, reserve)
        raise AssertionError("unreachable: the retry policy re-raises the last error")

    async def _call_once(
        self,
        operation: str,
        request: Callable[[SdkApis], Awaitable[object]],
        is_resendable: bool,
        reserve: float,
    ) -> Json:
        for is_last in (False, True):
            try:
                response = await self._exchange(operation, request, is_resendable, reserve)
            except AuthError as err:
                if err.operation == const.LWA_TOKEN:
                    self._auth_failure = (err, self._clock())
                    raise
                if is_last:
                    raise
                # An access token Amazon no longer takes (expired early, revoked): the next
                # try fetches a fresh one; a refusal then is the real answer.
                forget_token(self._refresh_token)
                continue
            return self._body(operation, response, is_resendable)
        raise AssertionError("unreachable")

    async def _exchange(
        self,
        operation: str,
        request: Callable[[SdkApis], Awaitable[object]],
        is_resendable: bool,
        reserve: float,
    ) -> httpx.Response:
        self._require_refresh_token()
        exchange = Exchange(operation, self.bucket(operation), reserve)
        token = current_exchange.set(exchange)
        try:
            await request(self.apis)
        except RetryableError as err:
            is_answer = type(err) is RetryableError and err.__cause__ is None
            if not is_resendable and is_answer and err.operation != const.LWA_TOKEN:
                # A 5xx after a write reached Amazon: it may have been applied. (One from the
                # token endpoint came before the write was sent.)
                raise UncertainOutcomeError(
                    err.args[0],
                    retry_after=err.retry_after,
                    channel=self.channel,
                    operation=operation,
                ) from err
            raise
        except ConnectorError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            # The package choked on an answer (a token reply that is not JSON, a body it could
            # not read): Amazon answered something unexpected. Before our request went out
            # (no response yet), nothing can have been applied.
            is_sent = exchange.response is not None
            error_class = UncertainOutcomeError if is_sent and not is_resendable else RetryableError
            raise error_class(
                f"unreadable answer ({type(err).__name__})",
                channel=self.channel,
                operation=operation,
            ) from err
        except SellingApiException as err:
            # The package raises its own exceptions only for a 2xx answer carrying `errors`
            # (every other status was raised by our transport before it looked).
            raise PermanentError(
                _package_reason(err), channel=self.channel, operation=operation
            ) from err
        finally:
            current_exchange.reset(token)
        if exchange.response is None:
            raise RuntimeError(f"{operation}: the package made no request")
        return exchange.response

    def _body(self, operation: str, response: httpx.Response, is_resendable: bool) -> Json:
        if not response.content.strip():
            return {}
        try:
            body = json.loads(response.content)
        except (ValueError, UnicodeDecodeError) as err:
            error_class = RetryableError if is_resendable else UncertainOutcomeError
            raise error_class(
                "answer is not JSON", channel=self.channel, operation=operation
            ) from err
        if not isinstance(body, dict):
            error_class = RetryableError if is_resendable else UncertainOutcomeError
            raise error_class(
                "answer is not a JSON object", channel=self.channel, operation=operation
            )
        return body

    def _require_refresh_token(self) -> None:
        if not self._refresh_token:
            raise AuthError(
                "no refresh token configured: authorise the app for this seller and set "
                "refresh_token in the channel file",
                channel=self.channel,
                operation=const.LWA_TOKEN,
            )

    def _raise_held_auth_failure(self) -> None:
        if self._auth_failure is None:
            return
        error, at = self._auth_failure
        if self._clock() - at >= const.AUTH_FAILURE_HOLD_S:
            self._auth_failure = None
            return
        raise AuthError(error.args[0], channel=self.channel, operation=error.operation)

    async def check_auth(self) -> None:
        """Ask Login with Amazon for an access token now, even after a refusal; AuthError if it
        refuses."""
        self._auth_failure = None
        self._require_refresh_token()
        forget_token(self._refresh_token)
        async for attempt in self._plain_policy():
            with attempt:
                try:
                    await self.apis.auth.get_auth()
                except AuthError as err:
                    self._auth_failure = (err, self._clock())
                    raise
                except (ValueError, KeyError, TypeError) as err:
                    raise RetryableError(
                        "unreadable token answer", channel=self.channel, operation=const.LWA_TOKEN
                    ) from err
                return

    # Documents on S3 (presigned URLs: no SP-API token, no SP-API bucket) --------------------

    async def upload_document(self, url: str, content: bytes, content_type: str) -> None:
        """PUT a feed document's bytes to the presigned URL createFeedDocument answered."""
        async for attempt in self._plain_policy():
            with attempt:
                await send(
                    self.http,
                    "PUT",
                    url,
                    channel=self.channel,
                    operation=const.UPLOAD_FEED_DOCUMENT,
                    limiter=None,
                    content=content,
                    headers={"Content-Type": content_type},
                )
                return

    async def download_document(
        self, url: str, operation: str = const.DOWNLOAD_FEED_DOCUMENT
    ) -> bytes:
        """GET a document from the presigned URL getFeedDocument or getReportDocument answered."""
        async for attempt in self._plain_policy():
            with attempt:
                response = await send(
                    self.http,
                    "GET",
                    url,
                    channel=self.channel,
                    operation=operation,
                    limiter=None,
                )
                return response.content
        raise AssertionError("unreachable: the retry policy re-raises the last error")

    def _plain_policy(self) -> AsyncRetrying:
        # Token requests, a PUT of the same bytes, a GET: all safe to send again.
        return retry_policy(
            attempts=self._attempts,
            base=const.BACKOFF_BASE_S,
            cap=const.BACKOFF_CAP_S,
            retry_uncertain=True,
            sleep=self._sleep,
        )


def _package_reason(err: Exception) -> str:
    errors = getattr(err, "error", None)
    if isinstance(errors, list):
        parts = [
            f"{item.get('code')}: {item.get('message')}"
            for item in errors
            if isinstance(item, dict) and item.get("message")
        ]
        if parts:
            return "; ".join(parts)[:300]
    return type(err).__name__
