"""The application's RuName as eBay's developer portal keeps it: a name standing for the
"auth accepted" URL the consent page sends the seller's browser to (auth.py serves the consent
page and the code exchange).

`POST /_sandbox/ru-name` `{"ru_name": NAME, "accept_url": URL}` registers the application's
RuName and its accept URL; `GET /_sandbox/ru-name` tells them. Until one is registered the
sandbox's RuName is itself a URL on loopback, and the browser goes there.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from sandbox.ebay.app import EbaySandbox


def _answer(sandbox: EbaySandbox) -> JSONResponse:
    registry = sandbox.tokens
    return JSONResponse({"ru_name": registry.ru_name, "accept_url": registry.accept_url})


async def ru_name(request: Request) -> Response:
    """`GET|POST /_sandbox/ru-name`: read or register the RuName and its accept URL."""
    sandbox: EbaySandbox = request.app.state.sandbox
    if request.method == "POST":
        try:
            body = json.loads(await request.body())
            name, accept_url = body["ru_name"], body["accept_url"]
            if not isinstance(name, str) or not name or not isinstance(accept_url, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": '{"ru_name": NAME, "accept_url": URL} expected'}, 400)
        if urlsplit(accept_url).scheme not in ("http", "https"):
            return JSONResponse({"error": "accept_url must be an http(s) URL"}, 400)
        sandbox.tokens.ru_name = name
        sandbox.tokens.accept_url = accept_url
    return _answer(sandbox)


def ru_name_routes() -> list[Route]:
    """The RuName's control route."""
    return [Route("/_sandbox/ru-name", ru_name, methods=["GET", "POST"])]
