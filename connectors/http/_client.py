"""The one httpx client factory, and the DEBUG logging of each exchange with credentials masked."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import parse_qsl, urlencode

import httpx

log = logging.getLogger("connectors.http")

MASK = "**********"

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)
"""Connect and pool waits fail fast (nothing was sent); read/write allow a slow channel."""

# One client per channel account, and every call is paced by a rate limiter well below this:
# a few connections are all the pacing lets through, the rest would only be idle sockets.
DEFAULT_LIMITS = httpx.Limits(max_connections=10, max_keepalive_connections=5, keepalive_expiry=30)

# Lower-case names: httpx.Headers iterates with lower-cased keys, and HTTP names are
# case-insensitive anyway.
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-shopify-access-token",
        "x-amz-access-token",
        "x-amz-security-token",
        "x-ebay-api-iaf-token",
        "cookie",
        "set-cookie",
    }
)

# Query parameters whose value is a credential: OAuth tokens in a URL, and the signature of the
# presigned S3 URLs Amazon's Feeds API hands out for document uploads.
_SECRET_QUERY_WORDS = ("token", "secret", "signature", "credential", "password", "code")


def _package_version() -> str:
    try:
        return version("channel-sync")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


USER_AGENT = f"channel-sync/{_package_version()}"


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of `headers` safe to log: credential and cookie values replaced by a mask."""
    return {
        name: MASK if name.lower() in SECRET_HEADERS else value for name, value in headers.items()
    }


def _redact_url(url: httpx.URL) -> str:
    if not url.query:
        return str(url)
    pairs = parse_qsl(url.query.decode("ascii", "replace"), keep_blank_values=True)
    safe = [
        (key, MASK if any(word in key.lower() for word in _SECRET_QUERY_WORDS) else value)
        for key, value in pairs
    ]
    return str(url.copy_with(query=urlencode(safe).encode("ascii")))


def make_client(
    *,
    base_url: str,
    channel: str,
    timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    headers: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An AsyncClient for one channel account: explicit timeouts, our User-Agent, redacted logging."""

    async def log_request(request: httpx.Request) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s request %s %s headers=%s",
                channel,
                request.method,
                _redact_url(request.url),
                redact_headers(request.headers),
            )

    async def log_response(response: httpx.Response) -> None:
        # The body is never logged: it carries buyer names and addresses.
        if log.isEnabledFor(logging.DEBUG):
            request = response.request
            log.debug(
                "%s response %s %s -> %s headers=%s",
                channel,
                request.method,
                _redact_url(request.url),
                response.status_code,
                redact_headers(response.headers),
            )

    return httpx.AsyncClient(
        base_url=base_url,
        timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
        limits=DEFAULT_LIMITS,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        transport=transport,
        # httpx drops Authorization on a cross-host redirect but not the channels' own token
        # headers (X-Shopify-Access-Token, x-amz-access-token): never follow one.
        follow_redirects=False,
        event_hooks={"request": [log_request], "response": [log_response]},
    )
