"""The real daemon with a Shopify channel against the Shopify sandbox, both subprocesses on loopback.

The sandbox drops 30% of its webhooks and sends 20% twice, and answers THROTTLED and HTTP 429 to
some API calls; the daemon must still store every order once (webhooks or polls), push the stock
the seller sets through the admin API, and push a shipment with its tracking. SKUs are created in
the store directly (as `stock import` would); their listings are bound by the daemon's own
reconcile, reading the sandbox's variants.
"""

from __future__ import annotations

import random
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from connectors.shopify.webhooks import compute_signature
from sync.db import Database
from sync.models import Channel, InboxState, Listing, Sku, WebhookDelivery
from sync.models import Order as OrderRow
from tests.sandbox.shopify.process import ShopifyProcess
from tests.support.daemon import Daemon, DaemonConfig, free_port, wait_for

ADMIN_TOKEN = "shopify-e2e-admin-token-0123"
TOKEN = "shpat_e2e_sandbox_token_0123456789"
SECRET = "shpss_e2e_sandbox_secret_0123456789"
ORDERS = 20
TOPICS = 6


def channel_file(sandbox: ShopifyProcess, webhook_url: str) -> str:
    """The channel file a seller would write for the sandbox store."""
    location = sandbox.info["locations"]["Main warehouse"]
    return (
        'kind = "shopify"\n'
        'locations = ["default"]\n'
        f'shop = "{sandbox.info["domain"]}"\n'
        'access_token = "env:E2E_SHOPIFY_TOKEN"\n'
        'webhook_secrets = ["env:E2E_SHOPIFY_SECRET"]\n'
        f'api_base_url = "{sandbox.info["url"]}"\n'
        f'webhook_url = "{webhook_url}"\n'
        "[location_ids]\n"
        f'default = "{location}"\n'
        "[schedule]\n"
        "poll_interval_s = 0.5\n"
        "reconcile_interval_s = 600\n"
    )


def read_store(db_url: str) -> dict[str, Any]:
    """Orders per external id (counting rows), bound listings, and inbox rows by state."""
    db = Database(db_url)
    try:
        with db.read_session() as session:
            orders = Counter(session.scalars(select(OrderRow.external_id)))
            listings = {
                sku: ref for sku, ref in session.execute(select(Listing.sku, Listing.external_ref))
            }
            inbox = {
                state: count
                for state, count in session.execute(
                    select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)
                )
            }
            return {"orders": orders, "listings": listings, "inbox": inbox}
    finally:
        db.dispose()


def add_skus(db_url: str, skus: list[str]) -> None:
    """The SKUs the seller sells (what `stock import` would create)."""
    db = Database(db_url)
    try:
        with db.session() as session:
            assert session.scalar(select(func.count()).select_from(Channel)) == 1
            session.add_all(Sku(sku=sku) for sku in skus)
    finally:
        db.dispose()


