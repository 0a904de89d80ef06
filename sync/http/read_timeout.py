"""A deadline for reading each request, which uvicorn's h11 server does not have (issue 9 §2).

uvicorn closes a connection that sits idle *between* requests (`timeout_keep_alive`), but once a
request has begun nothing limits how long its headers or its declared body may take: a client
that sends half its headers and stops, or trickles a byte now and then (slowloris), holds its
connection, its buffers and, with a body, an application task for ever. A few thousand such
connections exhaust the process's file descriptors and the webhooks stop arriving.

`with_read_timeout(seconds)` answers uvicorn's h11 protocol with one change: from a connection's
opening, or from the first byte of each later request, the request must have arrived whole (its
headers and all its body) within `seconds`. When it has not, the client gets `408 Request
Timeout` (unless an answer was already on its way) and the connection is closed; an application
still waiting for the body sees the client disconnect. The deadline is one for the whole request,
not a gap between bytes, so trickling does not extend it; it is far above what a legitimate
sender needs (Shopify gives up on its own deliveries after 5 s). Time the server itself stops
reading (uvicorn's flow control, the application not consuming the body yet) is not counted
against the client. Between requests uvicorn's own keep-alive timeout applies unchanged.

`quiet_disconnects(app)` keeps the application's "client disconnected" (which the deadline
causes on purpose) out of the error log: nobody is left to answer.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 37\r\n"
    b"connection: close\r\n\r\n"
    b"the request did not arrive in time.\r\n"
)


class ReadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request does not arrive in time."""

    read_timeout_s: float = 10.0  # set per listener by `with_read_timeout`
    _read_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_read_timer()  # the first request's clock starts with the connection

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._is_reading_request():
            self._arm_read_timer()
        else:
            self._disarm_read_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_read_timer()
        super().connection_lost(exc)

    def _is_reading_request(self) -> bool:
        """True while part of a request has come and the rest is awaited from the client, or
        while the connection is idle with no keep-alive timer of uvicorn's watching it."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            return True
        if state is not h11.IDLE:
            return False  # the request is whole (or the connection is done with)
        has_partial = bool(self.conn.trailing_data[0])
        return has_partial or self.timeout_keep_alive_task is None

    def _arm_read_timer(self) -> None:
        if self._read_timer is None:  # one deadline per request: later bytes do not extend it
            self._read_timer = self.loop.call_later(self.read_timeout_s, self._on_read_timeout)

    def _disarm_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _on_read_timeout(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:
            # We stopped reading (the body waits for the application), not the client.
            self._arm_read_timer()
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(REQUEST_TIMEOUT)
        log.debug("closed a connection whose request took over %.1f s", self.read_timeout_s)
        self.transport.close()  # the application, if waiting for the body, sees a disconnect


def with_read_timeout(seconds: float) -> type[H11Protocol]:
    """The h11 protocol class for `uvicorn.Config(http=...)` with this read deadline."""
    if seconds <= 0:
        raise ValueError("the read timeout must be positive")
    return type(
        "ReadTimeoutH11Protocol", (ReadTimeoutH11Protocol,), {"read_timeout_s": float(seconds)}
    )


def quiet_disconnects(app: ASGIApp) -> ASGIApp:
    """`app`, with a client that went away mid-request ending the request quietly."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        except ClientDisconnect:
            log.debug("a client went away before its request was read")

    return wrapped
