"""Turn a channel's HTTP answer into the connector error tree (errors.py) by what to do next."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from connectors.errors import (
    AuthError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetryableError,
)

REASON_LIMIT = 300
"""Longest excerpt of a channel's error message kept on an error."""


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delay-seconds or HTTP-date); None if absent or bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        # RFC 9110 says whole seconds; Shopify's REST API has been seen sending "2.0".
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" parses naive; HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _server_now(response: httpx.Response) -> datetime | None:
    # Measure an HTTP-date Retry-After against the channel's own clock (its Date header), so
    # skew between our clock and theirs does not stretch or cut the wait.
    date = response.headers.get("Date")
    if date is None:
        return None
    try:
        parsed = parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _messages(body: object) -> list[str]:
    """The human-readable parts of the usual error bodies of Shopify, Amazon, eBay and OAuth."""
    if not isinstance(body, Mapping):
        return []
    found: list[str] = []
    errors = body.get("errors")
    if isinstance(errors, str):  # Shopify REST: {"errors": "Not Found"}
        found.append(errors)
    elif isinstance(errors, list):  # GraphQL, SP-API {code, message}, eBay {errorId, message}
        for item in errors:
            if isinstance(item, Mapping) and isinstance(item.get("message"), str):
                code = item.get("code")
                prefix = f"{code}: " if isinstance(code, str) and code else ""
                found.append(prefix + item["message"])
            elif isinstance(item, str):
                found.append(item)
    elif isinstance(errors, Mapping):  # Shopify REST validation: {"field": ["is invalid"]}
        for field, problems in errors.items():
            if isinstance(problems, list):
                problems = ", ".join(str(p) for p in problems)
            found.append(f"{field}: {problems}")
    if found:
        return found
    for key in ("error_description", "message"):  # OAuth (LWA, eBay identity); generic
        if isinstance(body.get(key), str):
            return [body[key]]
    if isinstance(body.get("error"), str):
        return [body["error"]]
    return []


def error_excerpt(response: httpx.Response) -> str | None:
    """A short excerpt of the channel's own error message from a JSON body, or None."""
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        # HTML error pages and empty bodies carry nothing worth keeping.
        return None
    text = " ".join("; ".join(_messages(body)).split())
    if not text:
        return None
    return text if len(text) <= REASON_LIMIT else text[: REASON_LIMIT - 1] + "…"


def raise_for_status(response: httpx.Response, *, channel: str, operation: str) -> None:
    """Return on 2xx; otherwise raise the connector error that says what to do next."""
    status = response.status_code
    if 200 <= status < 300:
        return
    excerpt = error_excerpt(response)
    message = f"HTTP {status}: {excerpt}" if excerpt else f"HTTP {status}"
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(
            response.headers.get("Retry-After"), now=_server_now(response)
        )
        error_class = RateLimitedError if status == 429 else RetryableError
        raise error_class(message, retry_after=retry_after, channel=channel, operation=operation)
    if status in (401, 403):
        raise AuthError(message, channel=channel, operation=operation)
    if status == 404:
        raise NotFoundError(message, channel=channel, operation=operation)
    # Other 4xx, and the 1xx/3xx an API call should never end on (redirects are not followed):
    # sending the same request again would get the same answer.
    raise PermanentError(message, reason=excerpt, channel=channel, operation=operation)
