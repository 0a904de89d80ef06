"""The real daemon against the reference sandbox, both as subprocesses, on SQLite and PostgreSQL.

Listings are bound by writing the store rows directly (the SKUs and their channel refs), as an
onboarding step would; everything else goes through the daemon's admin API and the sandbox's
control API, and the assertions are what the marketplaces show.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from sync.db import Database
from sync.models import Channel, Listing, Sku
from tests.support.daemon import Daemon, DaemonConfig, wait_for
from tests.support.reference import ReferenceSandbox

ADMIN_TOKEN = "reference-e2e-admin-token-0123"


def bind_listings(database_url: str, bindings: Mapping[str, Mapping[str, str]]) -> None:
    """channel -> {SKU: the channel's listing ref}: the store rows a binding step would write."""
    db = Database(database_url)
    try:
        with db.session() as session:
            channels = {c.name: c.id for c in session.scalars(select(Channel))}
            skus = {sku for refs in bindings.values() for sku in refs}
            known = set(session.scalars(select(Sku.sku).where(Sku.sku.in_(skus))))
            session.add_all(Sku(sku=sku) for sku in sorted(skus - known))
            session.flush()
            for channel, refs in bindings.items():
                for sku, ref in refs.items():
                    session.add(Listing(channel_id=channels[channel], sku=sku, external_ref=ref))
    finally:
        db.dispose()


def test_reference_channels_converge_on_the_ledger_after_a_sale_on_one_of_them(
    tmp_path: Path, db_url: str
) -> None:
    with ReferenceSandbox(tmp_path / "sandbox", ["shop:cas", "plain:batch=2"]) as sandbox:
        sandbox.control("shop", "POST", "/stock", {"A": 0, "B": 0})
        sandbox.control("plain", "POST", "/stock", {"A": 0})
        fast_poll = "[schedule]\npoll_interval_s = 0.5\n"
        config = DaemonConfig(
            root=tmp_path / "cfg",
            database_url=db_url,
            channels={
                "shop": sandbox.channel_file("shop", extra=fast_poll),
                "plain": sandbox.channel_file("plain", extra=fast_poll),
            },
        )
        config.write()
        daemon = Daemon(config, {config.admin_token_env: ADMIN_TOKEN, **sandbox.env}).start()
        try:
            daemon.wait_healthy(timeout=30)
            bind_listings(db_url, {"shop": {"A": "L-A", "B": "L-B"}, "plain": {"A": "L-A"}})
            with httpx.Client(
                base_url=config.admin_url,
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=10,
            ) as admin:

                def shows(channel: str, expected: dict[str, int]) -> bool:
                    return bool(sandbox.control(channel, "GET", "/inventory") == expected)

                def told(sku: str) -> dict[str, int | None]:
                    item = admin.get(f"/api/stock/{sku}").json()
                    return {c["channel"]: c["last_pushed_quantity"] for c in item["channels"]}

                set_a = admin.put("/api/stock/A", json={"location": "default", "on_hand": 7})
                assert set_a.status_code == 200, set_a.text
                wait_for(
                    lambda: shows("shop", {"A": 7, "B": 0}) and shows("plain", {"A": 7}),
                    timeout=30,
                    what="both channels to show the 7 units of A",
                )
                wait_for(
                    lambda: told("A") == {"plain": 7, "shop": 7},
                    timeout=30,
                    what="the daemon to record that both channels hold 7",
                )

                # A buyer takes 2 on shop while the seller restocks to 10. Whichever the daemon
                # meets first (the polled order, or a compare-and-swap conflict on shop), both
                # channels must end at 10 - 2.
                sandbox.control("shop", "POST", "/orders", {"lines": [{"sku": "A", "quantity": 2}]})
                set_a = admin.put("/api/stock/A", json={"location": "default", "on_hand": 10})
                assert set_a.status_code == 200, set_a.text
                wait_for(
                    lambda: shows("shop", {"A": 8, "B": 0}) and shows("plain", {"A": 8}),
                    timeout=30,
                    what="both channels at 10 - 2",
                )
                wait_for(
                    lambda: told("A") == {"plain": 8, "shop": 8},
                    timeout=30,
                    what="the daemon to record what each channel holds",
                )
                totals = admin.get("/api/stock/A").json()["totals"]
                assert totals == {"on_hand": 10, "reserved": 2, "available": 8}
                assert admin.get("/api/jobs", params={"state": "dead"}).json()["items"] == []
                calls = sandbox.control("plain", "GET", "/calls")
                assert calls["calls"]["set_stock"] >= 2  # 7, then 8 (a 10 may coalesce away)
                assert calls["throttled"] == {}
            assert daemon.stop(signal.SIGTERM) == 0
        finally:
            daemon.kill()
        assert ADMIN_TOKEN not in daemon.output()
        assert sandbox.token not in daemon.output()


def test_an_order_placed_on_a_reference_channel_is_polled_into_the_store(
    tmp_path: Path, db_url: str
) -> None:
    with ReferenceSandbox(tmp_path / "sandbox", ["shop:idempotent"]) as sandbox:
        sandbox.control("shop", "POST", "/stock", {"A": 5})
        config = DaemonConfig(
            root=tmp_path / "cfg",
            database_url=db_url,
            channels={
                "shop": sandbox.channel_file("shop", extra="[schedule]\npoll_interval_s = 0.5\n")
            },
        )
        config.write()
        daemon = Daemon(config, {config.admin_token_env: ADMIN_TOKEN, **sandbox.env}).start()
        try:
            daemon.wait_healthy(timeout=30)
            buyer = {"name": "Pat Buyer", "email": "pat@example.com"}
            body = {"lines": [{"sku": "A", "quantity": 2}], "buyer": buyer}
            order_id = sandbox.control("shop", "POST", "/orders", body)["order_id"]
            with httpx.Client(
                base_url=config.admin_url,
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=10,
            ) as admin:

                def stored(status: str) -> list[dict[str, Any]]:
                    page = admin.get("/api/orders", params={"channel": "shop"}).json()
                    return [
                        o
                        for o in page["items"]
                        if o["external_id"] == order_id and o["status"] == status
                    ]

                (order,) = wait_for(
                    lambda: stored("open"), timeout=30, what="the poller to ingest the order"
                )
                # SKU A is not in our catalogue yet: stored as the channel's SKU, unmapped.
                lines = [(line["channel_sku"], line["quantity"]) for line in order["lines"]]
                assert lines == [("A", 2)]

                # The seller ships in the marketplace's admin; the next poll brings it in.
                sandbox.control("shop", "POST", "/ship", {"order_id": order_id})
                wait_for(lambda: stored("shipped"), timeout=30, what="the shipment to be polled in")
            assert daemon.stop(signal.SIGTERM) == 0
        finally:
            daemon.kill()
        assert "Pat Buyer" not in daemon.output()
        assert "pat@example.com" not in daemon.output()
