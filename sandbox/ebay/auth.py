"""OAuth as eBay's identity service does it: `POST /identity/v1/oauth2/token` (Basic auth with
the application's client id and secret; form body) for three grants, and `GET /oauth2/authorize`
where the seller consents (here at once) and is sent back to the RuName with a code.

- `refresh_token` (+ optional `scope`, a subset of what the seller consented to): a user access
  token, `"token_type": "User Access Token"`, for the Sell APIs and the Trading API.
- `client_credentials` (+ optional `scope`): an application token, for getPublicKey.
- `authorization_code` (+ `code`, `redirect_uri` = the RuName): a user access token and a new
  refresh token.

Access tokens last `access_token_ttl_s` (2 hours); a refresh token the seller revoked
(`POST /_sandbox/revoke-consent`) is refused with `invalid_grant`, and so are its access tokens.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.ebay.const import API_SCOPE, AUTH_CODE_TTL_S, REFRESH_TOKEN_TTL_S, SELL_SCOPES
from sandbox.ebay.gate import gated
from sandbox.ebay.model import Clock

if TYPE_CHECKING:
    from sandbox.ebay.app import EbaySandbox

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(frozen=True)
class AccessToken:
    """An access token eBay issued."""

    value: str
    kind: str  # "user" or "application"
    scopes: frozenset[str]
    expires_at: datetime
    refresh_token: str | None = None  # what a user token was renewed from


@dataclass
class Grant:
    """A seller's consent: its refresh token and the scopes it covers."""

    refresh_token: str
    scopes: frozenset[str]
    expires_at: datetime
    revoked: bool = False


@dataclass
class TokenRegistry:
    """The application's credentials and every token issued."""

    client_id: str
    client_secret: str
    ru_name: str
    clock: Clock
    access_ttl_s: int
    grants: dict[str, Grant] = field(default_factory=dict)
    codes: dict[str, tuple[datetime, str]] = field(default_factory=dict)  # code -> expiry, RuName
    issued: dict[str, AccessToken] = field(default_factory=dict)
    accept_url: str | None = None  # where the RuName sends the seller (oauth.py); None: itself

    def add_grant(self, refresh_token: str | None = None) -> Grant:
        """A consent with every sell scope; its refresh token is made up when None."""
        value = refresh_token or f"v^1.1#i^1#r^1#I^3#f^0#p^3#t^{_random(48)}"
        grant = Grant(
            value,
            frozenset((API_SCOPE, *SELL_SCOPES)),
            self.clock.now() + timedelta(seconds=REFRESH_TOKEN_TTL_S),
        )
        self.grants[value] = grant
        return grant

    def client_matches(self, header: str) -> bool:
        """Whether a Basic Authorization header carries this application's id and secret."""
        kind, _, encoded = header.partition(" ")
        if kind.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        client_id, _, secret = decoded.partition(":")
        return hmac.compare_digest(client_id.encode(), self.client_id.encode()) and (
            hmac.compare_digest(secret.encode(), self.client_secret.encode())
        )

    def issue(self, kind: str, scopes: frozenset[str], refresh_token: str | None) -> AccessToken:
        """A new access token."""
        token = AccessToken(
            f"v^1.1#i^1#p^3#I^3#r^0#f^0#t^{_random(64)}",
            kind,
            scopes,
            self.clock.now() + timedelta(seconds=self.access_ttl_s),
            refresh_token,
        )
        self.issued[token.value] = token
        return token

    def access(self, value: str) -> AccessToken | None:
        """The access token `value` if it is live (issued, unexpired, its grant not revoked)."""
        token = self.issued.get(value)
        if token is None or token.expires_at <= self.clock.now():
            return None
        if token.refresh_token is not None and self.grants[token.refresh_token].revoked:
            return None
        return token

    def new_code(self, redirect_uri: str) -> str:
        """An authorization code for a consent just given."""
        code = f"v^1.1#i^1#f^0#I^3#r^1#p^3#t^{_random(32)}"
        self.codes[code] = (self.clock.now() + timedelta(seconds=AUTH_CODE_TTL_S), redirect_uri)
        return code

    def revoke(self) -> int:
        """The seller withdraws consent: every refresh token (and its access tokens) dies."""
        for grant in self.grants.values():
            grant.revoked = True
        return len(self.grants)


def _random(size: int) -> str:
    return base64.b64encode(secrets.token_bytes(size)).decode("ascii")


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=_NO_STORE
    )


class OAuthStyle:
    """Refusals as the token endpoint answers them."""

    def quota_exceeded(self, operation: str) -> Response:
        """Not used: the token endpoint draws on no daily quota."""
        return _oauth_error(429, "too_many_requests", "request limit reached")

    def too_many(self, operation: str, retry_after_s: float) -> Response:
        """HTTP 429."""
        response = _oauth_error(429, "too_many_requests", "request limit reached")
        response.headers["Retry-After"] = f"{retry_after_s:g}"
        return response

    def server_error(self, operation: str, status: int) -> Response:
        """A 5xx."""
        return _oauth_error(status, "server_error", "internal error, try again later")


