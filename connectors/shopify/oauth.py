"""Shopify's OAuth install for an offline Admin API token: the install URL, the checks a callback
must pass, and the code exchange. No database and no listener: `channel-sync shopify connect`
wires these to a short-lived callback server.

The `shopifyapi` package (import `shopify`) does what it can be trusted with here: it builds the
install URL (`Session.create_permission_url`) and checks the callback's HMAC and age
(`Session.validate_hmac`, `Session.validate_params`). Its `request_token` is not used: it always
calls `https://NAME.myshopify.com` through urllib with no timeout, so it can neither be pointed at
the loopback sandbox nor fail fast; the exchange goes through our httpx layer instead, and an
`api_base_url` override re-roots the install URL the package built.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
import shopify

from connectors.errors import AuthError, NotFoundError, PermanentError
from connectors.http import MASK, retry_policy, send
from connectors.shopify import const

Sleep = Callable[[float], Awaitable[None]]
CallbackParams = Mapping[str, str | Sequence[str]]
"""A callback's query: one value per key, a list for Shopify's `name[]` keys."""

EXCHANGE_OPERATION = "oauthAccessToken"


class CallbackRefusedError(ValueError):
    """A callback failed a check; the message says which, for the seller, and holds no secret."""


@dataclass(frozen=True)
class ShopifyApp:
    """The app the seller installs, and the shop it is installed on."""

    client_id: str
    client_secret: str
    shop: str  # NAME.myshopify.com
    base_url: str | None = None  # the channel's api_base_url: replaces https://SHOP

    def __repr__(self) -> str:
        return (
            f"ShopifyApp(client_id={self.client_id!r}, client_secret={MASK!r}, shop={self.shop!r})"
        )

    @property
    def admin_root(self) -> str:
        """Where `/admin/oauth/...` lives: https://SHOP, or the override."""
        return (self.base_url or f"https://{self.shop}").rstrip("/")

    def session_class(self) -> type[shopify.Session]:
        """The package's Session with this app's keys, set on a subclass rather than with
        `Session.setup` (which changes them for the whole process)."""
        attributes = {"api_key": self.client_id, "secret": self.client_secret}
        session_class: type[shopify.Session] = type("AppSession", (shopify.Session,), attributes)
        return session_class


@dataclass(frozen=True)
class InstallGrant:
    """What the exchange granted: the offline access token and the scopes it carries."""

    access_token: str
    scopes: frozenset[str]

    def __repr__(self) -> str:
        return f"InstallGrant(access_token={MASK!r}, scopes={sorted(self.scopes)!r})"


def install_url(
    app: ShopifyApp, redirect_uri: str, *, state: str, scopes: Sequence[str] = const.OAUTH_SCOPES
) -> str:
    """Where the seller approves the install; Shopify then sends the browser to `redirect_uri`."""
    session = app.session_class()(app.shop, const.API_VERSION)
    url: str = session.create_permission_url(list(scopes), redirect_uri, state)
    if app.base_url is None:
        return url
    built, base = urlsplit(url), urlsplit(app.base_url)
    return urlunsplit(
        (base.scheme, base.netloc, base.path.rstrip("/") + built.path, built.query, "")
    )


def check_callback(app: ShopifyApp, params: CallbackParams, *, state: str) -> str:
    """The authorization code of a callback Shopify signed for this app, shop and connect run;
    CallbackRefusedError saying which check failed otherwise."""
    session_class = app.session_class()
    signed = dict(params)
    if not isinstance(signed.get("hmac"), str) or not session_class.validate_hmac(signed):
        raise CallbackRefusedError(
            "its HMAC does not match the app's client secret: it was not sent by Shopify for "
            "this app (check client_id and webhook_secrets in the channel file)"
        )
    try:
        fresh = session_class.validate_params(signed)
    except ValueError:  # a timestamp that is not a number
        fresh = False
    if not fresh:
        raise CallbackRefusedError("it is more than a day old: open the install URL again")
    given_state = signed.get("state")
    if not isinstance(given_state, str) or not hmac.compare_digest(
        given_state.encode(), state.encode()
    ):
        raise CallbackRefusedError(
            "its state does not match this connect run: a tab left from an earlier run, or a "
            "link someone else made; open the install URL this run printed"
        )
    if signed.get("shop") != app.shop:
        raise CallbackRefusedError(f"it is for another shop, not {app.shop}")
    code = signed.get("code")
    if not isinstance(code, str) or not code:
        raise CallbackRefusedError("it carries no authorization code")
    return code


def missing_scopes(granted: Iterable[str], wanted: Iterable[str] = const.OAUTH_SCOPES) -> list[str]:
    """The wanted scopes a grant lacks (Shopify lists `write_x` alone when it covers `read_x`)."""
    have = set(granted)
    have |= {"read_" + scope.removeprefix("write_") for scope in have if scope.startswith("write_")}
    return [scope for scope in wanted if scope not in have]


async def exchange_code(
    http: httpx.AsyncClient,
    app: ShopifyApp,
    code: str,
    *,
    channel: str,
    attempts: int = const.ATTEMPTS,
    sleep: Sleep = asyncio.sleep,
) -> InstallGrant:
    """Trade a callback's code for the shop's offline access token; AuthError when Shopify
    refuses (a used or expired code, wrong app keys)."""
    # A code works once: only failures where nothing reached Shopify are sent again.
    policy = retry_policy(
        attempts=attempts,
        base=const.BACKOFF_BASE_S,
        cap=const.BACKOFF_CAP_S,
        retry_uncertain=False,
        sleep=sleep,
    )
    response: httpx.Response | None = None
    async for attempt in policy:
        with attempt:
            try:
                response = await send(
                    http,
                    "POST",
                    app.admin_root + const.OAUTH_TOKEN_PATH,
                    channel=channel,
                    operation=EXCHANGE_OPERATION,
                    limiter=None,
                    json={
                        "client_id": app.client_id,
                        "client_secret": app.client_secret,
                        "code": code,
                    },
                    headers={"Accept": "application/json"},
                )
            except (PermanentError, NotFoundError) as err:
                # Shopify's words ("The authorization code was not found or was already used").
                raise AuthError(
                    f"Shopify refused the code exchange ({err.args[0]})",
                    channel=channel,
                    operation=EXCHANGE_OPERATION,
                ) from err
    assert response is not None  # the retry policy re-raises the last error
    return _read_grant(response, channel=channel)


def _read_grant(response: httpx.Response, *, channel: str) -> InstallGrant:
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        body = None
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("access_token"), str)
        or not body["access_token"]
    ):
        # The code is spent by now: asking again would only be refused.
        raise PermanentError(
            "the code exchange answered no access_token",
            channel=channel,
            operation=EXCHANGE_OPERATION,
        )
    scope = body.get("scope")
    scopes = scope.split(",") if isinstance(scope, str) else []
    return InstallGrant(
        access_token=body["access_token"],
        scopes=frozenset(s.strip() for s in scopes if s.strip()),
    )


__all__ = [
    "CallbackParams",
    "CallbackRefusedError",
    "InstallGrant",
    "ShopifyApp",
    "check_callback",
    "exchange_code",
    "install_url",
    "missing_scopes",
]
