"""OAuth for one eBay application and seller, over the shared HTTP layer.

Two kinds of access token, both from `POST /identity/v1/oauth2/token` with the application's
Basic credentials:
- the seller's user token, renewed from the refresh token (`grant_type=refresh_token`) a few
  minutes before it expires; it carries the Fulfillment, Inventory and Trading calls;
- the application token (`grant_type=client_credentials`), which the Notification API's
  getPublicKey wants.

A token request eBay refuses (400 `invalid_grant` for a revoked or expired refresh token, 401
`invalid_client` for wrong application keys) is an AuthError: the channel stops and alerts,
since no retry fixes it. Throttles, 5xx and transport failures are retried (asking for a token
twice is harmless). The seller's one-time consent (`consent_url`, `exchange_code`) lives here too,
for the `connect` command.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx

from connectors.ebay import const
from connectors.errors import AuthError, NotFoundError, PermanentError, RetryableError
from connectors.http import MASK, retry_policy, send

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass(frozen=True)
class OAuthApp:
    """An eBay application's keys and where its tokens come from."""

    client_id: str
    client_secret: str
    token_url: str = const.IDENTITY_URL

    def __repr__(self) -> str:
        return f"OAuthApp(client_id={self.client_id!r}, client_secret={MASK!r})"

    @property
    def basic_authorization(self) -> str:
        """The `Authorization` header eBay's token endpoint wants."""
        pair = f"{self.client_id}:{self.client_secret}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


@dataclass(frozen=True)
class Grant:
    """What a token answer granted: the access token, how long it lasts, and (after a code
    exchange) the refresh token."""

    access_token: str
    expires_in_s: float
    refresh_token: str | None = None
    refresh_token_expires_in_s: float | None = None

    def __repr__(self) -> str:
        return f"Grant(access_token={MASK!r}, expires_in_s={self.expires_in_s!r}, ...)"


def _seconds(value: object, default: float | None) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default


def read_grant(response: httpx.Response, *, channel: str, operation: str) -> Grant:
    """The token answer's fields; RetryableError when it is not one (a proxy's page)."""
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        body = None
    token = body.get("access_token") if isinstance(body, Mapping) else None
    if not isinstance(body, Mapping) or not isinstance(token, str) or not token:
        raise RetryableError(
            "token answer has no access_token", channel=channel, operation=operation
        )
    refresh = body.get("refresh_token")
    return Grant(
        access_token=token,
        expires_in_s=_seconds(body.get("expires_in"), const.TOKEN_DEFAULT_LIFETIME_S) or 0.0,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        refresh_token_expires_in_s=_seconds(body.get("refresh_token_expires_in"), None),
    )


async def request_grant(
    http: httpx.AsyncClient,
    app: OAuthApp,
    form: Mapping[str, str],
    *,
    channel: str,
    operation: str,
    attempts: int = const.ATTEMPTS,
    sleep: Sleep = asyncio.sleep,
) -> Grant:
    """POST `form` to the token endpoint; AuthError when eBay refuses it."""
    policy = retry_policy(
        attempts=attempts,
        base=const.BACKOFF_BASE_S,
        cap=const.BACKOFF_CAP_S,
        retry_uncertain=True,  # a token request changes nothing on eBay's side
        sleep=sleep,
    )
    async for attempt in policy:
        with attempt:
            try:
                response = await send(
                    http,
                    "POST",
                    app.token_url,
                    channel=channel,
                    operation=operation,
                    limiter=None,
                    data=dict(form),
                    headers={"Authorization": app.basic_authorization},
                )
            except (PermanentError, NotFoundError) as err:
                # eBay's words (error_description) name what is wrong, never the token itself.
                raise AuthError(
                    f"eBay refused the token request ({err.args[0]})",
                    channel=channel,
                    operation=operation,
                ) from err
            return read_grant(response, channel=channel, operation=operation)
    raise AssertionError("unreachable: the retry policy re-raises the last error")


class TokenSource:
    """One access token (the seller's, or the application's), fetched when first needed and
    renewed before it expires; concurrent callers share one renewal."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        app: OAuthApp,
        form: Mapping[str, str],
        *,
        channel: str,
        operation: str,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        attempts: int = const.ATTEMPTS,
        renew_margin_s: float = const.TOKEN_RENEW_MARGIN_S,
    ) -> None:
        self._http = http
        self._app = app
        self._form = dict(form)
        self._channel = channel
        self._operation = operation
        self._clock = clock
        self._sleep = sleep
        self._attempts = attempts
        self._margin = renew_margin_s
        self._token: str | None = None
        self._renew_at = -math.inf
        self._lock = asyncio.Lock()
        self.renewals = 0

    def __repr__(self) -> str:
        return f"TokenSource({self._operation!r}, token={MASK!r})"

    async def token(self) -> str:
        """A token good for at least the renewal margin."""
        async with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                grant = await request_grant(
                    self._http,
                    self._app,
                    self._form,
                    channel=self._channel,
                    operation=self._operation,
                    attempts=self._attempts,
                    sleep=self._sleep,
                )
                # A short-lived token (shorter than twice the margin) is renewed at half its life.
                margin = min(self._margin, grant.expires_in_s / 2)
                self._token = grant.access_token
                self._renew_at = self._clock() + grant.expires_in_s - margin
                self.renewals += 1
            return self._token

    def invalidate(self, token: str) -> None:
        """eBay refused `token` before its time (revoked, or its clock differs): the next call
        renews, unless another caller already has."""
        if token == self._token:
            self._token = None


def user_token_form(
    refresh_token: str, scopes: Sequence[str] = const.USER_SCOPES
) -> dict[str, str]:
    """The refresh-grant form for the seller's user token."""
    return {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "scope": " ".join(scopes),
    }


def app_token_form(scopes: Sequence[str] = const.APP_SCOPES) -> dict[str, str]:
    """The client-credentials form for the application token."""
    return {"grant_type": "client_credentials", "scope": " ".join(scopes)}


def consent_url(
    client_id: str,
    redirect_uri: str,
    *,
    state: str,
    scopes: Sequence[str] = const.USER_SCOPES,
    base_url: str = const.CONSENT_URL,
) -> str:
    """Where the seller grants the application access (`redirect_uri` is the app's RuName)."""
    query = urlencode(
        {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": " ".join(scopes),
            "state": state,
        }
    )
    return f"{base_url}?{query}"


async def exchange_code(
    http: httpx.AsyncClient,
    app: OAuthApp,
    code: str,
    redirect_uri: str,
    *,
    channel: str,
    sleep: Sleep = asyncio.sleep,
) -> Grant:
    """Trade the consent page's authorization code for the seller's refresh token."""
    grant = await request_grant(
        http,
        app,
        {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
        channel=channel,
        operation="exchangeCode",
        sleep=sleep,
    )
    if grant.refresh_token is None:
        raise AuthError("eBay granted no refresh token", channel=channel, operation="exchangeCode")
    return grant
