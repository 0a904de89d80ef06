"""The status page on the admin listener: `GET /`, its script and style, and `GET /api/latency`.

The page and its two assets are public: they hold nothing but code. Every figure the page shows
comes from the JSON API, with the admin token the operator types into the page (or hands it once
in the URL's fragment, `/#token=...`, which a browser never sends to a server, so no access log
or proxy sees it). The page keeps it in `sessionStorage`: gone when the tab closes, never in a
cookie, so no other site's form can make the browser send it (no CSRF), and never in a query
string. A strict Content-Security-Policy allows only this origin's script, style and API.

The files are package data (`sync/http/static/`), read once at import: no build step, no CDN.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from sync.http.admin import AdminContext

_STATIC = resources.files("sync.http") / "static"
_ASSETS = {
    "status.js": "text/javascript; charset=utf-8",
    "status.css": "text/css; charset=utf-8",
}
_FILES = {name: (_STATIC / name).read_bytes() for name in ("status.html", *_ASSETS)}

# Only this origin, nothing inline, no framing: a page that handles a token runs no one else's code.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

PAGE_PATHS = frozenset({"/", *(f"/static/{name}" for name in _ASSETS)})
"""What the admin app serves without a token (the page and its code; none of the data)."""


async def page(request: Request) -> Response:
    """The status page: channel health, lag, recent orders, dead jobs, push latency."""
    return Response(_FILES["status.html"], media_type="text/html", headers=_HEADERS)


async def asset(request: Request) -> Response:
    """The page's script or style, from the package."""
    name = request.path_params["name"]
    if name not in _ASSETS:
        return JSONResponse({"error": "not_found", "detail": f"no asset {name!r}"}, 404)
    return Response(_FILES[name], media_type=_ASSETS[name], headers=_HEADERS)


async def latency(request: Request) -> Response:
    """Stock-push latency per channel over the last minutes (sync/latency.py)."""
    ctx: AdminContext = request.app.state.ctx
    return JSONResponse(ctx.metrics.push_latency.snapshot())


STATUS_PAGE_ROUTES = [
    Route("/", page, methods=["GET"]),
    Route("/static/{name}", asset, methods=["GET"]),
    Route("/api/latency", latency, methods=["GET"]),
]
