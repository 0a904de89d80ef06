"""Exactly-once shipments: 2,000 parcels reach three channels once each, whatever happens.

The real daemon and the reference marketplace run as separate processes. Every API call of the
marketplace fails 10% of the time before applying and 30% of the time after applying (the
answer is lost past the client's timeout), and the daemon is SIGKILLed 10 times while the
shipments are being recorded and pushed. The assertion is what each marketplace holds: every
order's parcel once, with its tracking number; none twice; none missing; no job given up.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from sync.db import Database, upgrade
from sync.models import Channel, JobKind, JobState, Listing, OutboxJob, Sku, StockLevel
from sync.models import Order as OrderRow
from tests.support.daemon import Daemon, DaemonConfig, wait_for
from tests.support.reference import ReferenceSandbox

ADMIN_TOKEN = "exactly-once-admin-token-7c2e"
CHANNELS = {"alpha": "alpha:idempotent", "beta": "beta", "gamma": "gamma:cas"}
SHIPMENTS = 2000
KILLS = 10
SKUS = [f"P{n:02}" for n in range(20)]
# Of every call: 10% fail before applying; of the rest, a third (30% of all) apply and lose
# the answer past the client's timeout.
FAULTS = {
    "seed": 7,
    "default": {"fail_before_rate": 0.10, "fail_after_rate": 0.30 / 0.90},
    "lost_answer": "timeout",
    "timeout_delay_s": 0.8,
}
CLIENT_TIMEOUT_S = 0.4
MAIN = """
[outbox]
lease_s = 3.0
retry_base_s = 0.2
retry_cap_s = 1.0
max_attempts = 100
"""
CHANNEL_EXTRA = """
[schedule]
poll_interval_s = 0.5
"""


def _prepare_store(url: str, channels: list[str]) -> None:
    """Schema, SKUs and listings, as onboarding leaves them, before the daemon first starts."""
    db = Database(url)
    try:
        upgrade(db)
        with db.session() as session:
            session.add_all(Channel(name=name, kind="reference") for name in channels)
            session.add_all(Sku(sku=sku) for sku in SKUS)
            session.flush()
            session.add_all(StockLevel(sku=sku, location="default", on_hand=1000) for sku in SKUS)
            ids = {c.name: c.id for c in session.scalars(select(Channel))}
            session.add_all(
                Listing(channel_id=ids[name], sku=sku, external_ref=f"L-{sku}")
                for name in channels
                for sku in SKUS
            )
    finally:
        db.dispose()


def _orders_stored(url: str) -> dict[str, int]:
    db = Database(url)
    try:
        with db.read_session() as session:
            return {
                f"{name}/{ext}": order_id
                for order_id, name, ext in session.execute(
                    select(OrderRow.id, Channel.name, OrderRow.external_id).join(
                        Channel, OrderRow.channel_id == Channel.id
                    )
                )
            }
    finally:
        db.dispose()


def _open_jobs(url: str) -> tuple[int, int]:
    """(shipment jobs pending or running, shipment jobs dead)."""
    db = Database(url)
    try:
        with db.read_session() as session:
            counts = dict(
                session.execute(
                    select(OutboxJob.state, func.count())
                    .where(OutboxJob.kind == JobKind.SHIPMENT)
                    .group_by(OutboxJob.state)
                ).all()
            )
    finally:
        db.dispose()
    return counts.get(JobState.PENDING, 0) + counts.get(JobState.RUNNING, 0), counts.get(
        JobState.DEAD, 0
    )


class Crasher:
    """The daemon, killed with SIGKILL at chosen moments and started again at once."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.kills = 0

    def kill_and_restart(self) -> None:
        self.daemon.kill()
        self.kills += 1
        self.daemon.start()

    def healthy(self) -> None:
        self.daemon.wait_healthy(timeout=60)


