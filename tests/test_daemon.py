"""The daemon as a user runs it: a real subprocess, its listeners, its health, its stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.daemon import CHANNEL_SYNC, Daemon, DaemonConfig, free_port, wait_for

TOKEN = "test-admin-token-0123456789"


@pytest.fixture
def daemon_config(tmp_path: Path, db_url: str) -> DaemonConfig:
    config = DaemonConfig(root=tmp_path / "cfg", database_url=db_url)
    config.write()
    return config


@pytest.fixture
def daemon(daemon_config: DaemonConfig) -> Iterator[Daemon]:
    proc = Daemon(daemon_config, {daemon_config.admin_token_env: TOKEN})
    yield proc
    proc.kill()


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_serves_health_and_stops_cleanly_then_restarts(daemon: Daemon) -> None:
    admin = daemon.config.admin_url
    daemon.start()
    daemon.wait_healthy()

    assert httpx.get(f"{admin}/readyz", headers=auth()).status_code == 200
    assert httpx.get(f"{admin}/api/status").status_code == 401
    assert httpx.get(f"{admin}/api/status", headers=auth("wrong-token")).status_code == 401
    assert httpx.get(f"{admin}/readyz").status_code == 401
    assert httpx.get(f"{admin}/metrics").status_code == 401
    status = httpx.get(f"{admin}/api/status", headers=auth())
    assert status.status_code == 200
    assert status.json()["channels"] == []
    metrics = httpx.get(f"{admin}/metrics", headers=auth())
    assert metrics.status_code == 200
    assert "channel_sync_build_info" in metrics.text

    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < daemon.config.drain_deadline_s

    # A second start on the same store finds its schema and serves again.
    daemon.start()
    daemon.wait_healthy()
    assert httpx.get(f"{admin}/readyz", headers=auth()).status_code == 200
    assert daemon.stop(signal.SIGINT) == 0


def test_refuses_an_unmigrated_store_until_migrate(tmp_path: Path, db_url: str) -> None:
    config = DaemonConfig(root=tmp_path / "cfg", database_url=db_url, auto_migrate=False)
    config.write()
    env = {**os.environ, config.admin_token_env: TOKEN}

    refused = subprocess.run(
        [CHANNEL_SYNC, "run", "--config", str(config.root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 3
    assert "channel-sync migrate" in refused.stderr

    migrated = subprocess.run(
        [CHANNEL_SYNC, "migrate", "--config", str(config.root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrated.returncode == 0, migrated.stderr
    again = subprocess.run(
        [CHANNEL_SYNC, "migrate", "--config", str(config.root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "already at revision" in again.stdout

    daemon = Daemon(config, {config.admin_token_env: TOKEN}).start()
    try:
        daemon.wait_healthy()
        assert httpx.get(f"{config.admin_url}/readyz", headers=auth()).status_code == 200
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_an_invalid_config_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    config = DaemonConfig(root=tmp_path / "cfg", database_url=None, extra_main="colour = 1")
    config.write()
    result = subprocess.run(
        [CHANNEL_SYNC, "run", "--config", str(config.root)],
        env={**os.environ, config.admin_token_env: TOKEN},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert f"{config.root / 'channel-sync.toml'}: colour:" in result.stderr


def test_a_taken_port_fails_start_up_with_a_reason(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = DaemonConfig(root=tmp_path / "cfg", database_url=None, admin_port=port)
        config.write()
        result = subprocess.run(
            [CHANNEL_SYNC, "run", "--config", str(config.root)],
            env={**os.environ, config.admin_token_env: TOKEN},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"cannot listen for admin on 127.0.0.1:{port}" in result.stderr


def test_speaks_the_systemd_notify_protocol(tmp_path: Path) -> None:
    config = DaemonConfig(root=tmp_path / "cfg", database_url=None)
    config.write()
    notify_path = tmp_path / "notify.sock"
    messages: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))

        def receive_until(line: str, count: int = 1, timeout: float = 15) -> None:
            deadline = time.monotonic() + timeout
            while sum(line in m.splitlines() for m in messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {count} x {line} within {timeout} s: {messages}")
                notify.settimeout(remaining)
                messages.append(notify.recv(4096).decode())

        env = {
            config.admin_token_env: TOKEN,
            "NOTIFY_SOCKET": str(notify_path),
            "WATCHDOG_USEC": "400000",
        }
        daemon = Daemon(config, env).start()
        try:
            receive_until("READY=1")
            # READY is sent only once the admin listener answers.
            assert httpx.get(f"{config.admin_url}/healthz").status_code == 200
            # Pings at half the 0.4 s interval keep coming after READY.
            receive_until("WATCHDOG=1", count=3, timeout=5)
            assert daemon.stop(signal.SIGTERM) == 0
            receive_until("STOPPING=1", timeout=1)
        finally:
            daemon.kill()
    ready = next(m for m in messages if "READY=1" in m.splitlines())
    assert any(line.startswith("STATUS=") for line in ready.splitlines())


def test_demo_starts_a_daemon_that_answers(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    admin_port, webhooks_port = free_port(), free_port()
    env = {
        **os.environ,
        "CHANNEL_SYNC_LISTENERS__ADMIN__PORT": str(admin_port),
        "CHANNEL_SYNC_LISTENERS__WEBHOOKS__PORT": str(webhooks_port),
    }
    proc = subprocess.Popen(
        [CHANNEL_SYNC, "demo", "--state-dir", str(state), "--duration", "30", "--rate", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        demo_json = state / "demo.json"
        wait_for(demo_json.exists, timeout=90, what="demo.json")  # sandboxes start first
        info = wait_for(
            lambda: json.loads(demo_json.read_text() or "null"), timeout=5, what="demo.json content"
        )
        assert info["admin_url"] == f"http://127.0.0.1:{admin_port}"
        assert httpx.get(f"{info['admin_url']}/healthz").status_code == 200
        status = httpx.get(f"{info['admin_url']}/api/status", headers=auth(info["admin_token"]))
        assert status.status_code == 200
        assert (state / "channel-sync.db").exists()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _, err = proc.communicate()
    assert f"http://127.0.0.1:{admin_port}" in err.decode()
