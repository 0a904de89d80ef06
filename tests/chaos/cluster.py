"""A throwaway PostgreSQL cluster of the run's own, so that it can be crashed and restarted.

The suite's server at 127.0.0.1:5432 is shared with every other test and is never restarted;
the chaos run needs a store it may pull from under the daemon (`pg_ctl restart -m immediate`,
which is how a crashed server comes back: no clean shutdown, WAL recovery on start). initdb
refuses to run as root, so as root every PostgreSQL binary runs as the `postgres` user, in a
temporary directory given to that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.daemon import free_port

DATABASE = "chaos"


class ClusterUnavailableError(RuntimeError):
    """No private cluster can be made here; the message says why."""


def _binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise ClusterUnavailableError("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
    return Path(found[-1]).parent  # the newest major version installed


def _run_as() -> str | None:
    """The user to run the binaries as: `postgres` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ClusterUnavailableError("running as root and there is no `postgres` user") from None
    if shutil.which("runuser") is None:
        raise ClusterUnavailableError("running as root and `runuser` is missing")
    return "postgres"


class PrivateCluster:
    """initdb into a temporary directory, serve it on a free loopback port, restart it, remove it."""

    def __init__(self) -> None:
        self.bin = _binaries()
        self.user = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.restarts = 0
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    @property
    def url(self) -> str:
        """The store's URL on this cluster (trust authentication on loopback)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _command(self, tool: str, *args: str) -> list[str]:
        command = [str(self.bin / tool), *args]
        return ["runuser", "-u", self.user, "--", *command] if self.user else command

    def _run(self, tool: str, *args: str, timeout: float = 120.0) -> None:
        done = subprocess.run(
            self._command(tool, *args),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.root,
        )
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise ClusterUnavailableError(
                f"{tool} failed ({done.returncode}): {' | '.join(detail)}"
            )

    def start(self) -> str:
        """Create the cluster and its database, start the server; answer the store's URL."""
        self._run(
            "initdb",
            *("-D", str(self.data)),
            *("-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-instructions"),
        )
        self.resume()
        self._run(
            "createdb",
            *("-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", DATABASE),
        )
        return self.url

    def crash_restart(self) -> None:
        """Stop the server the way a crash does (no checkpoint, clients cut off) and start it
        again: it recovers from its WAL before it takes connections."""
        self._run(
            "pg_ctl",
            *("-D", str(self.data), "-l", str(self.root / "server.log")),
            *("-m", "immediate", "-w", "-t", "60", "restart"),
        )
        self.restarts += 1

    def stop(self) -> None:
        """Stop the server cleanly (it refuses connections until `resume`)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def resume(self) -> None:
        """Start the stopped server again, on the same port."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c max_connections=100 -c shared_buffers=32MB"
        )
        self._run(
            "pg_ctl",
            *("-D", str(self.data), "-l", str(self.root / "server.log")),
            *("-o", options, "-w", "-t", "60", "start"),
        )

    def keep_log(self, target: Path) -> None:
        """Copy the server's log to `target` (before `remove`)."""
        log = self.root / "server.log"
        if log.exists():
            shutil.copyfile(log, target)

    def remove(self) -> None:
        """Stop the server (if it runs) and delete everything it wrote."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(ClusterUnavailableError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def cluster_unavailable_reason() -> str | None:
    """Why no private cluster can be made here, or None when one can (binaries and a user)."""
    try:
        _binaries()
        _run_as()
    except ClusterUnavailableError as exc:
        return str(exc)
    return None


def require_private_cluster(purpose: str) -> None:
    """Skip the calling test when no private cluster can be made here, saying why; under
    CI=true (or CHANNEL_SYNC_REQUIRE_PG=1) fail instead: there it must run."""
    import pytest  # only tests call this; the chaos run's CLI does not need pytest loaded

    reason = cluster_unavailable_reason()
    if reason is None:
        return
    message = f"no private PostgreSQL cluster {purpose}: {reason}"
    required = (
        os.environ.get("CI", "").strip().lower() == "true"
        or os.environ.get("CHANNEL_SYNC_REQUIRE_PG") == "1"
    )
    if required:
        pytest.fail(f"{message} (CI=true or CHANNEL_SYNC_REQUIRE_PG=1: an error, not a skip)")
    pytest.skip(message)