def _record(admin: httpx.Client, crasher: Crasher, order_id: int, tracking: str) -> None:
    """POST the shipment; after a lost answer, ask the store whether it was recorded."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            answer = admin.post(
                f"/api/orders/{order_id}/shipments",
                json={"carrier": "UPS", "tracking": tracking},
            )
            if answer.status_code == 201 or answer.status_code == 200:
                return
            # Refused: recorded by a request whose answer the kill cut off, or a real bug.
            order = admin.get(f"/api/orders/{order_id}").json()
            assert order["status"] == "shipped", f"{answer.status_code} {answer.text}"
            return
        except httpx.TransportError:
            crasher.healthy()
    raise AssertionError(f"order {order_id}: the shipment could not be recorded in 120 s")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_shipment_reaches_its_channel_exactly_once(tmp_path: Path, db_url: str) -> None:
    rng = random.Random(2026)
    with ReferenceSandbox(tmp_path / "sandbox", list(CHANNELS.values())) as sandbox:
        for name in CHANNELS:
            sandbox.control(name, "POST", "/stock", {sku: 1000 for sku in SKUS})
        placed: list[tuple[str, str]] = []
        for n in range(SHIPMENTS):
            name = list(CHANNELS)[n % len(CHANNELS)]
            body = {"lines": [{"sku": rng.choice(SKUS), "quantity": rng.randint(1, 2)}]}
            placed.append((name, sandbox.control(name, "POST", "/orders", body)["order_id"]))

        _prepare_store(db_url, list(CHANNELS))
        config = DaemonConfig(
            root=tmp_path / "cfg",
            database_url=db_url,
            extra_main=MAIN,
            channels={
                name: sandbox.channel_file(name, timeout_s=CLIENT_TIMEOUT_S, extra=CHANNEL_EXTRA)
                for name in CHANNELS
            },
        )
        config.write()
        daemon = Daemon(config, {config.admin_token_env: ADMIN_TOKEN, **sandbox.env}).start()
        crasher = Crasher(daemon)
        try:
            crasher.healthy()

            def all_polled_in() -> dict[str, int] | None:
                stored = _orders_stored(db_url)
                return stored if len(stored) == SHIPMENTS else None

            stored = wait_for(
                all_polled_in, timeout=120, what=f"the daemon to poll in all {SHIPMENTS} orders"
            )
            for name in CHANNELS:
                sandbox.control(name, "POST", "/faults", FAULTS)

            # Kills land while shipments are being recorded (7) and while the last are pushed (3).
            kill_at = set(rng.sample(range(100, SHIPMENTS), KILLS - 3))
            with httpx.Client(
                base_url=config.admin_url,
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=10,
            ) as admin:
                for n, (name, ext) in enumerate(placed):
                    if n in kill_at:
                        crasher.kill_and_restart()
                    _record(admin, crasher, stored[f"{name}/{ext}"], f"TRK-{name}-{ext}")
            for _ in range(KILLS - crasher.kills):
                crasher.healthy()
                wait_for(lambda: _open_jobs(db_url)[0] < 200 or None, timeout=120, what="pushes")
                crasher.kill_and_restart()
            crasher.healthy()
            wait_for(
                lambda: _open_jobs(db_url)[0] == 0,
                timeout=300,
                what="every shipment job to finish",
            )
            _, dead = _open_jobs(db_url)
            for name in CHANNELS:
                sandbox.control(name, "POST", "/faults", {})
            received = {
                name: sandbox.control(name, "GET", "/fulfillments")["fulfillments"]
                for name in CHANNELS
            }
        finally:
            daemon.kill()
            output = daemon.output()

    parcels = Counter(
        (name, parcel["order_id"], parcel["tracking_number"])
        for name, items in received.items()
        for parcel in items
    )
    wanted = {(name, ext, f"TRK-{name}-{ext}") for name, ext in placed}
    duplicates = {key: n for key, n in parcels.items() if n > 1}
    missing = wanted - set(parcels)
    strange = set(parcels) - wanted
    figures = {
        "shipments": SHIPMENTS,
        "parcels_received": sum(parcels.values()),
        "duplicates": sum(n - 1 for n in duplicates.values()),
        "missing": len(missing),
        "unexpected": len(strange),
        "dead_jobs": dead,
        "kills": crasher.kills,
    }
    (tmp_path / "figures.json").write_text(json.dumps(figures))
    print("exactly-once figures:", json.dumps(figures))
    assert crasher.kills == KILLS
    assert not duplicates, f"{figures}; for example {sorted(duplicates)[:3]}"
    assert not missing, f"{figures}; for example {sorted(missing)[:3]}"
    assert not strange, f"{figures}; for example {sorted(strange)[:3]}"
    assert dead == 0, figures
    assert ADMIN_TOKEN not in output and sandbox.token not in output
