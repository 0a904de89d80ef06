"""The Shopify sandbox as its users run it: `python -m sandbox.shopify` in a subprocess, and a
webhook receiver served by uvicorn on loopback in a thread of the test process."""

from __future__ import annotations

import asyncio
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
from starlette.responses import Response
from starlette.routing import Route

from sandbox.shopify.serve import SandboxServer, base_url, bind_loopback
from tests.support.daemon import wait_for

REPO = Path(__file__).resolve().parents[3]


class ShopifyProcess:
    """One `python -m sandbox.shopify` process; its ready file's contents in `info`."""

    def __init__(self, root: Path, args: Sequence[str]) -> None:
        self.ready = root / "shopify-sandbox.json"
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    def __enter__(self) -> ShopifyProcess:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sandbox.shopify",
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
            what="the Shopify sandbox's ready file",
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

    def graphql(self, query: str, variables: dict[str, Any], *, timeout: float = 10) -> Any:
        """POST a document with the sandbox's token; the JSON body."""
        response = httpx.post(
            f"{self.info['api_base_url']}/2026-04/graphql.json",
            json={"query": query, "variables": variables},
            headers={"X-Shopify-Access-Token": self.info["token"]},
            timeout=timeout,
        )
        assert response.status_code == 200, response.text
        return response.json()


class WebhookReceiver:
    """A loopback HTTP server that queues every webhook it receives (body and headers)."""

    def __init__(self) -> None:
        self.received: queue.Queue[tuple[bytes, dict[str, str]]] = queue.Queue()
        app = Starlette(routes=[Route("/hooks", self._receive, methods=["POST"])])
        self.sock = bind_loopback("127.0.0.1", 0)
        self.server = SandboxServer(app, handle_signals=False)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])),
            name="webhook-receiver",
            daemon=True,
        )

    async def _receive(self, request: Request) -> Response:
        self.received.put((await request.body(), dict(request.headers)))
        return Response(status_code=200)

    @property
    def url(self) -> str:
        """Where to subscribe."""
        return f"{base_url(self.sock)}/hooks"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=10, what="the webhook receiver")
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

    def next(self, timeout: float = 10) -> tuple[bytes, dict[str, str]]:
        """The next webhook received (fails after `timeout` seconds)."""
        return self.received.get(timeout=timeout)
