"""The real daemon with an eBay channel against the eBay sandbox, both subprocesses on loopback.

The channel has ten Trading listings and two Inventory-API ones. Polls run only when the test
asks (`POST /api/channels/ebay/sync`: the poller's own path), so each way an order arrives is
seen on its own: with half the notifications dropped, the notified orders come by hint, the
rest by the poll, every one stored once. Stock goes out through each listing's own API, ten
Trading listings in three calls, and never past the daily quota: our count of calls, kept in
the store, matches the sandbox's, the daemon slows down before the quota runs out, and a
restart does not give the day's calls back. A shipment whose call times out after eBay created
it is not created twice.
"""

from __future__ import annotations

import random
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from sync.db import Database
from sync.models import InboxState, Listing, WebhookDelivery
from sync.models import Order as OrderRow
from sync.stock_ops import import_stock_csv
from tests.e2e.test_shopify_daemon import add_skus
from tests.sandbox.ebay.process import EbayProcess
from tests.support.daemon import CHANNEL_SYNC, Daemon, DaemonConfig, wait_for

ADMIN_TOKEN = "ebay-e2e-admin-token-0123"
CLIENT_ID = "Sandbox-chsync-SBX-e2e001"
CLIENT_SECRET = "SBX-e2e-client-secret-0123456789"
REFRESH_TOKEN = "v^1.1#i^1#r^1#e2e-refresh-token-0123456789"
VERIFICATION_TOKEN = "e2e-verification-token-0123456789abcdef"
TRADING = [f"T{n}" for n in range(10)]
INVENTORY = ["I0", "I1"]
START = 5  # units of each SKU, on eBay and here
DAY = 86400  # polls and reconciles only when asked
ORDERS = 20


def channel_file(sandbox: EbayProcess, webhooks_url: str, trading_quota: int) -> str:
    """The channel file a seller would write for the sandbox account."""
    info = sandbox.info
    return (
        'kind = "ebay"\n'
        'locations = ["default"]\n'
        f'client_id = "{CLIENT_ID}"\n'
        'client_secret = "env:E2E_EBAY_CLIENT_SECRET"\n'
        'refresh_token = "env:E2E_EBAY_REFRESH_TOKEN"\n'
        'verification_token = "env:E2E_EBAY_VERIFICATION_TOKEN"\n'
        f'notification_endpoint_url = "{webhooks_url}/webhooks/ebay"\n'
        'stock_api = "trading"\n'
        f'api_base_url = "{info["api_base_url"]}"\n'
        f'trading_api_url = "{info["trading_url"]}"\n'
        f'identity_url = "{info["identity_url"]}"\n'
        "[daily_call_limits]\n"
        f"trading = {trading_quota}\n"
        "[schedule]\n"
        f"poll_interval_s = {DAY}\n"
        f"reconcile_interval_s = {DAY}\n"
    )


def read_store(db_url: str) -> dict[str, Any]:
    """Orders per external id (counting rows), bound listings, inbox rows by state."""
    db = Database(db_url)
    try:
        with db.read_session() as session:
            orders = Counter(session.scalars(select(OrderRow.external_id)))
            listings = dict(session.execute(select(Listing.sku, Listing.external_ref)).all())
            inbox = dict(
                session.execute(
                    select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)
                ).all()
            )
            return {"orders": orders, "listings": listings, "inbox": inbox}
    finally:
        db.dispose()


def set_on_hand(db_url: str, on_hand: dict[str, int]) -> None:
    """On hand of several SKUs in one transaction, as `channel-sync stock import` sets it."""
    rows = "".join(f"{sku},default,{n}\n" for sku, n in on_hand.items())
    db = Database(db_url)
    try:
        db.transact(lambda s: import_stock_csv(s, f"sku,location,on_hand\n{rows}".encode()))
    finally:
        db.dispose()


