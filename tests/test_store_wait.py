"""The daemon started before its PostgreSQL answers (a boot, a crash restart): it waits, saying
so, and serves once the server is up; a server that stays away ends the daemon with exit 5 and
one line naming the refusal, not a traceback, so that systemd's Restart= tries again."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.store_wait import EXIT_STORE_UNREACHABLE
from tests.chaos.cluster import PrivateCluster, require_private_cluster
from tests.support.daemon import Daemon, DaemonConfig, free_port, wait_for

TOKEN = "test-admin-token-0123456789"


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    require_private_cluster("to stop and start")
    made = PrivateCluster()
    try:
        made.start()
        yield made
    finally:
        made.remove()


def _daemon(tmp_path: Path, url: str, wait_s: float) -> Daemon:
    config = DaemonConfig(root=tmp_path / "cfg", database_url=url, extra_main="")
    config.write()
    # start_wait_s lives in [database], which DaemonConfig writes: append the key to it.
    main = config.root / "channel-sync.toml"
    main.write_text(
        main.read_text().replace("[database]\n", f"[database]\nstart_wait_s = {wait_s}\n")
    )
    return Daemon(config, {config.admin_token_env: TOKEN})


def test_the_daemon_waits_for_a_store_that_is_starting(
    tmp_path: Path, cluster: PrivateCluster
) -> None:
    cluster.stop()
    daemon = _daemon(tmp_path, cluster.url, wait_s=120).start()
    try:
        wait_for(
            lambda: "waiting for the store" in daemon.output() or None,
            timeout=30,
            what="the daemon to say it waits for the store",
        )
        assert daemon.proc is not None and daemon.proc.poll() is None  # still waiting, alive
        cluster.resume()
        daemon.wait_healthy(timeout=60)
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    assert "Traceback" not in daemon.output()


def test_a_store_that_stays_away_ends_the_daemon_with_a_clear_line(tmp_path: Path) -> None:
    url = f"postgresql://postgres:s3cret-canary@127.0.0.1:{free_port()}/nowhere"
    daemon = _daemon(tmp_path, url, wait_s=1).start()
    try:
        assert daemon.proc is not None
        code = daemon.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        daemon.kill()
        raise
    output = daemon.output()
    assert code == EXIT_STORE_UNREACHABLE, output[-2000:]
    assert "the store did not answer within 1 s" in output
    assert "refused" in output.lower()  # the server's own words: nothing listens there
    assert "Traceback" not in output
    assert "s3cret-canary" not in output
