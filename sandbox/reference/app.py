"""The reference sandbox's ASGI app: every channel's API and control API, and lost answers.

A handler that drew a fail-after fault has already applied the call; it marks the request and
`LostAnswerMiddleware`, outermost, then loses the answer the way a network does: "reset" aborts
the TCP connection before a byte of the response is written (the client sees the connection
drop), "timeout" holds the answer until the client gives up (or `timeout_delay_s` passes).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.reference._http import CHANNELS_KEY
from sandbox.reference.api import LOST_ANSWER_KEY, TOKEN_KEY, api_routes
from sandbox.reference.channel import ChannelOptions, SandboxChannel
from sandbox.reference.control import control_routes


class LostAnswerMiddleware:
    """Drops or delays the answer of a request its handler marked with LOST_ANSWER_KEY."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; swallow or hold its response if the handler says so."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        dropped = False

        async def guarded_send(message: Message) -> None:
            nonlocal dropped
            lost = scope.get(LOST_ANSWER_KEY)
            if lost is None:
                await send(message)
                return
            if message["type"] == "http.response.start":
                mode, delay_s = lost
                if mode == "reset":
                    await _reset_connection(send)
                    dropped = True
                else:
                    dropped = await _disconnects_within(receive, delay_s)
            if not dropped:
                await send(message)

        await self.app(scope, receive, guarded_send)


async def _reset_connection(send: Send) -> None:
    # uvicorn's send is a method of the request cycle that holds the connection's transport;
    # ASGI has no message that closes a connection unanswered, so reach for the transport.
    transport: Any = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionResetError("lost answer: connection reset (needs uvicorn to be exact)")
    transport.abort()
    # Let connection_lost run, so uvicorn sees the client gone and does not answer 500 instead.
    for _ in range(3):
        await asyncio.sleep(0)


async def _disconnects_within(receive: Receive, delay_s: float) -> bool:
    try:
        async with asyncio.timeout(delay_s):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return False
    return True


class SandboxApp(Starlette):
    """Starlette with LostAnswerMiddleware outside even its error middleware, so that it holds
    the server's own `send` (Starlette's user middleware only ever sees a wrapped one)."""

    def __init__(self) -> None:
        super().__init__(routes=[*control_routes(), *api_routes()])
        self._outer = LostAnswerMiddleware(super().__call__)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request through the lost-answer middleware."""
        await self._outer(scope, receive, send)


def create_app(
    channels: Iterable[ChannelOptions], *, token: str | None = None, seed: int = 0
) -> SandboxApp:
    """The sandbox app serving `channels` under `/{name}/`; `token` is the bearer it accepts
    (random when None: read it from `app.state.token`)."""
    app = SandboxApp()
    built: dict[str, SandboxChannel] = {}
    for index, options in enumerate(channels):
        if options.name in built:
            raise ValueError(f"channel {options.name} is given twice")
        built[options.name] = SandboxChannel(options, seed=seed * 1000 + index)
    setattr(app.state, CHANNELS_KEY, built)
    setattr(app.state, TOKEN_KEY, token or secrets.token_urlsafe(24))
    return app
