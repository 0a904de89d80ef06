"""The eBay sandbox as its users run it: `python -m sandbox.ebay` in a subprocess, and a
notification endpoint served by uvicorn on loopback in a thread of the test process that answers
eBay's challenge and queues every message."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.ebay.serve import SandboxServer, base_url, bind_loopback
from tests.support.daemon import wait_for

REPO = Path(__file__).resolve().parents[3]


class EbayProcess:
    """One `python -m sandbox.ebay` process; its ready file's contents in `info`."""

    def __init__(self, root: Path, args: Sequence[str]) -> None:
        self.ready = root / "ebay-sandbox.json"
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    def __enter__(self) -> EbayProcess:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sandbox.ebay",
                "--port",
                "0",
                *self.args,
                "--ready-file",
                str(self.ready),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        wait_for(
            lambda: self.ready.exists() or self.proc.poll() is not None,  # type: ignore[union-attr]
            timeout=60,
            what="the eBay sandbox's ready file",
        )
        assert self.proc.poll() is None, self.proc.communicate()[1].decode()
        self.info = json.loads(self.ready.read_text())
        return self

    def stop(self) -> int:
        """SIGTERM, and the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        return self.proc.returncode

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def control(self, method: str, path: str, body: object = None) -> Any:
        """`/_sandbox{path}`; its JSON, failing on an error status."""
        response = httpx.request(
            method, f"{self.info['url']}/_sandbox{path}", json=body, timeout=10
        )
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def token(self, grant: str = "refresh_token", **form: str) -> str:
        """An access token from the identity endpoint (the seller's unless `grant` says)."""
        data = {"grant_type": grant, **form}
        if grant == "refresh_token":
            data["refresh_token"] = self.info["refresh_token"]
        secret = f"{self.info['client_id']}:{self.info['client_secret']}".encode()
        response = httpx.post(
            self.info["identity_url"],
            data=data,
            headers={"Authorization": "Basic " + base64.b64encode(secret).decode()},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token


class NotificationEndpoint:
    """A loopback HTTP endpoint that answers eBay's challenge and queues each message with its
    X-EBAY-SIGNATURE."""

    def __init__(self, verification_token: str) -> None:
        self.verification_token = verification_token
        self.received: queue.Queue[tuple[bytes, str]] = queue.Queue()
        self.challenges = 0
        app = Starlette(routes=[Route("/hooks", self._receive, methods=["GET", "POST"])])
        self.sock = bind_loopback("127.0.0.1", 0)
        self.server = SandboxServer(app, handle_signals=False)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])),
            name="ebay-notification-endpoint",
            daemon=True,
        )

    async def _receive(self, request: Request) -> Response:
        if request.method == "GET":
            self.challenges += 1
            code = request.query_params["challenge_code"]
            digest = hashlib.sha256(
                (code + self.verification_token + self.url).encode()
            ).hexdigest()
            return JSONResponse({"challengeResponse": digest})
        self.received.put((await request.body(), request.headers["x-ebay-signature"]))
        return Response(status_code=204)

    @property
    def url(self) -> str:
        """Where the sandbox pushes."""
        return f"{base_url(self.sock)}/hooks"

    def __enter__(self) -> NotificationEndpoint:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=10, what="the notification endpoint")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()

    def next(self, timeout: float = 10) -> tuple[bytes, str]:
        """The next message received (fails after `timeout` seconds)."""
        return self.received.get(timeout=timeout)
