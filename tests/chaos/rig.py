"""The chaos run's set-up: the three sandbox marketplaces, the store and the daemon, with the
fault knobs the issue asks for and a crasher that SIGKILLs and restarts the daemon.

Built from the pieces the end-to-end bench already uses (bench/e2e_rig.py: the sandboxes as a
child process, the store seeded in bulk; sandbox/demo_config.py: the demo's channel files;
tests/support/daemon.py: `channel-sync run` as a child process). Only the schedule of the
channel files and the daemon's main file are the run's own (shorter leases and retry delays, so
that a killed daemon's work moves on within seconds rather than minutes).
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from bench.e2e_rig import SandboxChild, seed_store
from sandbox.demo_catalogue import Product
from sandbox.demo_config import DemoPaths, write_channel_files
from sync.db import Database, sqlite_url
from sync.models import JobState, Listing, Order, OutboxJob
from tests.chaos.cluster import PrivateCluster
from tests.support.daemon import Daemon, DaemonConfig

T = TypeVar("T")

ADMIN_TOKEN = "chaos-run-admin-token-5e0c1d"
CHANNELS = ("shopify", "amazon", "ebay")
CLIENT_TIMEOUT_S = 30.0
"""The connectors' read timeout (connectors/*/const.py TIMEOUT_S): a held answer must outlast it
for the call to time out at the client."""

OUTBOX_LEASE_S = 45.0
"""How long a claimed outbox job is the claimant's: longer than one call to a channel can take
(the connectors' 30 s read timeout, which the injected timeouts run into). The daemon frees a
job whose lease ran out as if its worker had died; a shorter lease frees jobs whose call is
still in flight (see the report of issue 9: the stock pusher then records a late answer)."""


def main_file(lease_s: float) -> str:
    """The daemon's main-file additions: scheduler leases and outbox retries short enough that a
    SIGKILLed daemon's work moves on within seconds; enough tries that 35% failing calls do not
    exhaust a job (a dead job must mean a refusal, not bad luck). A reconcile re-reads orders
    from 5 minutes before the poll checkpoint, not an hour: Amazon's searchOrders gives one page
    of 100 every three minutes, and the polls have read everything before the checkpoint."""
    return (
        "[schedules]\nheartbeat_s = 1.0\nlease_ttl_s = 3.0\nreconcile_overlap_s = 300\n"
        f"[outbox]\nlease_s = {lease_s}\nretry_base_s = 0.3\nretry_cap_s = 3.0\n"
        "max_attempts = 100\n"
    )


# Per channel: (poll, reconcile) seconds. Amazon's searchOrders bucket refills one call every
# three minutes (CHANNELS.md), so its poll stays slow: its notifications carry the load.
SCHEDULES = {"shopify": (2.0, 120.0), "amazon": (20.0, 240.0), "ebay": (2.0, 120.0)}


def api_fault_rates(kind: str) -> dict[str, float]:
    """20% 5xx, 10% throttled, 5% timeouts of all calls, as each sandbox's knobs (drawn in turn:
    429, then THROTTLED on Shopify, then 5xx, then timeout; each rate applies to what the
    earlier draws left)."""
    if kind == "shopify":  # half of the throttles are HTTP 429, half THROTTLED answers
        return {
            "too_many_rate": 0.05,
            "throttled_rate": 0.05 / 0.95,
            "error_rate": 0.20 / 0.90,
            "timeout_rate": 0.05 / 0.70,
        }
    return {"too_many_rate": 0.10, "error_rate": 0.20 / 0.90, "timeout_rate": 0.05 / 0.70}


EBAY_TRADING_CALLS = (
    "ReviseInventoryStatus",
    "GetOrders",
    "CompleteSale",
    "GetItem",
    "GetMyeBaySelling",
)
"""eBay's Trading calls: their throttle is error 518, which eBay sends when the application's
daily call quota is spent, and the daemon rightly stops calling Trading until the quota resets
(connectors/ebay/quota.py). Injected at random it would freeze eBay's stock for the rest of the
day, so these calls get the 5xx and timeouts only; eBay's REST calls get HTTP 429 as well."""


