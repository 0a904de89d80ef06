"""The real daemon with an Amazon channel against the Amazon sandbox and moto's SQS, on loopback.

Both are subprocesses: `python -m sandbox.amazon --start-sqs` (LWA, the SP-API, feeds, and an
SQS-compatible server its ORDER_CHANGE notifications go to) and `channel-sync run`. The sandbox
sends 30% of its notifications twice and releases them shuffled, drops some, and hides new orders
from searchOrders for a while (Amazon's order data lag), so orders reach the store by the queue
and, for the dropped notices, by polling; each must be stored once, and every SQS message
deleted after its commit. The connector-level halves (mapping, the feed flow, one LWA call on a
revoked token) are in tests/connectors/amazon/test_live.py; here the daemon wires them.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.session import get_session
from sqlalchemy import func, select

from connectors.base import ChannelListing
from sync.db import Database
from sync.models import Channel, InboxState, Sku, WebhookDelivery
from sync.models import Order as OrderRow
from sync.reconcile import bind_listings
from sync.stock_ops import import_stock_csv
from tests.sandbox.amazon.process import AmazonProcess
from tests.support.daemon import Daemon, DaemonConfig, wait_for

ADMIN_TOKEN = "amazon-e2e-admin-token-0123"
AWS_SECRET = "amazon-e2e-aws-secret-0123"
CHANNEL = "amazon-us"
ORDERS = 20
SKUS = [f"S{n:02d}" for n in range(40)]  # 40 patches at once: under the feed threshold (50)
TRACKING = "1Z999AA10123456784"
AUTH_RECHECK_S = 3.0


def channel_file(sandbox: AmazonProcess, *, grace_s: float = 2.0) -> str:
    """The channel file a seller would write for the sandbox account and its queue."""
    info = sandbox.info
    return (
        'kind = "amazon"\n'
        'locations = ["default"]\n'
        f'seller_id = "{info["seller_id"]}"\n'
        'region = "na"\n'
        f"marketplace_ids = {json.dumps(info['marketplace_ids'])}\n"
        f'lwa_client_id = "{info["client_id"]}"\n'
        'lwa_client_secret = "env:E2E_AMAZON_CLIENT_SECRET"\n'
        'refresh_token = "env:E2E_AMAZON_REFRESH_TOKEN"\n'
        f'api_base_url = "{info["api_base_url"]}"\n'
        f'lwa_token_url = "{info["lwa_token_url"]}"\n'
        f'sqs_queue_url = "{info["sqs_queue_url"]}"\n'
        f'sqs_endpoint_url = "{info["sqs_endpoint_url"]}"\n'
        'aws_access_key_id = "sandbox"\n'
        'aws_secret_access_key = "env:E2E_AWS_SECRET"\n'
        f"shipment_visible_grace_s = {grace_s}\n"
        "[schedule]\n"
        "poll_interval_s = 6\n"
        "reconcile_interval_s = 86400\n"
    )


def env_of(config: DaemonConfig, sandbox: AmazonProcess) -> dict[str, str]:
    """The secrets the channel file refers to."""
    return {
        config.admin_token_env: ADMIN_TOKEN,
        "E2E_AMAZON_CLIENT_SECRET": sandbox.info["client_secret"],
        "E2E_AMAZON_REFRESH_TOKEN": sandbox.info["refresh_token"],
        "E2E_AWS_SECRET": AWS_SECRET,
    }


def read_store(db_url: str) -> dict[str, Any]:
    """Orders per external id (counting rows) and inbox rows by state."""
    db = Database(db_url)
    try:
        with db.read_session() as session:
            orders = Counter(session.scalars(select(OrderRow.external_id)))
            inbox = {
                state: count
                for state, count in session.execute(
                    select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)
                )
            }
            return {"orders": orders, "inbox": inbox}
    finally:
        db.dispose()


def add_listings(db_url: str, skus: list[str], on_hand: int) -> None:
    """The seller's SKUs, bound to the Amazon listings of the same SKU (what reconcile binds),
    and their on-hand set in one import: every listing goes dirty at once."""
    db = Database(db_url)
    try:
        with db.session() as session:
            channel_id = session.scalars(select(Channel.id).where(Channel.name == CHANNEL)).one()
            session.add_all(Sku(sku=sku) for sku in skus)
            session.flush()
            bind_listings(session, channel_id, [ChannelListing(sku, sku, 0) for sku in skus])
        rows = "".join(f"{sku},default,{on_hand}\n" for sku in skus)
        db.transact(lambda session: import_stock_csv(session, f"sku,location,on_hand\n{rows}"))
    finally:
        db.dispose()


def queue_depth(sandbox: AmazonProcess) -> int:
    """Messages on the queue, visible or in flight."""
    client = get_session().create_client(
        "sqs",
        region_name="us-east-1",
        endpoint_url=sandbox.info["sqs_endpoint_url"],
        aws_access_key_id="sandbox",
        aws_secret_access_key=AWS_SECRET,
    )
    try:
        attributes = client.get_queue_attributes(
            QueueUrl=sandbox.info["sqs_queue_url"],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
    finally:
        client.close()
    return sum(int(value) for value in attributes.values())


def channel_status(admin: httpx.Client) -> dict[str, Any]:
    """This channel's entry of /api/status."""
    answer = admin.get("/api/status")
    assert answer.status_code == 200, answer.text
    channel: dict[str, Any] = next(c for c in answer.json()["channels"] if c["name"] == CHANNEL)
    return channel


