"""The Trading API (XML) through ebaysdk, run off the event loop, behind our quota, rate limiter
and retry policy.

ebaysdk is synchronous (requests + lxml), so each call runs in a worker thread on a Connection of
its own (a Connection keeps per-request state and is not safe to share between threads). It only
builds and sends the request (headers, the OAuth user token in X-EBAY-API-IAF-TOKEN, the XML
body); the answer is read here (trading_xml.py), since ebaysdk's own reading raises on anything
but a well-formed answer. Its own retries are off (our policy decides) and so are redirects (the
token header would follow them to another host). Its logger is held at WARNING: its DEBUG lines
print the request headers, token included.

Errors, by what to do next: HTTP status as the REST calls (connectors.http); in the XML, an
invalid or expired token -> renew once, then AuthError; the call quota spent (518) -> the quota
is marked spent and RateLimitedError until eBay's day ends; eBay's internal errors -> retry. The
request's own errors are in the answer for the caller to attribute to its items.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import requests
import urllib3
from ebaysdk.trading import Connection
from requests.adapters import BaseAdapter, HTTPAdapter

from connectors.ebay import const
from connectors.ebay.auth import TokenSource
from connectors.ebay.quota import QuotaBook
from connectors.ebay.trading_xml import TradingAnswer, parse_answer
from connectors.errors import (
    AuthError,
    ConnectorError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
)
from connectors.http import TokenBucket, raise_for_status, retry_policy

logging.getLogger("ebaysdk").setLevel(logging.WARNING)

Sleep = Callable[[float], Awaitable[None]]
AdapterFactory = Callable[[], BaseAdapter]


@dataclass(frozen=True)
class TradingSettings:
    """Where the Trading API is and who calls it."""

    url: str = const.TRADING_URL
    app_id: str = ""  # the application's client id (App ID)
    site_id: int = 0
    compatibility: str = const.TRADING_COMPATIBILITY
    timeout_s: float = const.TIMEOUT_S


class _QuotaSpentError(Exception):
    """eBay said the day's Trading calls are spent: leave the retry loop at once."""

    def __init__(self, error: RateLimitedError) -> None:
        super().__init__(str(error))
        self.error = error


def _transport_error(
    error: requests.RequestException, operation: str, channel: str
) -> ConnectorError:
    # The class name only: requests' messages quote the URL.
    name = type(error).__name__
    if isinstance(error, requests.exceptions.TooManyRedirects):
        return PermanentError(
            "the Trading API answered with a redirect, not followed",
            channel=channel,
            operation=operation,
        )
    cause = getattr(error.args[0], "reason", None) if error.args else None
    if isinstance(error, requests.exceptions.ConnectTimeout) or isinstance(
        cause, urllib3.exceptions.NewConnectionError
    ):
        return RetryableError(name, channel=channel, operation=operation)  # nothing was sent
    return UncertainOutcomeError(name, channel=channel, operation=operation)