def chaos_faults(kind: str, seed: int, timeout_delay_s: float) -> dict[str, Any]:
    """The body of `POST /_sandbox/faults` for one sandbox: API faults, and 30% dropped, 20%
    duplicated, jittered (so reordered) webhooks or notifications."""
    deliveries = {"drop_rate": 0.30, "duplicate_rate": 0.20, "jitter_s": 2.0}
    body: dict[str, Any] = {
        "seed": seed,
        "default": api_fault_rates(kind),
        "timeout_delay_s": timeout_delay_s,
        "timeout_applies": True,
    }
    if kind == "shopify":
        body |= {"retry_after_s": 0.5, "webhooks": deliveries}
    elif kind == "amazon":
        body |= {"notifications": deliveries}
    else:
        trading = {"error_rate": 0.20, "timeout_rate": 0.05 / 0.80}
        body |= {
            "retry_after_s": 0.5,
            "notifications": deliveries,
            "operations": dict.fromkeys(EBAY_TRADING_CALLS, trading),
        }
    return body


def retry_store(read: Callable[[], T], *, limit_s: float = 90.0) -> T:
    """Run a store read, again while the store is unreachable (the PostgreSQL restart)."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            return read()
        except DBAPIError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@dataclass
class Crasher:
    """The daemon: SIGKILLed on purpose (counted), started again on the same config and store;
    an exit nobody asked for is counted apart, with its code, and the daemon started again."""

    daemon: Daemon
    kills: int = 0
    unexpected_exits: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def kill(self) -> None:
        """SIGKILL now (the restart is `start`)."""
        with self.lock:
            self._note_exit()
            proc = self.daemon.proc
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                self.kills += 1

    def start(self) -> None:
        """Start it again (a no-op while it runs)."""
        with self.lock:
            self._note_exit()
            proc = self.daemon.proc
            if proc is None or proc.poll() is not None:
                self.daemon.start()

    def revive(self) -> None:
        """Start it again if it exited on its own."""
        with self.lock:
            if self._note_exit():
                self.daemon.start()

    def _note_exit(self) -> bool:
        """Count an exit nobody asked for (once); answer whether the daemon is down for it."""
        proc = self.daemon.proc
        if proc is None or proc.returncode is not None:
            return False  # never started, or its exit is known already (a kill, or counted)
        code = proc.poll()
        if code is None:
            return False
        self.unexpected_exits.append(code)
        return True

    def healthy(self) -> bool:
        """/healthz answers 200 now."""
        try:
            url = f"{self.daemon.config.admin_url}/healthz"
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def wait_healthy(self, limit_s: float = 600.0) -> None:
        """Poll /healthz (reviving a daemon that exited) until it answers, or fail."""
        deadline = time.monotonic() + limit_s
        while not self.healthy():
            self.revive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the daemon did not answer /healthz within {limit_s:.0f} s")
            time.sleep(0.1)


@dataclass
class Rig:
    """The running marketplaces, store and daemon."""

    state: Path
    config: DaemonConfig
    crasher: Crasher
    sandboxes: dict[str, Any]
    db: Database
    cluster: PrivateCluster | None

    def control(self, channel: str, path: str) -> str:
        """URL of a control API route of a channel's sandbox."""
        return f"{self.sandboxes[channel]['sandbox_url']}/_sandbox{path}"

    def admin(self, timeout: float = 30.0) -> httpx.Client:
        """A client on the admin API with the bearer token."""
        return httpx.Client(
            base_url=self.config.admin_url,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=timeout,
        )

    def jobs_open(self) -> int:
        """Outbox jobs pending or running (read from the store)."""

        def read() -> int:
            with self.db.read_session() as session:
                return int(
                    session.scalar(
                        select(func.count()).where(
                            OutboxJob.state.in_([JobState.PENDING, JobState.RUNNING])
                        )
                    )
                    or 0
                )

        return retry_store(read)

    def orders_stored(self) -> int:
        """Orders in the store."""
        with self.db.read_session() as session:
            return int(session.scalar(select(func.count()).select_from(Order)) or 0)

    def dirty_listings(self) -> int:
        """Listings whose channel still owes a push."""

        def read() -> int:
            with self.db.read_session() as session:
                return int(
                    session.scalar(
                        select(func.count()).where(Listing.is_dirty.is_(True)).select_from(Listing)
                    )
                    or 0
                )

        return retry_store(read)

    def listings_bound(self) -> int:
        """Listings bound over every channel."""
        with self.db.read_session() as session:
            return int(session.scalar(select(func.count()).select_from(Listing)) or 0)

    def set_faults(self, body_of: Callable[[str], Mapping[str, Any]]) -> None:
        """POST each sandbox's fault knobs."""
        with httpx.Client(timeout=30) as client:
            for channel in CHANNELS:
                answer = client.post(self.control(channel, "/faults"), json=dict(body_of(channel)))
                answer.raise_for_status()

    def sync_all(self, limit_s: float) -> dict[str, int]:
        """`POST /api/channels/{name}/sync` for every channel at once; the status of each."""
        results: dict[str, int] = {}

        def one(channel: str) -> None:
            with self.admin(timeout=limit_s) as admin:
                results[channel] = admin.post(f"/api/channels/{channel}/sync").status_code

        threads = [threading.Thread(target=one, args=(c,)) for c in CHANNELS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(limit_s + 5)
        return results


def _tune_schedule(path: Path, kind: str) -> None:
    poll, reconcile = SCHEDULES[kind]
    text = path.read_text()
    text = re.sub(r"(?m)^poll_interval_s = .*$", f"poll_interval_s = {poll}", text)
    text = re.sub(r"(?m)^reconcile_interval_s = .*$", f"reconcile_interval_s = {reconcile}", text)
    path.write_text(text)


@contextmanager
def start_rig(
    state: Path,
    products: Sequence[Product],
    *,
    postgres: bool,
    say: Callable[[str], None],
    outbox_lease_s: float = OUTBOX_LEASE_S,
    log_level: str = "WARNING",
    limit_s: float = 180.0,
) -> Iterator[Rig]:
    """Store (a private PostgreSQL cluster, or a SQLite file), sandboxes and daemon running on
    `products`, every listing bound by a first sync of each channel; all stopped at the end."""
    state.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        cluster: PrivateCluster | None = None
        if postgres:
            cluster = PrivateCluster()
            stack.callback(cluster.remove)
            # The server's log outlives the cluster, beside the daemon's (a kept state dir).
            stack.callback(cluster.keep_log, state / "postgresql.log")
            url = cluster.start()
            say(f"store: private PostgreSQL cluster on port {cluster.port}")
        else:
            url = sqlite_url(state / "store.db")
            say("store: SQLite")
        config = DaemonConfig(
            root=state / "config", database_url=url, extra_main=main_file(outbox_lease_s)
        )
        config.write()
        sandboxes = SandboxChild(state, products, f"{config.webhooks_url}/webhooks/ebay")
        sandboxes.start()
        stack.callback(sandboxes.stop)
        db = Database(url)
        stack.callback(db.dispose)
        seed_store(db, products)  # while the sandboxes seed themselves
        info = sandboxes.wait_ready(limit_s)
        for kind, path in write_channel_files(DemoPaths(state), info, config.webhooks_url).items():
            _tune_schedule(path, kind)
        env = {config.admin_token_env: ADMIN_TOKEN, "CHANNEL_SYNC_LOGGING__LEVEL": log_level}
        crasher = Crasher(Daemon(config, env))
        crasher.start()
        stack.callback(crasher.daemon.kill)
        crasher.wait_healthy(limit_s)
        rig = Rig(state, config, crasher, info, db, cluster)
        answers = rig.sync_all(limit_s)
        if any(code != 200 for code in answers.values()):
            raise RuntimeError(f"the first sync of the channels answered {answers}")
        bound = rig.listings_bound()
        if bound < len(CHANNELS) * len(products):
            raise RuntimeError(f"{bound} listings bound, {len(CHANNELS) * len(products)} wanted")
        say(f"daemon up, {bound} listings bound")
        yield rig
        with ExitStack() as ending:  # a graceful stop; SIGKILL when it does not come
            ending.callback(crasher.daemon.kill)
            proc = crasher.daemon.proc
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    say("the daemon did not stop within 30 s of SIGTERM")
