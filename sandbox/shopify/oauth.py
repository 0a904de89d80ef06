"""Shopify's OAuth install (authorization-code grant for an offline token), as a sandbox store
answers it. The merchant is signed in and approves at once.

- `GET /admin/oauth/authorize?client_id&scope&redirect_uri&state`: checks the app's client id,
  the scopes (comma-separated, each a known Shopify scope) and the redirect URI (absolute
  http(s); when `/_sandbox/oauth` lists allowed ones, one of them), then sends the browser to
  the redirect URI with `code`, `hmac`, `host`, `shop`, `state` and `timestamp`. `hmac` is the hex
  HMAC-SHA256, keyed with the app's client secret, of the other parameters sorted and joined as
  `key=value` with `&` (Shopify's documented scheme, with its escaping of `%`, `&` and `=`).
- `POST /admin/oauth/access_token` (form or JSON: `client_id`, `client_secret`, `code`): a code
  works once, within CODE_TTL_S; the answer is `{"access_token", "scope"}`. A store the app was
  uninstalled from is installed again with a new token (the old one stays refused); an installed
  store hands out the token it has (offline tokens are one per installation).
- `GET /_sandbox/oauth` tells the app's client id and what was granted; `POST /_sandbox/oauth`
  `{"redirect_uris": [...]}` sets the allowed redirect URIs (empty: any).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from sandbox.shopify.app import ShopifySandbox

CODE_TTL_S = 600.0  # Shopify does not document it (unsure); codes are meant to be spent at once
KNOWN_SCOPES = frozenset(
    f"{access}_{resource}"
    for access in ("read", "write")
    for resource in (
        "orders",
        "all_orders",
        "draft_orders",
        "products",
        "inventory",
        "locations",
        "fulfillments",
        "assigned_fulfillment_orders",
        "merchant_managed_fulfillment_orders",
        "third_party_fulfillment_orders",
        "customers",
        "shipping",
        "returns",
        "price_rules",
        "discounts",
        "content",
        "themes",
        "script_tags",
        "files",
        "reports",
    )
)
"""Scopes the sandbox knows (a subset of Shopify's); any other is refused as Shopify does."""


@dataclass
class _Code:
    scopes: frozenset[str]
    expires_at: float


@dataclass
class AppInstalls:
    """The one app that can be installed on the sandbox store: its client id, codes handed out,
    the scopes the installation holds, and where it may send browsers back to."""

    client_id: str
    redirect_uris: list[str] = field(default_factory=list)
    granted: frozenset[str] = frozenset()
    codes: dict[str, _Code] = field(default_factory=dict)

    @classmethod
    def create(cls, client_id: str | None, granted: tuple[str, ...]) -> AppInstalls:
        """The app, installed with `granted`; its client id made up when None."""
        return cls(client_id=client_id or secrets.token_hex(16), granted=frozenset(granted))


def oauth_hmac(secret: str, params: dict[str, str]) -> str:
    """Shopify's OAuth query signature: hex HMAC-SHA256 of the sorted `key=value` pairs."""

    def pair(key: str, value: str) -> str:
        key = key.replace("%", "%25").replace("=", "%3D")
        value = value.replace("%", "%25")
        return f"{key}={value}".replace("&", "%26")

    message = "&".join(sorted(pair(k, v) for k, v in params.items() if k != "hmac"))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def _sandbox(request: Request) -> ShopifySandbox:
    sandbox: ShopifySandbox = request.app.state.sandbox
    return sandbox


def _oauth_page(status: int, error: str, message: str) -> Response:
    # The authorize step is a browser page: Shopify shows its error there, it does not redirect.
    return PlainTextResponse(f"Oauth error {error}: {message}", status_code=status)


def _oauth_json(status: int, error: str, description: str) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


async def authorize(request: Request) -> Response:
    """`GET /admin/oauth/authorize`: the merchant approves the install at once."""
    sandbox = _sandbox(request)
    app = sandbox.oauth
    params = request.query_params
    if not hmac.compare_digest(params.get("client_id", "").encode(), app.client_id.encode()):
        return _oauth_page(400, "invalid_request", "The api_key is invalid")
    scopes = frozenset(s.strip() for s in params.get("scope", "").split(",") if s.strip())
    unknown = sorted(scopes - KNOWN_SCOPES)
    if not scopes or unknown:
        return _oauth_page(400, "invalid_scope", f"Unknown scopes: {', '.join(unknown) or '-'}")
    redirect = params.get("redirect_uri", "")
    parts = urlsplit(redirect)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return _oauth_page(400, "invalid_request", "The redirect_uri is missing or not absolute")
    if app.redirect_uris and redirect not in app.redirect_uris:
        return _oauth_page(400, "invalid_request", "The redirect_uri is not whitelisted")
    code = secrets.token_hex(16)
    app.codes[code] = _Code(scopes, sandbox.clock.monotonic() + CODE_TTL_S)
    domain = sandbox.store.domain
    query = {
        "code": code,
        "host": base64.b64encode(f"admin.shopify.com/store/{sandbox.store.shop}".encode()).decode(),
        "shop": domain,
        "timestamp": str(int(sandbox.clock.now().timestamp())),
    }
    if "state" in params:
        query["state"] = params["state"]
    query["hmac"] = oauth_hmac(sandbox.api_secret, query)
    separator = "&" if parts.query else "?"
    return RedirectResponse(f"{redirect}{separator}{urlencode(query)}", status_code=302)


async def _form(request: Request) -> dict[str, str]:
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}
        return (
            {k: v for k, v in body.items() if isinstance(v, str)} if isinstance(body, dict) else {}
        )
    form = parse_qs(raw.decode("utf-8", errors="replace"))
    return {**dict(request.query_params), **{k: v[0] for k, v in form.items()}}


