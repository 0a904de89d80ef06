"""Webhook deliveries under a steady load lose nothing (issue 9 §3, the test form of
bench/webhooks.py at a lower rate; speed is the bench's business, not this test's).

The real daemon (`channel-sync run`, a subprocess) with a Shopify channel on the Shopify sandbox
(a subprocess), listings bound and stock set, receives 200 validly signed orders/create
deliveries of distinct orders (distinct X-Shopify-Webhook-Id) at 40 a second on a fixed
open-loop schedule (each one sent when due, whatever the earlier ones wait for). Every one must be
answered 200, every one must have its inbox row and its order in the store, once, and the store
must end showing the stock those orders left: each delivery was really processed, pushes
included.

And the read deadline (sync/http/read_timeout.py) as configured: a request stalled in its
headers gets 408 and is closed after `listeners.*.read_timeout_s`, on both listeners.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx
from sqlalchemy import func, select

from connectors.shopify.webhooks import compute_signature
from sandbox.shopify.model import Buyer, SystemClock, gid
from sandbox.shopify.payloads import PayloadRenderer
from sandbox.shopify.store import ShopStore
from sync.db import Database
from sync.models import Listing, Sku, WebhookDelivery
from sync.models import Order as OrderRow
from tests.sandbox.shopify.process import ShopifyProcess
from tests.support.daemon import Daemon, DaemonConfig, wait_for

ADMIN_TOKEN = "webhook-load-admin-token-0123456789"
TOKEN = "shpat_load_sandbox_token_0123456789"
SECRET = "shpss_load_sandbox_secret_0123456789"
SKUS = [f"LOAD-{i}" for i in range(5)]
STOCK = 10_000
RATE = 40.0
DELIVERIES = 200  # 5 s at RATE
TOPICS = 6
FOREIGN_ORDER_IDS = 7_700_000_000_000  # orders the sandbox never saw: webhooks only


def channel_file(sandbox: ShopifyProcess, webhook_url: str) -> str:
    """The channel file a seller would write for the sandbox store."""
    return (
        'kind = "shopify"\n'
        'locations = ["default"]\n'
        f'shop = "{sandbox.info["domain"]}"\n'
        'access_token = "env:LOAD_SHOPIFY_TOKEN"\n'
        'webhook_secrets = ["env:LOAD_SHOPIFY_SECRET"]\n'
        f'api_base_url = "{sandbox.info["url"]}"\n'
        f'webhook_url = "{webhook_url}"\n'
        f'[location_ids]\ndefault = "{sandbox.info["locations"]["Main warehouse"]}"\n'
        "[schedule]\npoll_interval_s = 600\nreconcile_interval_s = 3600\n"
    )


def deliveries(sandbox: ShopifyProcess) -> tuple[list[tuple[bytes, dict[str, str]]], Counter[str]]:
    """DELIVERIES signed orders/create webhooks as the store would send them; units per SKU."""
    rng = random.Random(7)
    shop = ShopStore(
        sandbox.info["shop"],
        currency="USD",
        clock=SystemClock(),
        rng=random.Random(7),
        locations=("Main warehouse",),
    )
    first = min(shop.locations)
    for sku in SKUS:
        shop.add_variant(
            sku,
            price=Decimal("10.00"),
            title="Default Title",
            product_title=sku,
            stock={first: 10**9},
        )
    renderer = PayloadRenderer(shop, utc_offset_minutes=0)
    sold: Counter[str] = Counter()
    made = []
    for n in range(DELIVERIES):
        sku, units = rng.choice(SKUS), rng.randint(1, 2)
        sold[sku] += units
        buyer = Buyer(first_name="Load", last_name="Buyer", email=f"load{n}@example.com")
        payload = renderer.order(shop.place_order([(sku, units)], buyer))
        payload["id"] = FOREIGN_ORDER_IDS + n
        payload["admin_graphql_api_id"] = gid("Order", FOREIGN_ORDER_IDS + n)
        body = json.dumps(payload).encode()
        made.append(
            (
                body,
                {
                    "Content-Type": "application/json",
                    "X-Shopify-Topic": "orders/create",
                    "X-Shopify-Hmac-Sha256": compute_signature(body, SECRET),
                    "X-Shopify-Shop-Domain": sandbox.info["domain"],
                    "X-Shopify-API-Version": "2026-04",
                    "X-Shopify-Webhook-Id": str(uuid.uuid4()),
                    "X-Shopify-Event-Id": str(uuid.uuid4()),
                },
            )
        )
    return made, sold


async def send_open_loop(url: str, planned: list[tuple[bytes, dict[str, str]]]) -> list[int]:
    """POST each delivery when due (i / RATE s after the start), concurrently; the statuses."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def one(body: bytes, headers: dict[str, str]) -> int:
            try:
                return (await client.post(url, content=body, headers=headers)).status_code
            except httpx.HTTPError:
                return 0  # no answer: the assertion below names it

        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        for i, (body, headers) in enumerate(planned):
            await asyncio.sleep(max(0.0, start + i / RATE - loop.time()))  # the schedule
            tasks.append(asyncio.create_task(one(body, headers)))
        return list(await asyncio.gather(*tasks))


