"""The python-amazon-sp-api package, wired to the shared HTTP layer.

The package's asyncio clients build each request (path, query, body, the LWA access token in
`x-amz-access-token`) and keep the token cache; they never send one themselves. Their transport is
replaced by `SdkTransport`, which hands every request to `connectors.http.send`: our token bucket
for (seller, operation), our error mapping, our redacted logging, our client's timeouts. Retries
happen one level up (client.py) with tenacity; the package's own retry decorators share one
counter per function across concurrent calls, and none of them is used.

Which operation a request belongs to (for its bucket) and the raw answer it got travel in an
`Exchange` held in a context variable, set by the caller for exactly one package call: the
package's `ApiResponse` reshapes answers (it lifts `pagination` out of the body, for one), and the
mapper reads Amazon's JSON as the models define it.

The token cache is module-global in the package (10 entries by default, env-sized at import);
`reserve_token_cache` grows it to the sellers configured in this process.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from cachetools import TTLCache
from sp_api.asyncio.api.feeds.feeds_2021_06_30 import FeedsV20210630
from sp_api.asyncio.api.listings_items.listings_items_2021_08_01 import ListingsItemsV20210801
from sp_api.asyncio.api.orders.orders_2026_01_01 import OrdersV20260101
from sp_api.asyncio.api.orders.orders_v0 import OrdersV0
from sp_api.asyncio.api.reports.reports import Reports
from sp_api.asyncio.auth import access_token_client
from sp_api.auth._core import build_cache_key
from sp_api.base.credential_provider import FromCodeCredentialProvider

from connectors.amazon.const import LWA_TOKEN, TOKEN_CACHE_SLACK, TOKEN_CACHE_TTL_S
from connectors.errors import AuthError, NotFoundError, PermanentError
from connectors.http import TokenBucket, send

# The package logs every request's headers, access token included, at DEBUG. It pins that logger
# at INFO; this keeps its DEBUG records out even if someone lowers it.
logging.getLogger("sp_api.asyncio.base.client").addFilter(lambda r: r.levelno > logging.DEBUG)

# Headers the package sets that we set better: its Host is `endpoint[8:]`, which assumes
# https:// (a loopback http:// endpoint would lose a character); httpx derives it from the URL.
_DROPPED_HEADERS = frozenset({"host", "user-agent"})


@dataclass
class Exchange:
    """One package call in flight: the operation its request is paced as, and the answer."""

    operation: str
    limiter: TokenBucket | None
    reserve: float = 0.0  # background work for the limiter (TokenBucket.acquire)
    response: httpx.Response | None = None


current_exchange: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar(
    "amazon_exchange", default=None
)


class SdkTransport:
    """Stands in for the package's AsyncHttpxTransport: sends through connectors.http.send."""

    def __init__(self, http: httpx.AsyncClient, channel: str) -> None:
        self._http = http
        self._channel = channel

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        **_: object,
    ) -> httpx.Response:
        """Send one request the package built; raise the connector error for any failure."""
        exchange = current_exchange.get()
        if exchange is None:
            raise RuntimeError("an SP-API request was made outside AmazonClient.call")
        response = await send(
            self._http,
            method,
            url,
            channel=self._channel,
            operation=exchange.operation,
            limiter=exchange.limiter,
            reserve=exchange.reserve,
            params=dict(params) if params else None,
            headers={k: v for k, v in (headers or {}).items() if k.lower() not in _DROPPED_HEADERS},
            content=content,
            data=dict(data) if data else None,
        )
        exchange.response = response
        return response

    async def aclose(self) -> None:
        """The HTTP client belongs to AmazonClient, which closes it."""


class LwaTransport:
    """The token endpoint's transport: paced by its own bucket, refusals become AuthError."""

    def __init__(self, http: httpx.AsyncClient, channel: str, limiter: TokenBucket) -> None:
        self._http = http
        self._channel = channel
        self._limiter = limiter

    async def request(
        self,
        method: str,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        **_: object,
    ) -> httpx.Response:
        """Ask Login with Amazon for an access token."""
        try:
            return await send(
                self._http,
                method,
                url,
                channel=self._channel,
                operation=LWA_TOKEN,
                limiter=self._limiter,
                data=dict(data) if data else None,
                headers={k: v for k, v in (headers or {}).items() if k.lower() != "user-agent"},
            )
        except (AuthError, PermanentError, NotFoundError) as err:
            # LWA answers 400 invalid_grant for a revoked or mistyped refresh token and 401
            # invalid_client for a wrong client id or secret: credentials, never worth a retry.
            reason = err.args[0] if err.args else "refused"
            raise AuthError(
                f"Login with Amazon refused the credentials ({reason}); re-authorise the app "
                "for this seller and update the channel's refresh token or LWA client secret",
                channel=self._channel,
                operation=LWA_TOKEN,
            ) from err

    async def aclose(self) -> None:
        """The HTTP client belongs to AmazonClient, which closes it."""