async def access_token(request: Request) -> Response:
    """`POST /admin/oauth/access_token`: a code for the installation's offline token."""
    sandbox = _sandbox(request)
    app = sandbox.oauth
    form = await _form(request)
    client_ok = hmac.compare_digest(form.get("client_id", "").encode(), app.client_id.encode())
    secret_ok = hmac.compare_digest(
        form.get("client_secret", "").encode(), sandbox.api_secret.encode()
    )
    if not (client_ok and secret_ok):
        return _oauth_json(400, "invalid_client", "The api_key or client secret is invalid")
    issued = app.codes.pop(form.get("code", ""), None)
    if issued is None or issued.expires_at <= sandbox.clock.monotonic():
        return _oauth_json(
            400,
            "invalid_request",
            "The authorization code was not found or was already used",
        )
    store = sandbox.store
    if not store.installed:
        store.installed = True
        sandbox.access_token = f"shpat_{secrets.token_hex(16)}"
        app.granted = frozenset()
    app.granted |= issued.scopes
    return JSONResponse(
        {"access_token": sandbox.access_token, "scope": ",".join(sorted(app.granted))},
        headers={"Cache-Control": "no-store"},
    )


async def control(request: Request) -> Response:
    """`GET|POST /_sandbox/oauth`: the app's client id and grant; set allowed redirect URIs."""
    sandbox = _sandbox(request)
    app = sandbox.oauth
    if request.method == "POST":
        try:
            body = json.loads(await request.body())
            uris = body["redirect_uris"]
            if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": '{"redirect_uris": [URL, ...]} expected'}, 400)
        app.redirect_uris = list(uris)
    return JSONResponse(
        {
            "client_id": app.client_id,
            "installed": sandbox.store.installed,
            "scopes": sorted(app.granted),
            "redirect_uris": app.redirect_uris,
        }
    )


def oauth_routes() -> list[Route]:
    """The install's routes and its control route."""
    return [
        Route("/admin/oauth/authorize", authorize, methods=["GET"]),
        Route("/admin/oauth/access_token", access_token, methods=["POST"]),
        Route("/_sandbox/oauth", control, methods=["GET", "POST"]),
    ]
