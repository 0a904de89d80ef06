"""The shared HTTP layer of every connector: client factory, rate limiting, retries, error mapping.

A connector call reads:

    bucket = limiters.bucket(channel, "getOrder")
    async for attempt in retry_policy(retry_uncertain=True):  # a read: safe to resend
        with attempt:
            response = await send(
                client, "GET", url, channel=channel, operation="getOrder", limiter=bucket
            )

`retry_policy()` builds a fresh tenacity AsyncRetrying for each call; never share one.
"""

from __future__ import annotations

from ._client import (
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUT,
    MASK,
    SECRET_HEADERS,
    USER_AGENT,
    make_client,
    redact_headers,
)
from ._limiter import RateLimiters, TokenBucket
from ._retry import RetryAfterOrBackoff, retry_policy
from ._send import QueryParams, send
from ._status import REASON_LIMIT, error_excerpt, parse_retry_after, raise_for_status

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "MASK",
    "REASON_LIMIT",
    "SECRET_HEADERS",
    "USER_AGENT",
    "QueryParams",
    "RateLimiters",
    "RetryAfterOrBackoff",
    "TokenBucket",
    "error_excerpt",
    "make_client",
    "parse_retry_after",
    "raise_for_status",
    "redact_headers",
    "retry_policy",
    "send",
]