@dataclass
class Rig:
    """The sandbox, the daemon and the admin API, set up and bound."""

    sandbox: EbayProcess
    daemon: Daemon
    admin: httpx.Client
    db_url: str

    def sync(self) -> dict[str, Any]:
        """Poll and reconcile now; the daemon's answer."""
        answer = self.admin.post("/api/channels/ebay/sync")
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def channel_status(self) -> dict[str, Any]:
        """The eBay channel's entry of /api/status."""
        answer = self.admin.get("/api/status")
        assert answer.status_code == 200, answer.text
        (found,) = [c for c in answer.json()["channels"] if c["name"] == "ebay"]
        return dict(found)

    def our_quota(self, api: str) -> dict[str, Any] | None:
        """Our count of one API's calls today, as /api/status shows it."""
        budgets = self.channel_status()["budgets"] or {}
        return next((q for q in budgets.get("quotas", []) if q["api"] == api), None)

    def calls(self, operation: str) -> int:
        """The sandbox's count of calls of `operation`."""
        return int(self.sandbox.control("GET", "/calls")["calls"].get(operation, 0))

    def sandbox_used(self, api: str) -> int:
        """Calls the sandbox charged to `api`'s daily quota."""
        return int(self.sandbox.control("GET", "/quotas")["apis"][api]["used"])

    def settled(self) -> bool:
        """No stock job pending or running."""
        for state in ("pending", "running"):
            if self.admin.get("/api/jobs", params={"state": state}).json()["items"]:
                return False
        return True


