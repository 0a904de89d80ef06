"""The reference sandbox for tests: as a real subprocess (`python -m sandbox.reference`) next to a
daemon, or in a thread of the test process for connector tests.

    with ReferenceSandbox(tmp_path, ["shop:cas", "plain:batch=10"]) as sandbox:
        sandbox.control("shop", "POST", "/stock", {"A": 5})
        config = DaemonConfig(..., channels={"shop": sandbox.channel_file("shop")})
        Daemon(config, {**env, **sandbox.env}).start()
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from sandbox.reference import bind_loopback, parse_channel
from sandbox.reference.serve import SandboxServer, base_url
from tests.support.daemon import wait_for

REPO = Path(__file__).resolve().parents[2]
SANDBOX_TOKEN = "reference-sandbox-test-token-5f1d"
TOKEN_ENV = "TEST_REFERENCE_SANDBOX_TOKEN"
"""The variable channel files name for the token (`token = "env:..."`); see `env`."""


class ReferenceSandbox:
    """One `python -m sandbox.reference` process serving `channels` (NAME[:cas][:idempotent]...)."""

    def __init__(
        self,
        root: Path,
        channels: Sequence[str],
        *,
        token: str = SANDBOX_TOKEN,
        seed: int = 0,
    ) -> None:
        self.root = root
        self.specs = {parse_channel(spec).name: parse_channel(spec) for spec in channels}
        self.channel_args = list(channels)
        self.token = token
        self.seed = seed
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self._ready = root / "reference-sandbox.json"

    @property
    def env(self) -> dict[str, str]:
        """What a daemon's environment needs for the channel files' token reference."""
        return {TOKEN_ENV: self.token}

    @property
    def url(self) -> str:
        """The server's root, `http://127.0.0.1:PORT`."""
        return str(self.info["url"])

    def channel_url(self, name: str) -> str:
        """A channel's root, the `base_url` of its channel file."""
        return str(self.info["channels"][name])

    def start(self, timeout: float = 20.0) -> ReferenceSandbox:
        """Start the process and wait for its ready file (failing early if it exits)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._ready.unlink(missing_ok=True)
        args = [sys.executable, "-m", "sandbox.reference", "--host", "127.0.0.1", "--port", "0"]
        for spec in self.channel_args:
            args += ["--channel", spec]
        args += ["--seed", str(self.seed), "--ready-file", str(self._ready)]
        with (
            open(self.root / "sandbox.stdout", "wb") as out,
            open(self.root / "sandbox.stderr", "wb") as err,
        ):
            self.proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=err,
                cwd=REPO,
                env={**os.environ, "SANDBOX_REFERENCE_TOKEN": self.token},
            )

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"sandbox exited with {self.proc.returncode}: {self.output()[-2000:]}"
                )
            return self._ready.exists()

        wait_for(ready, timeout=timeout, what="the reference sandbox's ready file")
        self.info = json.loads(self._ready.read_text())
        return self

    def output(self) -> str:
        """What the process printed, stdout then stderr."""
        return "\n".join(
            (self.root / f"sandbox.{stream}").read_text(errors="replace")
            for stream in ("stdout", "stderr")
            if (self.root / f"sandbox.{stream}").exists()
        )

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait; SIGKILL if it does not go. Answer the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(timeout=timeout)

    def __enter__(self) -> ReferenceSandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def control(self, channel: str, method: str, path: str, body: object = None) -> Any:
        """Call `/{channel}/_sandbox{path}`; answer its JSON, failing on any error status."""
        response = httpx.request(
            method, f"{self.channel_url(channel)}/_sandbox{path}", json=body, timeout=10
        )
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def channel_file(self, name: str, *, timeout_s: float = 5.0, extra: str = "") -> str:
        """A `channels/NAME.toml` for DaemonConfig that matches how the sandbox serves `name`."""
        options = self.specs[name]
        return (
            'kind = "reference"\n'
            f'base_url = "{self.channel_url(name)}"\n'
            f'token = "env:{TOKEN_ENV}"\n'
            f"compare_and_swap = {str(options.compare_and_swap).lower()}\n"
            f"idempotent_fulfillment = {str(options.idempotent).lower()}\n"
            f"max_stock_batch = {options.max_stock_batch}\n"
            f"timeout_s = {timeout_s}\n"
            f"{extra}"
        )


class ThreadedSandbox:
    """A sandbox app served by uvicorn in a thread of this process, on 127.0.0.1:0."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sock = bind_loopback("127.0.0.1", 0)
        self.server = SandboxServer(app, handle_signals=False)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])),
            name="reference-sandbox",
            daemon=True,
        )

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return base_url(self.sock)

    def __enter__(self) -> ThreadedSandbox:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=10, what="the sandbox server to start")
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
        assert not self.thread.is_alive(), "the sandbox server thread did not stop"