# Token cache -----------------------------------------------------------------------------------

_RESERVED: set[str] = set()


def reserve_token_cache(refresh_token: str) -> None:
    """Make room in the package's token cache for this seller (it holds 10 by default)."""
    _RESERVED.add(build_cache_key(refresh_token))
    wanted = len(_RESERVED) + TOKEN_CACHE_SLACK
    cache = access_token_client.cache
    if cache.maxsize < wanted or cache.ttl > TOKEN_CACHE_TTL_S:
        # A fresh cache: copying entries would restart their time to live. The tokens it held
        # are fetched again on next use, once each.
        access_token_client.cache = TTLCache(maxsize=wanted, ttl=TOKEN_CACHE_TTL_S)


def token_cache_size() -> int:
    """How many access tokens the package's cache holds at most."""
    return int(access_token_client.cache.maxsize)


def forget_token(refresh_token: str) -> None:
    """Drop this seller's cached access token (Amazon refused it: fetch a new one)."""
    access_token_client.cache.pop(build_cache_key(refresh_token), None)


# The package's clients -------------------------------------------------------------------------


@dataclass(frozen=True)
class SdkApis:
    """The package's clients for one seller, all sending through our transports."""

    orders: Any  # OrdersV20260101
    orders_v0: Any  # OrdersV0: confirmShipment, and the legacy reads
    listings: Any  # ListingsItemsV20210801
    feeds: Any  # FeedsV20210630
    reports: Any  # Reports (2021-06-30)
    auth: Any  # AccessTokenClient, shared by the five


def build_apis(
    *,
    channel: str,
    http: httpx.AsyncClient,
    endpoint: str,
    token_url: str,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    marketplace_id: str,
    lwa_limiter: TokenBucket,
) -> SdkApis:
    """The package's clients for one seller, pointed at `endpoint` and `token_url`."""
    token = urlsplit(token_url)
    auth = access_token_client.AccessTokenClient(
        refresh_token=refresh_token,
        credentials=_Credentials(client_id, client_secret),
        verify=_idle_tls(),
    )
    # The package builds the token URL as scheme + host + path: class attributes it reads from
    # the instance, so a loopback LWA server needs only these three.
    auth.scheme = f"{token.scheme}://"
    auth.host = token.netloc
    auth.path = token.path or "/"
    auth._transport = LwaTransport(http, channel, lwa_limiter)

    credentials = {"lwa_app_id": client_id, "lwa_client_secret": client_secret}

    def make(api_class: Any) -> Any:
        api = api_class(
            refresh_token=refresh_token,
            credentials=credentials,
            # Only what we pass: not the environment, ~/.config, nor AWS Secrets Manager.
            credential_providers=(FromCodeCredentialProvider,),
            auth_token_client_class=lambda **_: auth,
            verify=_idle_tls(),
        )
        api.endpoint = endpoint
        api.marketplace_id = marketplace_id
        api._transport = SdkTransport(http, channel)
        return api

    return SdkApis(
        orders=make(OrdersV20260101),
        orders_v0=make(OrdersV0),
        listings=make(ListingsItemsV20210801),
        feeds=make(FeedsV20210630),
        reports=make(Reports),
        auth=auth,
    )


@functools.cache
def _idle_tls() -> ssl.SSLContext:
    # Each package client builds an httpx client of its own, which we replace before it sends
    # anything; handing them one TLS context saves loading the CA store for each (~0.1 s).
    return ssl.create_default_context()


class _Credentials:
    """What the package's AccessTokenClient reads of its credentials."""

    def __init__(self, client_id: str, client_secret: str) -> None:
        self.lwa_app_id = client_id
        self.lwa_client_secret = client_secret
        self.refresh_token: str | None = None

    def __repr__(self) -> str:
        return "_Credentials(lwa_app_id=..., lwa_client_secret='**********')"
