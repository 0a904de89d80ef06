"""Canary buyers through the real daemon: their data shows only in the one order's detail.

Three sandboxes (Shopify, Amazon with its SQS queue, eBay) and `channel-sync run` on a SQLite
file, all subprocesses on loopback. Buyers whose name, e-mail, phone and address lines are canary
strings place orders on every channel; the orders come by Shopify's webhooks, Amazon's queue and
poll, and eBay's notifications and poll; one per channel is shipped and one cancelled through the
admin API. Then no canary (as typed, or JSON-escaped) may appear in the daemon's stdout or
stderr, in /metrics, /api/status, the order list, /api/stock, /api/jobs, or in the bytes of the
store file and its -wal and -shm files (read while the daemon runs and after it stopped); the
order detail does show the buyer's name, because the seller ships to it (issue 9, section 4).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.test_amazon_daemon import add_listings
from tests.e2e.test_amazon_daemon import channel_file as amazon_channel
from tests.e2e.test_amazon_daemon import env_of as amazon_env
from tests.e2e.test_ebay_daemon import (
    CLIENT_ID,
    CLIENT_SECRET,
    REFRESH_TOKEN,
    VERIFICATION_TOKEN,
    set_on_hand,
)
from tests.e2e.test_ebay_daemon import channel_file as ebay_channel
from tests.e2e.test_shopify_daemon import SECRET as SHOPIFY_SECRET
from tests.e2e.test_shopify_daemon import TOKEN as SHOPIFY_TOKEN
from tests.e2e.test_shopify_daemon import channel_file as shopify_channel
from tests.sandbox.amazon.process import AmazonProcess
from tests.sandbox.ebay.process import EbayProcess
from tests.sandbox.shopify.process import ShopifyProcess
from tests.support.daemon import Daemon, DaemonConfig, wait_for

ADMIN_TOKEN = "pii-canary-admin-token-0123"
NAME_MARK = "CANARY-NAME-7f3a"  # Shopify splits a name at its first space: this part stays whole
CANARIES = (
    f"{NAME_MARK} Zoë Quillfeather",
    "canary-7f3a@buyer.example",
    "+44 7700 907731",
    "7731 Canary Wharf Row",
    "Flat 7f3a, Canary House",
    "Canaryton-7f3a",
)
CHANNELS = {"shop": "shopify", "amazon-us": "amazon", "ebay": "ebay"}
SHOPIFY_SKUS = ["A", "B"]
AMAZON_SKUS = ["S00", "S01"]
EBAY_SKUS = ["T0", "T1"]
DEADLINE_S = 90.0


def buyer(kind: str) -> dict[str, Any]:
    """A canary buyer in the shape of each sandbox's `POST /_sandbox/orders` `buyer` field."""
    name, email, phone, line1, line2, city = CANARIES
    address: dict[str, str] = {"city": city, "country_code": "GB"}
    if kind == "shopify":
        address |= {"address1": line1, "address2": line2, "zip": "E14 5AB"}
    elif kind == "amazon":
        address |= {"line1": line1, "line2": line2, "postal_code": "E14 5AB"}
    else:
        address |= {"address_line1": line1, "address_line2": line2, "postal_code": "E14 5AB"}
    found: dict[str, Any] = {"name": name, "email": email, "phone": phone, "address": address}
    if kind == "ebay":
        found["username"] = "canary_buyer_7f3a"
    return found


def forms(value: str) -> list[bytes]:
    """The encodings a leak would take: as typed (UTF-8) and JSON-escaped."""
    escaped = json.dumps(value)[1:-1]
    return sorted({value.encode(), escaped.encode()})


NEEDLES = [form for value in (*CANARIES, NAME_MARK, "canary_buyer_7f3a") for form in forms(value)]


def leaks(data: bytes) -> list[str]:
    """The canary forms found in `data`."""
    return [needle.decode() for needle in NEEDLES if needle in data]


def store_leaks(state_dir: Path) -> dict[str, list[str]]:
    """Canaries in the bytes of the SQLite file and its -wal and -shm files."""
    found = {}
    for suffix in ("", "-wal", "-shm"):
        path = state_dir / f"channel-sync.db{suffix}"
        if path.exists():
            found[path.name] = leaks(path.read_bytes())
    return found


