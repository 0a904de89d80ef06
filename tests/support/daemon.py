"""Run `channel-sync` as a real subprocess against a config written into a temporary directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from sandbox.ports import free_port as sandbox_free_port

T = TypeVar("T")

CHANNEL_SYNC = str(Path(sys.executable).with_name("channel-sync"))


_handed_out: set[int] = set()


def _share() -> tuple[int, int]:
    """This pytest-xdist worker's share of the ports (gw3 of 4: part 3 of 4); all of them
    outside xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    return (index, count) if index < count else (0, 1)


def free_port() -> int:
    """A loopback port nobody is bound to right now, outside the kernel's ephemeral range (the
    sandboxes' listeners, started meanwhile, once got the daemon's webhook port from it), in
    this test worker's own share, and none this process handed out before (a daemon's admin
    and webhook listeners once got the same one)."""
    port = sandbox_free_port("127.0.0.1", share=_share(), avoid=_handed_out)
    _handed_out.add(port)
    return port


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Poll `check` until it answers something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class DaemonConfig:
    """A config directory for one test daemon."""

    root: Path
    database_url: str | None
    admin_token_env: str = "TEST_CHANNEL_SYNC_ADMIN_TOKEN"
    admin_port: int = field(default_factory=free_port)
    webhooks_port: int = field(default_factory=free_port)
    drain_deadline_s: float = 5.0
    auto_migrate: bool = True
    extra_main: str = ""
    channels: Mapping[str, str] = field(default_factory=dict)

    def write(self) -> Path:
        """Write channel-sync.toml and channels/*.toml; answer the directory."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "channels").mkdir(exist_ok=True)
        database = f'url = "{self.database_url}"\n' if self.database_url else ""
        (self.root / "channel-sync.toml").write_text(
            f'state_dir = "{self.root / "state"}"\n'
            f"{self.extra_main}\n"
            f"[database]\n{database}auto_migrate = {str(self.auto_migrate).lower()}\n"
            f'[listeners.webhooks]\nhost = "127.0.0.1"\nport = {self.webhooks_port}\n'
            f'[listeners.admin]\nhost = "127.0.0.1"\nport = {self.admin_port}\n'
            f'[admin]\ntoken = "env:{self.admin_token_env}"\n'
            f"[shutdown]\ndrain_deadline_s = {self.drain_deadline_s}\n"
            f'[logging]\nlevel = "INFO"\nformat = "json"\n'
        )
        for name, body in self.channels.items():
            (self.root / "channels" / f"{name}.toml").write_text(body)
        return self.root

    @property
    def admin_url(self) -> str:
        """Base URL of the admin app."""
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def webhooks_url(self) -> str:
        """Base URL of the webhook app."""
        return f"http://127.0.0.1:{self.webhooks_port}"


class Daemon:
    """One `channel-sync` process; stdout and stderr go to files so nothing blocks on a full pipe."""

    def __init__(self, config: DaemonConfig, env: Mapping[str, str], *args: str) -> None:
        self.config = config
        self.args = args or ("run", "--config", str(config.root))
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self._run = 0

    def start(self) -> Daemon:
        """Start the process (again, after a stop)."""
        self._run += 1
        out = open(self.config.root / f"stdout.{self._run}", "wb")  # noqa: SIM115
        err = open(self.config.root / f"stderr.{self._run}", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [CHANNEL_SYNC, *self.args], stdout=out, stderr=err, env=self.env
        )
        out.close()
        err.close()
        return self

    def output(self) -> str:
        """Everything every run of this daemon printed, stdout and stderr."""
        texts = []
        for n in range(1, self._run + 1):
            for stream in ("stdout", "stderr"):
                path = self.config.root / f"{stream}.{n}"
                if path.exists():
                    texts.append(path.read_text(errors="replace"))
        return "\n".join(texts)

    def wait_healthy(self, timeout: float = 30.0) -> float:
        """Poll /healthz until 200; answer how long it took. Fails early if the process died."""
        started = time.monotonic()

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"daemon exited with {self.proc.returncode}:\n{self.output()[-3000:]}"
                )
            try:
                return httpx.get(f"{self.config.admin_url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=timeout, what="/healthz to answer 200")
        return time.monotonic() - started

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `sig` and wait for the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL, for cleanup and crash tests."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
