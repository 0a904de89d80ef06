"""Send one request through a rate limiter and map every way it can fail onto the error tree."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import httpx

from connectors.errors import (
    ConnectorError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
)

from ._limiter import TokenBucket
from ._status import raise_for_status

QueryParams = Mapping[str, str | int | float | bool | Sequence[str | int | float | bool]]
"""Query parameters as `send` takes them; values are stringified by httpx."""

# First matching row wins.
_TRANSPORT_ERRORS: tuple[tuple[tuple[type[httpx.RequestError], ...], type[ConnectorError]], ...] = (
    # No connection was made, so nothing reached the channel: always safe to send again.
    (
        (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError),
        RetryableError,
    ),
    # The request could not be formed: our bug or config, and sending it again would not help.
    ((httpx.UnsupportedProtocol, httpx.LocalProtocolError), PermanentError),
)


def _map_transport_error(
    error: httpx.RequestError, *, channel: str, operation: str
) -> ConnectorError:
    # Anything else (ReadTimeout, WriteTimeout, RemoteProtocolError, ReadError, a body that
    # would not decode...) means part or all of the request went out and no readable answer
    # came back: the channel may have applied it.
    error_class = next(
        (cls for types, cls in _TRANSPORT_ERRORS if isinstance(error, types)),
        UncertainOutcomeError,
    )
    # The class name only: httpx messages can quote the URL, and ours may carry a token.
    return error_class(type(error).__name__, channel=channel, operation=operation)


async def send(
    client: httpx.AsyncClient,
    request: httpx.Request | str,
    url: httpx.URL | str | None = None,
    *,
    channel: str,
    operation: str,
    limiter: TokenBucket | None,
    tokens: float = 1.0,
    reserve: float = 0.0,
    params: QueryParams | None = None,
    headers: Mapping[str, str] | None = None,
    json: object = None,
    content: bytes | str | None = None,
    data: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Take `tokens` from `limiter`, send, and raise the connector error for any failure.

    `request` is either a built httpx.Request, or a method with `url` and the keyword arguments.
    A `reserve` makes it background work for the limiter (see `TokenBucket.acquire`).
    On HTTP 429 the limiter is penalized for the channel's Retry-After (or just emptied when the
    channel gave none, as Amazon does). The response body is read before returning.
    """
    if isinstance(request, httpx.Request):
        if url is not None or any(v is not None for v in (params, headers, json, content, data)):
            raise TypeError("send() takes either a built httpx.Request or a method and url")
        built = request
    else:
        if url is None:
            raise TypeError("send() needs a url with a method")
        built = client.build_request(
            request, url, params=params, headers=headers, json=json, content=content, data=data
        )
    if limiter is not None:
        await limiter.acquire(tokens, reserve=reserve)
    try:
        response = await client.send(built)
    except httpx.RequestError as error:
        raise _map_transport_error(error, channel=channel, operation=operation) from error
    try:
        raise_for_status(response, channel=channel, operation=operation)
    except RateLimitedError as error:
        if limiter is not None:
            limiter.penalize(error.retry_after or 0.0)
        raise
    return response