@contextmanager
def sandboxes(tmp_path: Path) -> Iterator[tuple[ShopifyProcess, AmazonProcess, EbayProcess]]:
    """The three marketplaces, each with two SKUs in stock."""
    shopify_args = ["--shop", "canary", "--token", SHOPIFY_TOKEN, "--secret", SHOPIFY_SECRET]
    shopify_args += [f"--product={sku}=20@9.99" for sku in SHOPIFY_SKUS]
    amazon_args = ["--start-sqs", *[f"--listing={sku}=20@12.50" for sku in AMAZON_SKUS]]
    ebay_args = ["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET]
    ebay_args += ["--refresh-token", REFRESH_TOKEN, *[f"--listing={sku}=20" for sku in EBAY_SKUS]]
    for name in ("shopify", "amazon", "ebay"):
        (tmp_path / name).mkdir()
    with ExitStack() as stack:
        shopify = stack.enter_context(ShopifyProcess(tmp_path / "shopify", shopify_args))
        amazon = stack.enter_context(AmazonProcess(tmp_path / "amazon", amazon_args))
        ebay = stack.enter_context(EbayProcess(tmp_path / "ebay", ebay_args))
        yield shopify, amazon, ebay


def check_admin_responses(admin: httpx.Client) -> list[tuple[str, list[str]]]:
    """(route, canaries) for every admin response but the order detail that shows one."""
    found = []
    routes = ["/metrics", "/api/status", "/api/stock", "/api/jobs"]
    routes += [f"/api/jobs?state={state}" for state in ("pending", "running", "done", "dead")]
    routes += ["/api/orders", *[f"/api/orders?channel={name}" for name in CHANNELS]]
    for route in routes:
        answer = admin.get(route)
        assert answer.status_code == 200, (route, answer.status_code)
        found.append((route, leaks(answer.content)))
    return [(route, hits) for route, hits in found if hits]


def stored_orders(admin: httpx.Client) -> dict[str, list[dict[str, Any]]]:
    """Orders per channel name, from the admin list."""
    items = admin.get("/api/orders", params={"limit": 100}).json()["items"]
    by_channel: dict[str, list[dict[str, Any]]] = {name: [] for name in CHANNELS}
    for item in items:
        by_channel.setdefault(item["channel"], []).append(item)
    return by_channel


def settled(admin: httpx.Client) -> bool:
    """No outbox job pending or running."""
    return all(
        not admin.get("/api/jobs", params={"state": state}).json()["items"]
        for state in ("pending", "running")
    )


def test_canary_buyers_leave_no_trace_but_the_order_detail(tmp_path: Path) -> None:
    with sandboxes(tmp_path) as (shopify, amazon, ebay):
        config = DaemonConfig(root=tmp_path / "cfg", database_url=None)
        config.channels = {
            "shop": shopify_channel(shopify, f"{config.webhooks_url}/webhooks/shop"),
            "amazon-us": amazon_channel(amazon),
            "ebay": ebay_channel(ebay, config.webhooks_url, 5000),
        }
        config.write()
        state_dir = config.root / "state"
        store_url = f"sqlite:///{state_dir / 'channel-sync.db'}"
        env = {
            **amazon_env(config, amazon),
            config.admin_token_env: ADMIN_TOKEN,
            "E2E_SHOPIFY_TOKEN": SHOPIFY_TOKEN,
            "E2E_SHOPIFY_SECRET": SHOPIFY_SECRET,
            "E2E_EBAY_CLIENT_SECRET": CLIENT_SECRET,
            "E2E_EBAY_REFRESH_TOKEN": REFRESH_TOKEN,
            "E2E_EBAY_VERIFICATION_TOKEN": VERIFICATION_TOKEN,
        }
        daemon = Daemon(config, env).start()
        try:
            daemon.wait_healthy(timeout=30)
            assert (state_dir / "buyer-data.key").stat().st_mode & 0o777 == 0o600
            with httpx.Client(
                base_url=config.admin_url,
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=30,
            ) as admin:
                run_orders(admin, config, shopify, amazon, ebay, store_url)
                # While the daemon runs: the file, its WAL and shared memory as they are now.
                running = store_leaks(state_dir)
                assert set(running) >= {"channel-sync.db", "channel-sync.db-wal"}
                assert not any(running.values()), running
                assert check_admin_responses(admin) == []
            assert daemon.stop(signal.SIGTERM) == 0
        finally:
            daemon.kill()
        output = daemon.output().encode()
        assert "buyer data sealed under key id" in output.decode()
        assert leaks(output) == []
        stopped = store_leaks(state_dir)
        assert not any(stopped.values()), stopped
        assert (state_dir / "channel-sync.db").stat().st_size > 0


def run_orders(
    admin: httpx.Client,
    config: DaemonConfig,
    shopify: ShopifyProcess,
    amazon: AmazonProcess,
    ebay: EbayProcess,
    store_url: str,
) -> None:
    """Canary orders on every channel, by every path; one of each shipped, one cancelled."""
    subs = lambda: shopify.control("GET", "/webhooks?limit=0")["subscriptions"]  # noqa: E731
    wait_for(lambda: len(subs()) > 0, timeout=30, what="the daemon's Shopify webhooks")
    endpoint = f"{config.webhooks_url}/webhooks/ebay"
    shown = ebay.control(
        "POST", "/notifications", {"endpoint": endpoint, "verification_token": VERIFICATION_TOKEN}
    )
    assert shown["endpoint"]["verified"] is True
    add_listings(store_url, AMAZON_SKUS, 20)  # Amazon's SKUs, bound, with stock
    add_more_skus(store_url, SHOPIFY_SKUS + EBAY_SKUS)
    set_on_hand(store_url, dict.fromkeys(SHOPIFY_SKUS + EBAY_SKUS, 20))

    placed: dict[str, list[str]] = {}
    for name, kind, sandbox, skus in (
        ("shop", "shopify", shopify, SHOPIFY_SKUS),
        ("amazon-us", "amazon", amazon, AMAZON_SKUS),
        ("ebay", "ebay", ebay, EBAY_SKUS),
    ):
        placed[name] = [
            sandbox.control(
                "POST",
                "/orders",
                {"lines": [{"sku": sku, "quantity": 1}], "buyer": buyer(kind)},
            )["order_id"]
            for sku in skus
        ]

    def all_stored() -> dict[str, list[dict[str, Any]]] | None:
        for name in CHANNELS:
            admin.post(f"/api/channels/{name}/sync")  # the poll path too (502 on a fault)
        orders = stored_orders(admin)
        found = {name: {o["external_id"] for o in orders[name]} for name in CHANNELS}
        return orders if all(set(placed[n]) <= found[n] for n in CHANNELS) else None

    orders = wait_for(all_stored, timeout=DEADLINE_S, what="every canary order in the store")
    for name in CHANNELS:
        first, second = sorted(orders[name], key=lambda o: o["id"])[:2]
        detail = admin.get(f"/api/orders/{first['id']}")
        assert detail.status_code == 200
        ship_to = detail.json()["ship_to"]
        assert ship_to is not None and NAME_MARK in str(ship_to.get("name")), (name, ship_to)
        assert "buyer_ref" not in detail.json()
        shipped = admin.post(
            f"/api/orders/{first['id']}/shipments",
            json={"carrier": "UPS", "tracking": f"1Z999AA1012345678{len(name)}"},
        )
        assert shipped.status_code in (200, 201), shipped.text
        cancelled = admin.post(f"/api/orders/{second['id']}/cancel")
        assert cancelled.status_code in (200, 201, 202), cancelled.text
    wait_for(lambda: settled(admin), timeout=DEADLINE_S, what="shipments and cancels sent")


def add_more_skus(store_url: str, skus: list[str]) -> None:
    """SKUs the seller sells on Shopify and eBay (Amazon's come with their listings)."""
    from sqlalchemy import select

    from sync.db import Database
    from sync.models import Sku

    db = Database(store_url)
    try:
        with db.session() as session:
            known = set(session.scalars(select(Sku.sku)))
            session.add_all(Sku(sku=sku) for sku in skus if sku not in known)
    finally:
        db.dispose()
