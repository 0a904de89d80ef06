"""The public webhook ASGI app: one route per channel, dispatched to that channel's receiver."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

WebhookHandler = Callable[[Request], Awaitable[Response]]


def create_webhook_app(handlers: Mapping[str, WebhookHandler]) -> Starlette:
    """Route `/webhooks/{channel}` (GET for endpoint checks, POST for deliveries) to its handler."""

    async def dispatch(request: Request) -> Response:
        handler = handlers.get(request.path_params["channel"])
        if handler is None:
            # Unknown channels get the same answer whatever the name, so probing learns nothing.
            return JSONResponse({"error": "not found"}, status_code=404)
        return await handler(request)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/webhooks/{channel}", dispatch, methods=["GET", "POST"]),
            Route("/healthz", healthz),
        ]
    )