class TradingClient:
    """One seller's Trading API endpoint."""

    def __init__(
        self,
        *,
        channel: str,
        settings: TradingSettings,
        tokens: TokenSource,
        quotas: QuotaBook,
        limiter: TokenBucket | None = None,
        adapter_factory: AdapterFactory | None = None,
        attempts: int = const.ATTEMPTS,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channel = channel
        self._settings = settings
        url = urlsplit(settings.url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError("the Trading API url must be an http(s) URL")
        self._scheme = url.scheme
        self._domain = url.netloc
        self._uri = url.path or "/ws/api.dll"
        self._tokens = tokens
        self.quotas = quotas
        rate, burst = const.TRADING_RATE
        self._limiter = limiter or TokenBucket(rate, burst, clock=clock, sleep=sleep)
        # Our retry policy decides; requests' own retries would hide failures from it.
        self._adapter_factory = adapter_factory or (lambda: HTTPAdapter(max_retries=0))
        self._attempts = attempts
        self._sleep = sleep

    async def call(
        self, verb: str, data: Mapping[str, Any], *, is_resendable: bool = True
    ) -> TradingAnswer:
        """Run one Trading call; answer its parsed reply (the caller reads its item errors)."""
        await self.quotas.admit(
            const.API_TRADING, sleep=self._sleep, channel=self.channel, operation=verb
        )
        policy = retry_policy(
            attempts=self._attempts,
            base=const.BACKOFF_BASE_S,
            cap=const.BACKOFF_CAP_S,
            retry_uncertain=is_resendable,
            sleep=self._sleep,
        )
        try:
            async for attempt in policy:
                with attempt:
                    return await self._once(verb, data, is_resendable)
        except _QuotaSpentError as spent:
            raise spent.error from None
        raise AssertionError("unreachable: the retry policy re-raises the last error")

    async def _once(self, verb: str, data: Mapping[str, Any], is_resendable: bool) -> TradingAnswer:
        token = await self._tokens.token()
        for is_renewed in (False, True):
            await self._limiter.acquire()
            self.quotas.record(const.API_TRADING)
            try:
                status, headers, content = await asyncio.to_thread(self._post, verb, data, token)
            except requests.RequestException as err:
                raise _transport_error(err, verb, self.channel) from err
            self._raise_for_status(status, headers, content, verb, is_resendable)
            answer = parse_answer(content, channel=self.channel, operation=verb)
            codes = {error.code for error in answer.blocking_errors}
            if codes & const.TRADING_AUTH_ERRORS:
                if is_renewed:
                    raise AuthError(
                        f"eBay refused the user token ({answer.summary()})",
                        channel=self.channel,
                        operation=verb,
                    )
                self._tokens.invalidate(token)
                token = await self._tokens.token()
                continue
            if codes & const.TRADING_QUOTA_ERRORS:
                self.quotas.mark_exhausted(const.API_TRADING)
                raise _QuotaSpentError(
                    RateLimitedError(
                        "eBay's daily Trading API call limit is reached",
                        retry_after=self.quotas.wait_for(const.API_TRADING),
                        channel=self.channel,
                        operation=verb,
                    )
                )
            if answer.is_failure and (
                codes & const.TRADING_RETRY_ERRORS
                or any(e.classification == "SystemError" for e in answer.blocking_errors)
            ):
                error_class = RetryableError if is_resendable else UncertainOutcomeError
                raise error_class(answer.summary(), channel=self.channel, operation=verb)
            return answer
        raise AssertionError("unreachable: the second refusal is raised")

    def _raise_for_status(
        self,
        status: int,
        headers: Mapping[str, str],
        content: bytes,
        verb: str,
        is_resendable: bool,
    ) -> None:
        try:
            raise_for_status(
                httpx.Response(status, headers=dict(headers), content=content),
                channel=self.channel,
                operation=verb,
            )
        except RetryableError as err:
            if type(err) is RetryableError and not is_resendable:
                raise UncertainOutcomeError(
                    err.args[0], retry_after=err.retry_after, channel=self.channel, operation=verb
                ) from err
            raise

    def _post(
        self, verb: str, data: Mapping[str, Any], token: str
    ) -> tuple[int, dict[str, str], bytes]:
        """Build and send one request with ebaysdk (in a worker thread)."""
        api = Connection(
            domain=self._domain,
            uri=self._uri,
            config_file=None,  # no YAML lookup: everything comes from here
            appid=self._settings.app_id,
            devid="",  # not needed with an OAuth token; the cert id is the client secret: not sent
            certid="",
            iaf_token=token,
            siteid=str(self._settings.site_id),
            compatibility=self._settings.compatibility,
            timeout=self._settings.timeout_s,
            errors=False,
            warnings=False,
            escape_xml=True,
        )
        # The Trading connection forces https on; a loopback sandbox speaks plain HTTP.
        api.config.set("https", self._scheme == "https", force=True)
        api.session.mount(f"{self._scheme}://", self._adapter_factory())
        api.session.max_redirects = 0
        try:
            api.build_request(verb, dict(data), None)
            api.execute_request()
            response: requests.Response = api.response
            return response.status_code, dict(response.headers), response.content
        finally:
            api.session.close()