def stored(db_url: str, delivery_ids: list[str], order_ids: list[str]) -> dict[str, int]:
    """Inbox rows of these deliveries, and order rows of these orders (counting duplicates)."""
    db = Database(db_url)
    try:
        with db.read_session() as session:
            inbox = session.scalar(
                select(func.count()).where(WebhookDelivery.delivery_id.in_(delivery_ids))
            )
            orders = session.scalar(select(func.count()).where(OrderRow.external_id.in_(order_ids)))
            listings = session.scalar(select(func.count()).select_from(Listing))
        return {"inbox": inbox or 0, "orders": orders or 0, "listings": listings or 0}
    finally:
        db.dispose()


def add_skus(db_url: str) -> None:
    """The SKUs the seller sells (what `stock import` would create)."""
    db = Database(db_url)
    try:
        with db.session() as session:
            session.add_all(Sku(sku=sku) for sku in SKUS)
    finally:
        db.dispose()


def test_every_delivery_of_a_steady_load_is_answered_200_and_stored(
    tmp_path: Path, db_url: str
) -> None:
    args = ["--shop", "load", "--token", TOKEN, "--secret", SECRET, "--seed", "3"]
    args += ["--restore-rate", "1000"]
    for sku in SKUS:
        args += ["--product", f"{sku}={STOCK}@10.00"]
    with ShopifyProcess(tmp_path, args) as sandbox:
        config = DaemonConfig(root=tmp_path / "cfg", database_url=db_url)
        config.channels = {"shop": channel_file(sandbox, f"{config.webhooks_url}/webhooks/shop")}
        config.write()
        env = {
            config.admin_token_env: ADMIN_TOKEN,
            "LOAD_SHOPIFY_TOKEN": TOKEN,
            "LOAD_SHOPIFY_SECRET": SECRET,
        }
        daemon = Daemon(config, env).start()
        try:
            daemon.wait_healthy(timeout=30)

            def subscribed() -> bool:
                subs = sandbox.control("GET", "/webhooks?limit=0")["subscriptions"]
                return len([s for s in subs if s["uri"].endswith("/webhooks/shop")]) == TOPICS

            wait_for(subscribed, timeout=30, what="the daemon to subscribe to the six topics")
            add_skus(db_url)
            with httpx.Client(
                base_url=config.admin_url,
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=30,
            ) as admin:
                for sku in SKUS:
                    answer = admin.put(
                        f"/api/stock/{sku}", json={"location": "default", "on_hand": STOCK}
                    )
                    assert answer.status_code == 200, answer.text

                def bound() -> bool:
                    if stored(db_url, [], [])["listings"] == len(SKUS):
                        return True
                    admin.post("/api/channels/shop/sync")
                    return False

                wait_for(bound, timeout=60, what="reconcile to bind every SKU")

            planned, sold = deliveries(sandbox)
            statuses = asyncio.run(send_open_loop(f"{config.webhooks_url}/webhooks/shop", planned))
            assert Counter(statuses) == {200: DELIVERIES}

            delivery_ids = [
                f"event:{headers['X-Shopify-Event-Id']}:orders/create" for _, headers in planned
            ]
            order_ids = [json.loads(body)["admin_graphql_api_id"] for body, _ in planned]
            # Answered 200 means committed: every inbox row is there at once.
            assert stored(db_url, delivery_ids, order_ids)["inbox"] == DELIVERIES
            wait_for(
                lambda: stored(db_url, delivery_ids, order_ids)["orders"] == DELIVERIES,
                timeout=120,
                what=f"all {DELIVERIES} orders ingested",
            )
            expected = {sku: STOCK - sold[sku] for sku in SKUS}
            wait_for(
                lambda: sandbox.control("GET", "/inventory") == expected,
                timeout=120,
                what=f"the store to show {expected}",
            )
            assert stored(db_url, delivery_ids, order_ids)["orders"] == DELIVERIES  # once each
            assert daemon.stop(signal.SIGTERM) == 0
        finally:
            daemon.kill()
        output = daemon.output()
        assert '"level": "ERROR"' not in output, output[-3000:]
        for secret in (ADMIN_TOKEN, TOKEN, SECRET, "load0@example.com"):
            assert secret not in output


def _stalled_answer(port: int, limit_s: float) -> tuple[bytes, float]:
    """Half a request's headers, then nothing: what the server sends before closing, and when."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /webhooks/shop HTTP/1.1\r\nHost: x\r\n")
        sent = time.monotonic()
        sock.settimeout(limit_s)
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
        return received, time.monotonic() - sent


def test_the_daemon_closes_stalled_requests_after_the_configured_read_timeouts(
    tmp_path: Path,
) -> None:
    """listeners.webhooks.read_timeout_s and listeners.admin.read_timeout_s reach both listeners
    (set here through the environment, as a seller may)."""
    config = DaemonConfig(root=tmp_path / "cfg", database_url=None)
    config.write()
    env = {
        config.admin_token_env: ADMIN_TOKEN,
        "CHANNEL_SYNC_LISTENERS__WEBHOOKS__READ_TIMEOUT_S": "1",
        "CHANNEL_SYNC_LISTENERS__ADMIN__READ_TIMEOUT_S": "2",
    }
    daemon = Daemon(config, env).start()
    try:
        daemon.wait_healthy(timeout=30)
        for port, timeout_s in ((config.webhooks_port, 1.0), (config.admin_port, 2.0)):
            answer, took = _stalled_answer(port, timeout_s + 10)
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
            assert 0.75 * timeout_s <= took < timeout_s + 2.0, (port, took)
        assert daemon.stop(signal.SIGTERM) == 0
    finally:
        daemon.kill()
    assert '"level": "ERROR"' not in daemon.output()
