"""The Amazon sandbox as its users run it: `python -m sandbox.amazon` in a subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tests.support.daemon import wait_for

REPO = Path(__file__).resolve().parents[3]


class AmazonProcess:
    """One `python -m sandbox.amazon` process; its ready file's contents in `info`."""

    def __init__(self, root: Path, args: Sequence[str], name: str = "amazon-sandbox") -> None:
        self.ready = root / f"{name}.json"
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.token = ""

    def __enter__(self) -> AmazonProcess:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sandbox.amazon",
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
        proc = self.proc
        wait_for(
            lambda: self.ready.exists() or proc.poll() is not None,
            timeout=60,
            what="the Amazon sandbox's ready file",
        )
        assert proc.poll() is None, proc.communicate()[1].decode()
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

    def login(self) -> str:
        """A seller access token from the sandbox's LWA."""
        response = httpx.post(
            self.info["lwa_token_url"],
            data={
                "grant_type": "refresh_token",
                "refresh_token": self.info["refresh_token"],
                "client_id": self.info["client_id"],
                "client_secret": self.info["client_secret"],
            },
            timeout=10,
        )
        assert response.status_code == 200, response.text
        self.token = response.json()["access_token"]
        return self.token

    def api(self, method: str, path: str, *, timeout: float = 10, **kwargs: Any) -> httpx.Response:
        """An SP-API call with the access token."""
        return httpx.request(
            method,
            f"{self.info['api_base_url']}{path}",
            headers={"x-amz-access-token": self.token},
            timeout=timeout,
            **kwargs,
        )