@contextmanager
def ebay_rig(tmp_path: Path, db_url: str, *, trading_quota: int = 5000) -> Iterator[Rig]:
    """Sandbox and daemon running, SKUs known with START units each, listings bound."""
    args = ["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET]
    args += ["--refresh-token", REFRESH_TOKEN, "--seed", "7", "--quota", f"trading={trading_quota}"]
    for sku in TRADING:
        args += ["--listing", f"{sku}={START}"]
    for sku in INVENTORY:
        args += ["--inventory-listing", f"{sku}={START}"]
    with EbayProcess(tmp_path, args) as sandbox:
        config = DaemonConfig(root=tmp_path / "cfg", database_url=db_url)
        config.channels = {"ebay": channel_file(sandbox, config.webhooks_url, trading_quota)}
        config.write()
        env = {
            config.admin_token_env: ADMIN_TOKEN,
            "E2E_EBAY_CLIENT_SECRET": CLIENT_SECRET,
            "E2E_EBAY_REFRESH_TOKEN": REFRESH_TOKEN,
            "E2E_EBAY_VERIFICATION_TOKEN": VERIFICATION_TOKEN,
        }
        daemon = Daemon(config, env).start()
        try:
            daemon.wait_healthy(timeout=30)
            add_skus(db_url, [*TRADING, *INVENTORY])
            set_on_hand(db_url, dict.fromkeys([*TRADING, *INVENTORY], START))
            with httpx.Client(
                base_url=config.admin_url,
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=60,
            ) as admin:
                rig = Rig(sandbox, daemon, admin, db_url)
                # The first poll and reconcile run on their own soon after the start (within
                # the scheduler's start jitter); from then on, only when the test asks.
                wait_for(
                    lambda: rig.calls("getOrders") >= 2 and rig.calls("GetMyeBaySelling") >= 1,
                    timeout=30,
                    what="the daemon's first poll and reconcile",
                )
                rig.sync()
                assert len(read_store(db_url)["listings"]) == len(TRADING) + len(INVENTORY)
                yield rig
            assert daemon.stop(signal.SIGTERM) == 0
        finally:
            daemon.kill()
        output = daemon.output()
        for secret in (ADMIN_TOKEN, CLIENT_SECRET, REFRESH_TOKEN, VERIFICATION_TOKEN):
            assert secret not in output
        for buyer in ("buyer0@example.com", "Buyer Zero"):
            assert buyer not in output


def test_orders_come_by_hint_and_by_poll_once_each_and_trading_calls_are_counted(
    tmp_path: Path, db_url: str
) -> None:
    with ebay_rig(tmp_path, db_url) as rig:
        # eBay checks our endpoint (the challenge) before it sends anything.
        endpoint = f"{rig.daemon.config.webhooks_url}/webhooks/ebay"
        shown = rig.sandbox.control(
            "POST",
            "/notifications",
            {"endpoint": endpoint, "verification_token": VERIFICATION_TOKEN},
        )
        assert shown["endpoint"]["verified"] is True
        rig.sandbox.control(
            "POST",
            "/faults",
            {"seed": 5, "notifications": {"drop_rate": 0.5, "duplicate_rate": 0.2}},
        )
        rng = random.Random(3)
        sold: Counter[str] = Counter()
        placed = []
        for n in range(ORDERS):
            sku = rng.choice([*TRADING, *INVENTORY])
            buyer = {
                "name": "Buyer Zero" if n == 0 else f"Buyer {n}",
                "email": f"buyer{n}@example.com",
            }
            answer = rig.sandbox.control(
                "POST", "/orders", {"lines": [{"sku": sku, "quantity": 1}], "buyer": buyer}
            )
            placed.append(answer["order_id"])
            sold[sku] += 1

        def hints_done() -> dict[str, Any] | None:
            notes = rig.sandbox.control("GET", "/notifications?limit=0")
            store = read_store(rig.db_url)
            if notes["pending"] or store["inbox"].get(InboxState.RECEIVED):
                return None
            return {"notes": notes, "store": store}

        # Hints only: no poll has run since the orders were placed.
        done = wait_for(hints_done, timeout=60, what="every notification sent and processed")
        counts, store = done["notes"]["counts"], done["store"]
        delivered = store["inbox"].get(InboxState.PROCESSED, 0)
        assert counts.get("dropped", 0) > 0 and counts.get("duplicated", 0) > 0, counts
        assert 0 < delivered < ORDERS, (counts, store["inbox"])
        # One notification per order (one line each): each delivered one brought its order.
        assert len(store["orders"]) == delivered, (counts, store["inbox"])
        assert set(store["orders"]) < set(placed)
        assert set(store["orders"].values()) == {1}

        # The poll brings the orders whose notification was dropped.
        rig.sync()
        store = read_store(rig.db_url)
        assert set(store["orders"]) == set(placed)
        assert set(store["orders"].values()) == {1}

        expected = {sku: START - sold[sku] for sku in [*TRADING, *INVENTORY]}
        wait_for(
            lambda: rig.sandbox.control("GET", "/inventory") == expected and rig.settled(),
            timeout=60,
            what=f"eBay to show {expected} with nothing left to push",
        )
        # Our count of Trading calls, stored and shown, is eBay's (the keeper stores it within
        # a second); the sandbox refused none for the quota.
        wait_for(
            lambda: (rig.our_quota("trading") or {}).get("used") == rig.sandbox_used("trading"),
            timeout=10,
            what="our count of Trading calls to match the sandbox's",
        )
        trading = rig.our_quota("trading")
        assert trading is not None and trading["limit"] == 5000 and trading["used"] > 0
        assert not rig.sandbox.control("GET", "/calls")["throttled"]
        assert rig.admin.get("/api/jobs", params={"state": "dead"}).json()["items"] == []


def test_each_world_through_its_own_api_ten_trading_listings_in_three_calls(
    tmp_path: Path, db_url: str
) -> None:
    with ebay_rig(tmp_path, db_url) as rig:
        store = read_store(rig.db_url)
        assert all(store["listings"][sku].startswith("trading:") for sku in TRADING)
        assert all(store["listings"][sku].startswith("inventory:") for sku in INVENTORY)
        revise, bulk = rig.calls("ReviseInventoryStatus"), rig.calls("bulkUpdatePriceQuantity")
        set_on_hand(rig.db_url, dict.fromkeys(TRADING, 8))  # one transaction: one planning round
        wanted = {**dict.fromkeys(TRADING, 8), **dict.fromkeys(INVENTORY, START)}
        wait_for(
            lambda: rig.sandbox.control("GET", "/inventory") == wanted and rig.settled(),
            timeout=60,
            what="the ten Trading listings at 8",
        )
        assert rig.calls("ReviseInventoryStatus") - revise == 3
        assert rig.calls("bulkUpdatePriceQuantity") == bulk

        # Both worlds at once: the sandbox refuses a Trading revision of an Inventory-API
        # listing, so reaching every figure means each went through its own API.
        set_on_hand(rig.db_url, {"T0": 2, "T1": 3, "I0": 4, "I1": 6})
        wanted.update({"T0": 2, "T1": 3, "I0": 4, "I1": 6})
        wait_for(
            lambda: rig.sandbox.control("GET", "/inventory") == wanted and rig.settled(),
            timeout=60,
            what=f"eBay to show {wanted}",
        )
        assert rig.calls("ReviseInventoryStatus") - revise == 4
        assert rig.calls("bulkUpdatePriceQuantity") - bulk >= 1
        revisions = rig.sandbox.control("GET", "/listings")
        assert revisions["I0"]["revisions_today"] == revisions["I1"]["revisions_today"] >= 1
        assert rig.admin.get("/api/jobs", params={"state": "dead"}).json()["items"] == []


def test_pushes_slow_down_before_the_quota_runs_out_and_a_restart_keeps_the_count(
    tmp_path: Path, db_url: str
) -> None:
    quota = 24  # pacing from 12 calls: the rest is spread over what is left of eBay's day
    with ebay_rig(tmp_path, db_url, trading_quota=quota) as rig:
        for on_hand in range(6, 6 + quota):
            set_on_hand(rig.db_url, {"T0": on_hand})

            def landed_or_held(wanted: int = on_hand) -> str | None:
                if rig.sandbox.control("GET", "/inventory")["T0"] == wanted:
                    return "landed"
                return "held" if rig.channel_status()["state"] == "degraded" else None

            if wait_for(landed_or_held, timeout=30, what="the push to land or be held") == "held":
                break  # held back: the quota is being paced
        else:
            raise AssertionError("the daemon never slowed down")
        used = rig.sandbox_used("trading")
        assert quota / 2 <= used < quota  # slowed down at half, long before the end
        assert not rig.sandbox.control("GET", "/calls")["throttled"]  # eBay refused nothing
        wait_for(
            lambda: (rig.our_quota("trading") or {}).get("used") == used,
            timeout=10,
            what="our stored count to match the sandbox's",
        )
        quota_shown = rig.our_quota("trading")
        assert quota_shown is not None and quota_shown["pacing"] and quota_shown["limit"] == quota
        held = rig.admin.get("/api/jobs", params={"state": "pending"}).json()["items"]
        assert held and all("RateLimitedError" in (j["last_error"] or "") for j in held)
        assert rig.admin.get("/api/jobs", params={"state": "dead"}).json()["items"] == []

        # A restart starts from the stored count: a new push is held too, nothing is sent.
        assert rig.daemon.stop(signal.SIGTERM) == 0
        shown = subprocess.run(
            [CHANNEL_SYNC, "status", "--config", str(rig.daemon.config.root)],
            env=rig.daemon.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        # Read from the store with the daemon down (the table may wrap the cell).
        assert "trading" in shown and f"{used}/{quota}" in shown, shown
        rig.daemon.start().wait_healthy(timeout=30)
        set_on_hand(rig.db_url, {"T1": 9})

        def both_held() -> bool:
            jobs = rig.admin.get("/api/jobs", params={"state": "pending"}).json()["items"]
            return len([j for j in jobs if "RateLimitedError" in (j["last_error"] or "")]) == 2

        wait_for(both_held, timeout=30, what="the restarted daemon to hold the new push")
        assert rig.sandbox_used("trading") == used
        assert rig.sandbox.control("GET", "/inventory")["T1"] == START
        assert (rig.our_quota("trading") or {}).get("used") == used


def test_a_shipment_is_created_once_when_ebay_times_out_after_creating_it(
    tmp_path: Path, db_url: str
) -> None:
    with ebay_rig(tmp_path, db_url) as rig:
        order_id = rig.sandbox.control(
            "POST", "/orders", {"lines": [{"sku": "T3", "quantity": 2}]}
        )["order_id"]
        rig.sync()
        second = rig.sandbox.control("POST", "/orders", {"lines": [{"sku": "I0", "quantity": 1}]})
        rig.sync()
        # Created, then the answer held past the connector's 30 s timeout.
        rig.sandbox.control(
            "POST",
            "/faults",
            {"next": {"createShippingFulfillment": ["timeout"]}, "timeout_delay_s": 40},
        )
        page = rig.admin.get("/api/orders", params={"channel": "ebay"}).json()["items"]
        ours = {o["external_id"]: o["id"] for o in page}
        for external, tracking in (
            (order_id, "1Z999AA10123456784"),
            (second["order_id"], "9400111"),
        ):
            shipped = rig.admin.post(
                f"/api/orders/{ours[external]}/shipments",
                json={"carrier": "UPS", "tracking": tracking},
            )
            assert shipped.status_code in (200, 201), shipped.text

        def packages() -> list[dict[str, Any]] | None:
            found = rig.sandbox.control("GET", "/fulfillments")["fulfillments"]
            return found if len(found) >= 2 and rig.settled() else None

        found = wait_for(packages, timeout=120, what="both shipments on eBay")
        assert sorted((f["order_id"], f["tracking"]) for f in found) == sorted(
            [(order_id, "1Z999AA10123456784"), (second["order_id"], "9400111")]
        )
        assert rig.sandbox.control("GET", "/calls")["faulted"] == {"createShippingFulfillment": 1}
        assert rig.calls("createShippingFulfillment") == 2  # the timed-out one was not resent
        assert rig.calls("getShippingFulfillments") >= 1  # it was looked for instead
        assert rig.admin.get("/api/jobs", params={"state": "dead"}).json()["items"] == []