def test_a_shopify_channel_under_webhook_and_api_faults_stores_every_order_once_and_pushes(
    tmp_path: Path, db_url: str
) -> None:
    # A Plus plan's restore rate: an order's detail query asks for ~800 cost points, so after a
    # THROTTLED answer the client waits for 800 points to come back (8 s at Standard's 100/s).
    args = ["--shop", "e2e", "--token", TOKEN, "--secret", SECRET, "--seed", "11"]
    args += ["--restore-rate", "1000"]
    args += ["--product", "A=50@19.99", "--product", "B=50@5.00"]
    with ShopifyProcess(tmp_path, args) as sandbox:
        config = DaemonConfig(root=tmp_path / "cfg", database_url=db_url)
        config.channels = {"shop": channel_file(sandbox, f"{config.webhooks_url}/webhooks/shop")}
        config.write()
        env = {
            config.admin_token_env: ADMIN_TOKEN,
            "E2E_SHOPIFY_TOKEN": TOKEN,
            "E2E_SHOPIFY_SECRET": SECRET,
        }
        daemon = Daemon(config, env).start()
        try:
            daemon.wait_healthy(timeout=30)

            def subscribed() -> bool:
                subs = sandbox.control("GET", "/webhooks?limit=0")["subscriptions"]
                return len([s for s in subs if s["uri"].endswith("/webhooks/shop")]) == TOPICS

            wait_for(subscribed, timeout=30, what="the daemon to subscribe to the six topics")
            sandbox.control(
                "POST",
                "/faults",
                {
                    "seed": 3,
                    "default": {"throttled_rate": 0.1, "too_many_rate": 0.1},
                    "retry_after_s": 0.2,
                    "webhooks": {"drop_rate": 0.3, "duplicate_rate": 0.2},
                },
            )
            add_skus(db_url, ["A", "B"])
            with httpx.Client(
                base_url=config.admin_url,
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=30,
            ) as admin:

                def bound() -> bool:
                    if len(read_store(db_url)["listings"]) == 2:
                        return True
                    admin.post("/api/channels/shop/sync")  # 502 when a fault outlasted retries
                    return False

                wait_for(bound, timeout=60, what="reconcile to bind A and B")
                for sku in ("A", "B"):
                    answer = admin.put(
                        f"/api/stock/{sku}", json={"location": "default", "on_hand": 30}
                    )
                    assert answer.status_code == 200, answer.text
                wait_for(
                    lambda: sandbox.control("GET", "/inventory") == {"A": 30, "B": 30},
                    timeout=60,
                    what="the sandbox to show the 30 units set through the admin API",
                )

                rng = random.Random(5)
                sold: Counter[str] = Counter()
                placed = []
                for n in range(ORDERS):
                    lines = [{"sku": rng.choice("AB"), "quantity": rng.randint(1, 2)}]
                    buyer = {"name": f"Buyer {n}", "email": f"buyer{n}@example.com"}
                    answer = sandbox.control("POST", "/orders", {"lines": lines, "buyer": buyer})
                    placed.append(answer["order_id"])
                    sold[lines[0]["sku"]] += lines[0]["quantity"]

                wait_for(
                    lambda: set(read_store(db_url)["orders"]) == set(placed),
                    timeout=90,
                    what=f"all {ORDERS} orders in the store",
                )
                store = read_store(db_url)
                assert set(store["orders"].values()) == {1}  # each stored once
                hooks = sandbox.control("GET", "/webhooks?limit=0")["counts"]
                assert hooks.get("dropped", 0) > 0 and hooks.get("duplicated", 0) > 0, hooks
                assert store["inbox"].get(InboxState.PROCESSED, 0) > 0  # some came by webhook

                # Compare-and-swap: a buyer takes 2 units of A between our read and our set.
                # Shopify refuses the stale set; the engine learns the sale (webhook or poll)
                # and the shop ends at what the rules give, not 2 too high.
                race = {"sku": "A", "quantity": 2, "buyer": {"name": "Racer"}}
                assert sandbox.control("POST", "/sell-before-next-set", race) == {"pending": 1}
                answer = admin.put("/api/stock/A", json={"location": "default", "on_hand": 40})
                assert answer.status_code == 200, answer.text
                expected = {"A": 40 - sold["A"] - 2, "B": 30 - sold["B"]}
                wait_for(
                    lambda: (
                        sandbox.control("GET", "/inventory") == expected
                        and len(read_store(db_url)["orders"]) == ORDERS + 1
                    ),
                    timeout=90,
                    what=f"the sandbox to show {expected} with the racing order stored",
                )
                assert sandbox.control("GET", "/calls")["calls"]["inventorySetQuantities"] > 0

                page = admin.get("/api/orders", params={"channel": "shop"}).json()
                first = next(o for o in page["items"] if o["external_id"] == placed[0])
                shipped = admin.post(
                    f"/api/orders/{first['id']}/shipments",
                    json={"carrier": "UPS", "tracking": "1Z999AA10123456784"},
                )
                assert shipped.status_code in (200, 201), shipped.text

                def fulfilled() -> list[dict[str, Any]]:
                    return [
                        f
                        for f in sandbox.control("GET", "/fulfillments")["fulfillments"]
                        if f["order_id"] == placed[0]
                    ]

                (fulfillment,) = wait_for(fulfilled, timeout=90, what="the shipment on Shopify")
                assert fulfillment["tracking"]["number"] == "1Z999AA10123456784"
                assert fulfillment["tracking"]["company"] == "UPS"
                assert admin.get("/api/jobs", params={"state": "dead"}).json()["items"] == []
                calls = sandbox.control("GET", "/calls")
                throttled = calls["throttled"]
                assert sum(throttled.values()) > 0, calls  # the faults did hit the daemon
                assert sandbox.control("GET", "/inventory") == expected  # nothing undone since
            assert daemon.stop(signal.SIGTERM) == 0
        finally:
            daemon.kill()
        output = daemon.output()
        for secret in (ADMIN_TOKEN, TOKEN, SECRET, "buyer0@example.com", "Buyer 0"):
            assert secret not in output


def test_a_shop_that_cannot_be_reached_at_start_leaves_the_daemon_receiving_webhooks(
    tmp_path: Path, db_url: str
) -> None:
    config = DaemonConfig(root=tmp_path / "cfg", database_url=db_url)
    nowhere = f"http://127.0.0.1:{free_port()}"
    config.channels = {
        "shop": (
            'kind = "shopify"\n'
            'shop = "e2e.myshopify.com"\n'
            'access_token = "env:E2E_SHOPIFY_TOKEN"\n'
            'webhook_secrets = ["env:E2E_SHOPIFY_SECRET"]\n'
            f'api_base_url = "{nowhere}"\n'
            f'webhook_url = "{config.webhooks_url}/webhooks/shop"\n'
            "[schedule]\npoll_interval_s = 600\nreconcile_interval_s = 600\n"
        )
    }
    config.write()
    env = {config.admin_token_env: ADMIN_TOKEN, "E2E_SHOPIFY_TOKEN": TOKEN}
    daemon = Daemon(config, {**env, "E2E_SHOPIFY_SECRET": SECRET}).start()
    try:
        daemon.wait_healthy(timeout=30)
        wait_for(
            lambda: "could not subscribe to webhooks" in daemon.output(),
            timeout=90,
            what="the failed subscription to be logged",
        )
        assert daemon.proc is not None and daemon.proc.poll() is None
        body = b'{"id": 1}'
        signed = {
            "X-Shopify-Topic": "customers/redact",
            "X-Shopify-Hmac-Sha256": compute_signature(body, SECRET),
            "X-Shopify-Shop-Domain": "e2e.myshopify.com",
            "X-Shopify-Webhook-Id": "wh-1",
        }
        url = f"{config.webhooks_url}/webhooks/shop"
        assert httpx.post(url, content=body, headers=signed, timeout=10).status_code == 200
        forged = {**signed, "X-Shopify-Hmac-Sha256": compute_signature(body, "not-the-secret")}
        assert httpx.post(url, content=body, headers=forged, timeout=10).status_code == 401
        other = f"{config.webhooks_url}/webhooks/elsewhere"
        assert httpx.post(other, content=body, headers=signed, timeout=10).status_code == 404
        # Stored once, whether or not the inbox worker got to it yet.
        assert sum(read_store(db_url)["inbox"].values()) == 1
        assert daemon.stop(signal.SIGTERM) == 0
    finally:
        daemon.kill()
    assert SECRET not in daemon.output() and TOKEN not in daemon.output()