def _scopes(form: dict[str, list[str]], allowed: frozenset[str]) -> frozenset[str] | None:
    """The requested scopes (all allowed ones when none asked); None when any is not allowed."""
    asked = frozenset(" ".join(form.get("scope", [])).split())
    if not asked:
        return allowed
    return asked if asked <= allowed else None


def _grant(sandbox: EbaySandbox, form: dict[str, list[str]]) -> Response:
    registry = sandbox.tokens
    now = sandbox.clock.now()
    grant_type = (form.get("grant_type") or [""])[0]
    if grant_type == "client_credentials":
        scopes = _scopes(form, frozenset({API_SCOPE}))
        if scopes is None:
            return _oauth_error(400, "invalid_scope", "the requested scope is invalid")
        token = registry.issue("application", scopes, None)
        return _token_answer(token, "Application Access Token", registry.access_ttl_s)
    if grant_type == "refresh_token":
        value = (form.get("refresh_token") or [""])[0]
        grant = registry.grants.get(value)
        if grant is None or grant.revoked or grant.expires_at <= now:
            return _oauth_error(
                400,
                "invalid_grant",
                "the provided authorization refresh token is invalid or was issued to another "
                "client",
            )
        scopes = _scopes(form, grant.scopes)
        if scopes is None:
            return _oauth_error(
                400,
                "invalid_scope",
                "the requested scope is invalid, unknown, malformed, or exceeds the scope "
                "granted to the client",
            )
        token = registry.issue("user", scopes, grant.refresh_token)
        return _token_answer(token, "User Access Token", registry.access_ttl_s)
    if grant_type == "authorization_code":
        code = (form.get("code") or [""])[0]
        redirect = (form.get("redirect_uri") or [""])[0]
        issued = registry.codes.pop(code, None)
        if issued is None or issued[0] <= now or issued[1] != redirect:
            return _oauth_error(
                400,
                "invalid_grant",
                "the provided authorization grant code is invalid or was issued to another client",
            )
        grant = registry.add_grant()
        token = registry.issue("user", grant.scopes, grant.refresh_token)
        return JSONResponse(
            {
                **_token_body(token, "User Access Token", registry.access_ttl_s),
                "refresh_token": grant.refresh_token,
                "refresh_token_expires_in": REFRESH_TOKEN_TTL_S,
            },
            headers=_NO_STORE,
        )
    return _oauth_error(
        400,
        "unsupported_grant_type",
        "grant type in request is not supported by the authorization server",
    )


def _token_body(token: AccessToken, token_type: str, ttl_s: int) -> dict[str, object]:
    return {"access_token": token.value, "expires_in": ttl_s, "token_type": token_type}


def _token_answer(token: AccessToken, token_type: str, ttl_s: int) -> JSONResponse:
    return JSONResponse(_token_body(token, token_type, ttl_s), headers=_NO_STORE)


async def token_endpoint(request: Request) -> Response:
    """`POST /identity/v1/oauth2/token`."""
    sandbox: EbaySandbox = request.app.state.sandbox
    if not sandbox.tokens.client_matches(request.headers.get("authorization", "")):
        sandbox.unauthorized["token"] += 1
        return _oauth_error(401, "invalid_client", "client authentication failed")
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return _oauth_error(400, "invalid_request", "request body must be form-urlencoded")
    raw = await request.body()
    try:
        form = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return _oauth_error(400, "invalid_request", "request body is not UTF-8")
    return await gated(request, sandbox, "token", OAuthStyle(), lambda: _grant(sandbox, form))


async def authorize(request: Request) -> Response:
    """`GET /oauth2/authorize`: the seller signs in and consents at once; back to the RuName's
    address with `code` (and `state`). The sandbox's RuName is itself a URL on loopback."""
    sandbox: EbaySandbox = request.app.state.sandbox
    params = request.query_params
    registry = sandbox.tokens
    if params.get("client_id") != registry.client_id or params.get("response_type") != "code":
        return _oauth_error(400, "invalid_request", "client_id or response_type is wrong")
    redirect = params.get("redirect_uri", "")
    if redirect != registry.ru_name:
        return _oauth_error(400, "invalid_request", "redirect_uri is not the application's RuName")
    asked = frozenset(params.get("scope", "").split())
    if not asked or not asked <= frozenset((API_SCOPE, *SELL_SCOPES)):
        return _oauth_error(400, "invalid_scope", "the requested scope is invalid")
    query = {"code": registry.new_code(redirect), "expires_in": str(AUTH_CODE_TTL_S)}
    if "state" in params:
        query["state"] = params["state"]
    target = registry.accept_url or redirect
    separator = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{separator}{urlencode(query)}", status_code=302)


def auth_routes() -> list[Route]:
    """The identity service's routes."""
    return [
        Route("/identity/v1/oauth2/token", token_endpoint, methods=["POST"]),
        Route("/oauth2/authorize", authorize, methods=["GET"]),
    ]