def unseen_metric(admin: httpx.Client) -> float | None:
    """channel_sync_unseen_shipments for this channel, as scraped."""
    for line in admin.get("/metrics").text.splitlines():
        if line.startswith(f'channel_sync_unseen_shipments{{channel="{CHANNEL}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[AmazonProcess]:
    listings = [f"--listing={sku}=0@12.50" for sku in SKUS]
    with AmazonProcess(tmp_path, ["--start-sqs", "--seed", "7", *listings]) as process:
        yield process


def test_an_amazon_channel_takes_orders_by_sqs_and_polling_pushes_stock_and_ships_once(
    tmp_path: Path, db_url: str, sandbox: AmazonProcess
) -> None:
    config = DaemonConfig(root=tmp_path / "cfg", database_url=db_url)
    config.extra_main = f"[schedules]\nauth_recheck_s = {AUTH_RECHECK_S}\n"
    config.channels = {CHANNEL: channel_file(sandbox)}
    config.write()
    daemon = Daemon(config, env_of(config, sandbox)).start()
    try:
        daemon.wait_healthy(timeout=30)
        with httpx.Client(
            base_url=config.admin_url,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        ) as admin:
            wait_for(
                lambda: channel_status(admin)["state"] == "ok",
                timeout=30,
                what="the channel registered and ok",
            )
            # Stock out: 40 listings dirty at once go as 40 patches, paced under the bucket.
            add_listings(db_url, SKUS, 30)
            wait_for(
                lambda: sandbox.control("GET", "/inventory") == dict.fromkeys(SKUS, 30),
                timeout=60,
                what="the sandbox to show the 30 units of each SKU",
            )
            calls = sandbox.control("GET", "/calls")
            assert calls["calls"]["patchListingsItem"] == len(SKUS), calls
            assert calls["calls"].get("createFeed", 0) == 0

            # Orders in: notices held, then released shuffled, some twice, some never; new
            # orders hidden from searchOrders for 15 s, so the first come by the queue.
            sandbox.control(
                "POST",
                "/faults",
                {
                    "seed": 3,
                    "search_lag_s": 15,
                    "notifications": {"duplicate_rate": 0.3, "drop_rate": 0.15, "hold": True},
                },
            )
            rng = random.Random(5)
            sold: Counter[str] = Counter()
            placed: dict[str, float] = {}
            for n in range(ORDERS):
                sku, units = rng.choice(SKUS[:4]), rng.randint(1, 2)
                buyer = {"name": f"Buyer {n}", "email": f"buyer{n}@example.com"}
                answer = sandbox.control(
                    "POST", "/orders", {"lines": [{"sku": sku, "quantity": units}], "buyer": buyer}
                )
                placed[answer["order_id"]] = time.monotonic()
                sold[sku] += units
            released_at = time.monotonic()
            sandbox.control("POST", "/notifications/release")
            stored_at: dict[str, float] = {}

            def all_stored() -> bool:
                now = time.monotonic()
                for order_id in read_store(db_url)["orders"]:
                    stored_at.setdefault(order_id, now)
                return set(placed) <= set(stored_at)

            wait_for(all_stored, timeout=120, what=f"all {ORDERS} orders in the store")
            store = read_store(db_url)
            assert set(store["orders"]) == set(placed)
            assert set(store["orders"].values()) == {1}  # each stored once
            notices = sandbox.control("GET", "/notifications")
            counts = notices["counts"]
            assert counts.get("duplicated", 0) > 0 and counts.get("dropped", 0) > 0, counts
            sent = [n for n in notices["notifications"] if n["state"] == "sent"]
            notified = {n["order_id"] for n in sent}
            distinct_notices = {n["notification_id"] for n in sent}
            assert len(sent) > len(distinct_notices)  # the duplicates did reach the queue
            by_queue = [o for o in notified if stored_at[o] - released_at < 10]
            assert by_queue, "no order came by the queue before searchOrders could see it"
            dropped_only = set(placed) - notified
            assert dropped_only, "every order was notified: polling was not exercised"
            # Every distinct notice is in the inbox once, processed; every message deleted.
            wait_for(
                lambda: (
                    read_store(db_url)["inbox"].get(InboxState.PROCESSED, 0)
                    == len(distinct_notices)
                ),
                timeout=60,
                what="every notice processed once",
            )
            assert sum(read_store(db_url)["inbox"].values()) == len(distinct_notices)
            wait_for(lambda: queue_depth(sandbox) == 0, timeout=60, what="an empty queue")
            queue = channel_status(admin)["notice_queue"]
            assert queue["problem"] is None
            assert queue["received"] == len(sent) and queue["recorded"] == len(distinct_notices)

            expected = {sku: 30 - sold[sku] for sku in SKUS}
            wait_for(
                lambda: sandbox.control("GET", "/inventory") == expected,
                timeout=60,
                what="the sandbox to show the ledger's quantities",
            )

            # Status out: three shipments, each confirmed once.
            sandbox.control("POST", "/faults", {})
            page = admin.get("/api/orders", params={"channel": CHANNEL, "limit": 100}).json()
            ids = {o["external_id"]: o["id"] for o in page["items"]}
            shipped = sorted(placed)[:3]
            for n, order_id in enumerate(shipped):
                answer = admin.post(
                    f"/api/orders/{ids[order_id]}/shipments",
                    json={"carrier": "UPS", "tracking": f"{TRACKING}{n}"},
                )
                assert answer.status_code in (200, 201), answer.text

            def fulfilled() -> list[dict[str, Any]]:
                shown = sandbox.control("GET", "/fulfillments")["fulfillments"]
                return shown if len(shown) >= len(shipped) else []

            shown = wait_for(fulfilled, timeout=60, what="the three shipments on Amazon")
            assert sorted(f["order_id"] for f in shown) == shipped
            assert all(f["carrier_recognised"] and f["confirmations"] == 1 for f in shown)
            assert sandbox.control("GET", "/calls")["calls"]["confirmShipment"] == len(shipped)

            # A confirmation Amazon answers 204 and drops: unseen after the grace, then shown.
            sandbox.control("POST", "/faults", {"next": {"confirmShipment": ["lost"]}})
            lost = sorted(placed)[3]
            answer = admin.post(
                f"/api/orders/{ids[lost]}/shipments",
                json={"carrier": "UPS", "tracking": f"{TRACKING}9"},
            )
            assert answer.status_code in (200, 201), answer.text
            (unseen,) = wait_for(
                lambda: channel_status(admin).get("unseen_shipments"),
                timeout=60,
                what="the dropped confirmation listed in /api/status",
            )
            assert unseen["order_id"] == lost
            assert unseen_metric(admin) == 1.0
            assert "still shows shipment" in daemon.output()
            sandbox.login()  # the seller confirms it again in Seller Central
            (item,) = next(
                o["items"]
                for o in sandbox.control("GET", "/orders")["orders"]
                if o["order_id"] == lost
            )
            confirm = sandbox.api(
                "POST",
                f"/orders/v0/orders/{lost}/shipmentConfirmation",
                json={
                    "marketplaceId": sandbox.info["marketplace_ids"][0],
                    "packageDetail": {
                        "packageReferenceId": "1",
                        "carrierCode": "UPS",
                        "trackingNumber": f"{TRACKING}9",
                        "shipDate": "2026-01-01T00:00:00Z",
                        "orderItems": [
                            {"orderItemId": item["order_item_id"], "quantity": item["quantity"]}
                        ],
                    },
                },
            )
            assert confirm.status_code == 204, confirm.text
            wait_for(
                lambda: channel_status(admin)["unseen_shipments"] == [],
                timeout=60,
                what="the unseen shipment to clear once Amazon shows it",
            )
            assert unseen_metric(admin) == 0.0

            calls = sandbox.control("GET", "/calls")
            assert calls["throttled"] == {}, calls  # never over one of Amazon's buckets
            assert admin.get("/api/jobs", params={"state": "dead"}).json()["items"] == []

            # A revoked refresh token: auth-failed with a clear reason, and no retry storm.
            for action in ("revoke", "expire_access_tokens"):
                sandbox.control("POST", "/auth", {"action": action})
            lwa_before = sum(sandbox.control("GET", "/calls")["lwa"].values())
            sandbox.control("POST", "/orders", {"lines": [{"sku": SKUS[5], "quantity": 1}]})
            failed = wait_for(
                lambda: (s := channel_status(admin))["state"] == "auth_failed" and s,
                timeout=60,
                what="the channel marked auth-failed",
            )
            assert "re-authorise" in failed["last_error"], failed
            ready = admin.get("/readyz")
            assert ready.status_code == 503 and CHANNEL in ready.text
            # Only the re-check every AUTH_RECHECK_S asks LWA again: count over a few of them.
            failed_at = time.monotonic()
            lwa_failed = sum(sandbox.control("GET", "/calls")["lwa"].values())
            assert lwa_failed - lwa_before <= 2  # the refusal itself (and a racing caller)
            rechecks = wait_for(
                lambda: (
                    (n := sum(sandbox.control("GET", "/calls")["lwa"].values()) - lwa_failed) >= 2
                    and n
                ),
                timeout=60,
                what="two re-checks of the credentials",
            )
            elapsed = time.monotonic() - failed_at
            assert rechecks <= elapsed / AUTH_RECHECK_S + 1, (rechecks, elapsed)
            assert channel_status(admin)["state"] == "auth_failed"
        assert daemon.stop(signal.SIGTERM) == 0
    finally:
        daemon.kill()
    output = daemon.output()
    assert "drain deadline passed" not in output  # the SQS long poll ends at once on SIGTERM
    secrets = (
        ADMIN_TOKEN,
        AWS_SECRET,
        sandbox.info["client_secret"],
        sandbox.info["refresh_token"],
    )
    for secret in (*secrets, "buyer0@example.com", "Buyer 0"):
        assert secret not in output


def test_ten_thousand_listings_reconciled_at_once_go_as_one_feed(
    tmp_path: Path, db_url: str
) -> None:
    skus = [f"BULK-{n:05d}" for n in range(10_000)]
    with AmazonProcess(tmp_path, ["--start-sqs", "--seed", "9"]) as sandbox:
        config = DaemonConfig(root=tmp_path / "cfg", database_url=db_url)
        config.channels = {CHANNEL: channel_file(sandbox)}
        config.write()
        daemon = Daemon(config, env_of(config, sandbox)).start()
        try:
            daemon.wait_healthy(timeout=30)
            with httpx.Client(
                base_url=config.admin_url,
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=30,
            ) as admin:
                wait_for(
                    lambda: channel_status(admin)["state"] == "ok",
                    timeout=30,
                    what="the channel registered",
                )
                # The reconcile at start reads the (still empty) listings; 10,000 listings
                # paged through 20 at a time would only slow this test down.
                wait_for(
                    lambda: sandbox.control("GET", "/calls")["calls"].get("searchListingsItems"),
                    timeout=60,
                    what="the first reconcile to read the listings",
                )
                sandbox.control(
                    "POST", "/listings", {"listings": [{"sku": s, "quantity": 0} for s in skus]}
                )
                started = time.monotonic()
                add_listings(db_url, skus, 7)
                stored = time.monotonic() - started
                wait_for(
                    lambda: set(sandbox.control("GET", "/inventory").values()) == {7},
                    timeout=240,
                    what="all 10,000 listings at 7 on Amazon",
                )
                took = time.monotonic() - started
                wait_for(
                    lambda: channel_status(admin)["jobs_pending"] == 0,
                    timeout=120,
                    what="the feed's outcome read and its job done",
                )
                calls = sandbox.control("GET", "/calls")
                assert calls["calls"].get("patchListingsItem", 0) == 0, calls["calls"]
                assert calls["calls"]["createFeed"] == 1, calls["calls"]
                assert calls["calls"]["getFeed"] >= 1 and calls["calls"]["getFeedDocument"] == 1
                (feed,) = sandbox.control("GET", "/feeds")["feeds"]
                assert feed["messages"] == len(skus) and feed["status"] == "DONE"
                assert calls["throttled"] == {}, calls
                print(
                    f"10,000 listings: stored and made dirty in {stored:.1f} s, on Amazon "
                    f"{took:.1f} s after; calls {calls['calls']}"
                )
            assert daemon.stop(signal.SIGTERM) == 0
        finally:
            daemon.kill()
