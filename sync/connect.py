"""The seller's side of connecting a channel: a short-lived callback listener, and the 0600 file
the credential lands in.

`channel-sync shopify connect` and `channel-sync ebay connect` print a marketplace's consent URL;
the marketplace sends the seller's browser back to `/oauth/KIND/CHANNEL/callback` on the webhook
listener's address. `CallbackServer` serves that one path until one callback passes the
connector's checks and exchange (`accept`), writes the credential, then answers the browser and
stops. A callback that fails a check (`accept` raises ValueError: a bad signature, a stale
state) is answered 403 with the reason and the listener keeps waiting, so a forged or stale link
can neither store anything nor end the genuine run. Nothing here logs a query string: it carries
the one-time code.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from connectors.errors import ConnectorError
from sync.service import Listener, _Server, bind

CALLBACK_PATH = "/oauth/{kind}/{channel}/callback"
CREDENTIALS_DIR = "credentials"
SHUTDOWN_GRACE_S = 2

CallbackParams = Mapping[str, str | Sequence[str]]


@dataclass(frozen=True)
class Obtained:
    """A credential a marketplace granted, and what to tell the seller about it."""

    secret: str
    note: str = ""

    def __repr__(self) -> str:
        return f"Obtained(secret='**********', note={self.note!r})"


Accept = Callable[[CallbackParams], Awaitable[Obtained]]
"""Check a callback and exchange its code: ValueError when refused, ConnectorError on failure."""


def callback_path(kind: str, channel: str) -> str:
    """The callback's path on the webhook listener."""
    return CALLBACK_PATH.format(kind=kind, channel=channel)


def secret_file(state_dir: Path, channel: str, key: str) -> Path:
    """Where a channel's connected credential is kept: `STATE_DIR/credentials/CHANNEL.KEY`."""
    return state_dir / CREDENTIALS_DIR / f"{channel}.{key}"


def write_secret(path: Path, value: str) -> None:
    """Write `value` to `path`, mode 0600 from its first byte, replacing the file atomically."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a leftover partial file may have had another mode
        os.write(fd, (value + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)


def _params(request: Request) -> dict[str, str | Sequence[str]]:
    params: dict[str, str | Sequence[str]] = {}
    for key, value in request.query_params.multi_items():
        if key.endswith("[]"):
            listed = params.setdefault(key, [])
            assert isinstance(listed, list)
            listed.append(value)
        else:
            params[key] = value
    return params


class CallbackServer:
    """One callback path served on the webhook listener's address until a callback is accepted."""

    def __init__(self, listener: Listener, path: str) -> None:
        self.path = path
        self._sock = bind(listener)  # OSError naming the address when it is taken
        host, port = self._sock.getsockname()[:2]
        shown = "127.0.0.1" if host == "0.0.0.0" else "::1" if host == "::" else host
        self.local_url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}{path}"

    def close(self) -> None:
        """Release the socket (after `receive`, or instead of it)."""
        self._sock.close()

    async def receive(
        self, accept: Accept, target: Path, *, timeout_s: float, say: Callable[[str], None]
    ) -> Obtained:
        """Serve until a callback is accepted and its credential written to `target`; TimeoutError
        after `timeout_s`, the connector's error when the exchange fails, OSError when the file
        cannot be written."""
        outcome: asyncio.Future[Obtained] = asyncio.get_running_loop().create_future()
        lock = asyncio.Lock()

        async def callback(request: Request) -> Response:
            async with lock:  # a double-clicked tab must not spend the code twice
                if outcome.done():
                    return PlainTextResponse("channel-sync: this connect run is over.\n", 409)
                try:
                    obtained = await accept(_params(request))
                except ValueError as refused:
                    say(f"refused a callback: {refused}")
                    return PlainTextResponse(
                        f"channel-sync refused this callback: {refused}\n", status_code=403
                    )
                except ConnectorError as failed:
                    outcome.set_exception(failed)
                    return PlainTextResponse(
                        f"channel-sync could not finish connecting: {failed}\n", status_code=502
                    )
                try:
                    write_secret(target, obtained.secret)
                except OSError as failed:  # the message names the file, never the secret
                    outcome.set_exception(failed)
                    return PlainTextResponse(
                        f"channel-sync could not store the credential: {failed}\n", 500
                    )
                outcome.set_result(obtained)
                return PlainTextResponse(
                    "channel-sync: connected. You can close this tab and go back to the terminal.\n"
                )

        app = Starlette(routes=[Route(self.path, callback, methods=["GET"])])
        server = _Server(
            uvicorn.Config(
                app,
                log_config=None,
                access_log=False,  # the query string holds the one-time code
                lifespan="off",
                server_header=False,
                timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
            )
        )
        serving = asyncio.create_task(server.serve(sockets=[self._sock]), name="connect-callback")
        try:
            async with asyncio.timeout(timeout_s):
                waiting: set[asyncio.Future[Any]] = {outcome, serving}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not outcome.done():
                raise RuntimeError(f"the callback listener stopped: {serving.exception()!r}")
            return outcome.result()
        finally:
            server.should_exit = True
            await serving


def public_callback_url(public_hook_url: str | None, path: str) -> str | None:
    """The callback's address beside the channel's public webhook URL (behind the seller's TLS
    proxy), or None when the channel has none."""
    if not public_hook_url:
        return None
    parts = urlsplit(public_hook_url)
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def connected_message(
    *, channel: str, key: str, target: Path, reference_now: str | None, note: str
) -> str:
    """What the seller reads once the credential is stored: where, and the line to write."""
    reference = f"file:{target}"
    lines = [f"channel {channel} connected: the {key.replace('_', ' ')} is in {target} (mode 0600)"]
    if note:
        lines.append(note)
    if reference_now == reference:
        lines.append(f"the channel file already has {key} = {json.dumps(reference)}:")
    else:
        lines += [
            f"put this line in the channel file (replacing any {key} line):",
            f"    {key} = {json.dumps(reference)}",
        ]
    lines.append("then restart the daemon so that it reads the new credential.")
    return "\n".join(lines)


__all__ = [
    "CALLBACK_PATH",
    "Accept",
    "CallbackParams",
    "CallbackServer",
    "Obtained",
    "callback_path",
    "connected_message",
    "public_callback_url",
    "secret_file",
    "write_secret",
]
