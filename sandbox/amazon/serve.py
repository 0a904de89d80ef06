"""Serve the sandbox with uvicorn on a loopback socket bound before anything says ready."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Callable, Generator

import uvicorn
from starlette.types import ASGIApp


class LoopbackOnlyError(ValueError):
    """The sandbox was asked to listen somewhere other than loopback."""


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (or `localhost`)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_loopback(host: str, port: int) -> socket.socket:
    """A listening socket on a loopback address (port 0: any free port)."""
    if not is_loopback(host):
        raise LoopbackOnlyError(
            f"the Amazon sandbox listens on loopback only (127.0.0.1, ::1), not {host!r}: "
            "its control API takes no token"
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(512)
    return sock


def base_url(sock: socket.socket) -> str:
    """`http://host:port` of a bound socket."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class SandboxServer(uvicorn.Server):
    """uvicorn with a started event; no signal handling when run inside another program."""

    def __init__(self, app: ASGIApp, *, handle_signals: bool = True) -> None:
        super().__init__(
            uvicorn.Config(
                app,
                log_config=None,
                access_log=False,
                lifespan="on",
                ws="none",
                server_header=False,
                timeout_graceful_shutdown=2,
            )
        )
        self.started_event = asyncio.Event()
        self._handle_signals = handle_signals

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """uvicorn's SIGINT/SIGTERM handling, unless this server runs inside someone else's."""
        if self._handle_signals:
            with super().capture_signals():
                yield
        else:
            yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start listening, then set `started_event`."""
        await super().startup(sockets)
        self.started_event.set()


async def serve(
    app: ASGIApp,
    sock: socket.socket,
    *,
    on_ready: Callable[[str], None] | None = None,
    handle_signals: bool = True,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve `app` on `sock` until SIGINT/SIGTERM or until `stop` is set; call
    `on_ready(base_url)` once listening."""
    server = SandboxServer(app, handle_signals=handle_signals)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    if stop is not None:

        async def watch() -> None:
            await stop.wait()
            server.should_exit = True

        watcher = asyncio.create_task(watch())
        serving.add_done_callback(lambda _: watcher.cancel())
    started = asyncio.create_task(server.started_event.wait())
    await asyncio.wait({serving, started}, return_when=asyncio.FIRST_COMPLETED)
    if not started.done():
        started.cancel()
        await serving  # raises what stopped it during start-up
        return
    if on_ready is not None:
        on_ready(base_url(sock))
    await serving
