"""`channel-sync demo` as a newcomer runs it: three sandbox marketplaces and the daemon, as a real
subprocess on loopback. An order placed on the Shopify sandbox shows up as stock on the eBay and
Amazon sandboxes and as an order in the admin API; with buyers, their cancellations reach the
store and the warehouse's parcels reach each order's marketplace, and the summary at the end says
what the store holds; the demo stops by itself after --duration (or on Ctrl-C), leaves no process
behind, and never prints a secret."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.demo_catalogue import DEMO_CATALOGUE
from sandbox.demo_summary import STATUSES, parse_store_text
from sandbox.demo_warehouse import CARRIERS
from tests.support.daemon import CHANNEL_SYNC, Daemon, DaemonConfig, wait_for

START_S = 120  # sandboxes, a fresh store and three first syncs, on a busy machine
SECRET_KEYS = ("token", "secret", "client_secret", "refresh_token", "verification_token")


@dataclass
class Demo:
    """A running `channel-sync demo` and where it keeps its state."""

    proc: subprocess.Popen[bytes]
    state: Path
    out: Path
    err: Path

    def info(self) -> dict[str, Any]:
        """demo.json, once written."""
        demo_json = self.state / "demo.json"

        def read() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"demo exited with {self.proc.returncode}:\n{self.printed()}")
            if not demo_json.exists():
                return None
            loaded: dict[str, Any] = json.loads(demo_json.read_text())
            return loaded

        return wait_for(read, timeout=START_S, what="demo.json")

    def sandboxes(self) -> dict[str, Any]:
        """The sandboxes' ready file (secrets included)."""
        loaded: dict[str, Any] = json.loads((self.state / "sandboxes.json").read_text())
        return loaded

    def printed(self) -> str:
        """Everything the demo printed so far, stdout and stderr."""
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")


def start_demo(tmp_path: Path, *args: str) -> Demo:
    """`channel-sync demo` with its state under tmp_path and free listener ports."""
    state = tmp_path / "demo-state"
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    env = {
        **os.environ,
        "CHANNEL_SYNC_LISTENERS__ADMIN__PORT": "0",
        "CHANNEL_SYNC_LISTENERS__WEBHOOKS__PORT": "0",
    }
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [CHANNEL_SYNC, "demo", "--state-dir", str(state), *args],
            stdout=stdout,
            stderr=stderr,
            env=env,
        )
    return Demo(proc, state, out, err)


@pytest.fixture
def cleanup() -> Iterator[list[Demo]]:
    demos: list[Demo] = []
    yield demos
    for demo in demos:
        if demo.proc.poll() is None:
            demo.proc.kill()
            demo.proc.wait(timeout=10)
        sandboxes = demo.state / "sandboxes.json"
        if sandboxes.exists():
            pid = json.loads(sandboxes.read_text())["pid"]
            if is_alive(pid):
                os.kill(pid, signal.SIGKILL)


def is_alive(pid: int) -> bool:
    """Whether a process with this pid still runs (a zombie counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return fields[0] != "Z"


def inventory(url: str) -> dict[str, int]:
    answer = httpx.get(f"{url}/_sandbox/inventory", timeout=10)
    assert answer.status_code == 200, answer.text
    shown: dict[str, int] = answer.json()
    return shown


def test_an_order_on_shopify_moves_stock_on_ebay_and_amazon_and_the_demo_ends_cleanly(
    tmp_path: Path, cleanup: list[Demo]
) -> None:
    demo = start_demo(tmp_path, "--duration", "45", "--rate", "0")
    cleanup.append(demo)
    info = demo.info()
    assert set(info["channels"]) == {"shopify", "amazon", "ebay"}
    assert {c["kind"] for c in info["channels"].values()} == {"shopify", "amazon", "ebay"}
    urls = {name: c["sandbox_url"] for name, c in info["channels"].items()}
    listed = {sku: units for sku, units, _ in DEMO_CATALOGUE.listed()}
    for url in urls.values():
        assert inventory(url) == listed  # the same catalogue everywhere, nothing to repair

    # Three blue mugs: the mug and the two-mug gift set both move on the other channels.
    placed = httpx.post(
        f"{urls['shopify']}/_sandbox/orders",
        json={
            "lines": [{"sku": "MUG-BLUE", "quantity": 3}],
            "buyer": {"name": "Demo Test Buyer", "email": "demo-test@example.test"},
        },
        timeout=10,
    )
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["order_id"]
    mugs, gift_sets = listed["MUG-BLUE"] - 3, (listed["MUG-BLUE"] - 3) // 2
    for name in ("ebay", "amazon"):

        def moved(url: str = urls[name]) -> bool:
            shown = inventory(url)
            return shown["MUG-BLUE"] == mugs and shown["GIFT-MUG-PAIR"] == gift_sets

        wait_for(moved, timeout=60, what=f"{name} to show {mugs} blue mugs, {gift_sets} gift sets")

    admin = httpx.Client(
        base_url=info["admin_url"],
        headers={"Authorization": f"Bearer {info['admin_token']}"},
        timeout=10,
    )
    with admin:
        assert httpx.get(f"{info['admin_url']}/api/orders", timeout=10).status_code == 401

        def stored() -> dict[str, Any] | None:
            page = admin.get("/api/orders", params={"channel": "shopify"}).json()
            return next((o for o in page["items"] if o["external_id"] == order_id), None)

        order = wait_for(stored, timeout=30, what="the order in GET /api/orders")
        assert order["is_oversold"] is False
        assert [(line["sku"], line["quantity"]) for line in order["lines"]] == [("MUG-BLUE", 3)]

    code = demo.proc.wait(timeout=120)  # --duration ends it
    assert code == 0, demo.printed()[-3000:]
    sandbox_pid = demo.sandboxes()["pid"]
    wait_for(lambda: not is_alive(sandbox_pid), timeout=20, what="the sandboxes to stop too")

    printed = demo.printed()
    assert info["admin_url"] in printed
    assert "[demo summary]" in printed
    secrets = [info["admin_token"]]
    for entry in demo.sandboxes()["sandboxes"].values():
        secrets += [entry[key] for key in SECRET_KEYS if entry.get(key)]
    assert len(secrets) >= 8
    for secret in secrets:
        assert secret not in printed
    for private in [
        demo.state / "demo.json",
        demo.state / "sandboxes.json",
        *(demo.state / "secrets").iterdir(),
    ]:
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    channel_files = "".join(
        path.read_text() for path in (demo.state / "config" / "channels").glob("*.toml")
    )
    assert "file:" in channel_files
    for secret in secrets[1:]:
        assert secret not in channel_files


def test_ctrl_c_stops_the_daemon_and_the_sandboxes(tmp_path: Path, cleanup: list[Demo]) -> None:
    demo = start_demo(tmp_path, "--rate", "5")
    cleanup.append(demo)
    info = demo.info()
    sandbox_pid = demo.sandboxes()["pid"]
    assert is_alive(sandbox_pid)

    demo.proc.send_signal(signal.SIGINT)

    assert demo.proc.wait(timeout=60) == 0, demo.printed()[-3000:]
    wait_for(lambda: not is_alive(sandbox_pid), timeout=20, what="the sandboxes to stop too")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{info['admin_url']}/healthz", timeout=2)
    # The summary still comes: what the buyers did, and the store's table.
    printed = demo.printed()
    assert "[demo summary]" in printed and "placed" in printed
    assert set(parse_store_text(printed)) <= {"shopify", "amazon", "ebay"}


def fulfillments(url: str) -> list[dict[str, Any]]:
    """A sandbox's parcels as (order id, carrier, tracking number, source)."""
    answer = httpx.get(f"{url}/_sandbox/fulfillments", timeout=10)
    assert answer.status_code == 200, answer.text
    shown: list[dict[str, Any]] = answer.json()["fulfillments"]
    return shown


def parcel(kind: str, shown: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """(order id, carrier, tracking number) of a sandbox's fulfilment, whatever its shape."""
    if kind == "shopify":
        return shown["order_id"], shown["tracking"]["company"], shown["tracking"]["number"]
    if kind == "amazon":
        return shown["order_id"], shown["carrier_code"], shown["tracking_number"]
    return shown["order_id"], shown["carrier"], shown["tracking"]


def all_orders(admin: httpx.Client, **params: str) -> list[dict[str, Any]]:
    """Every order GET /api/orders lists, page after page."""
    found: list[dict[str, Any]] = []
    query: dict[str, str | int] = {"limit": 1000, **params}
    while True:
        page = admin.get("/api/orders", params=query)
        assert page.status_code == 200, page.text
        body = page.json()
        found += body["items"]
        if not body["next_cursor"]:
            return found
        query["cursor"] = body["next_cursor"]


def test_buyers_cancel_the_warehouse_ships_and_the_summary_matches_the_store(
    tmp_path: Path, cleanup: list[Demo]
) -> None:
    demo = start_demo(tmp_path, "--duration", "40", "--rate", "5")
    cleanup.append(demo)
    info = demo.info()
    urls = {name: c["sandbox_url"] for name, c in info["channels"].items()}
    admin = httpx.Client(
        base_url=info["admin_url"],
        headers={"Authorization": f"Bearer {info['admin_token']}"},
        timeout=10,
    )
    Seen = tuple[dict[str, list[dict[str, Any]]], dict[tuple[str, str], dict[str, Any]]]

    def shipped_everywhere() -> Seen | None:
        """Each marketplace's parcels once every one has some, and the store's orders then."""
        if demo.proc.poll() is not None:
            raise AssertionError(f"the demo ended first:\n{demo.printed()[-3000:]}")
        shown = {name: fulfillments(url) for name, url in urls.items()}
        if not all(shown.values()):
            return None
        return shown, {(o["channel"], o["external_id"]): o for o in all_orders(admin)}

    with admin:
        shown, stored = wait_for(shipped_everywhere, timeout=60, what="parcels everywhere")
    # The warehouse's parcels reach the marketplace each order came from, once each.
    for name, parcels in shown.items():
        seen = [parcel(name, p) for p in parcels]
        assert len({order_id for order_id, _, _ in seen}) == len(seen), name
        for order_id, carrier, tracking in seen:
            found = stored.get((name, order_id))
            assert found is not None, (name, order_id)  # an order of that channel
            assert found["status"] in ("shipped", "partially_shipped"), found
            assert carrier in CARRIERS and tracking, (name, carrier, tracking)
    # A buyer's cancel releases every unit of the order.
    cancelled = [o for o in stored.values() if o["status"] == "cancelled"]
    assert cancelled
    for order in cancelled:
        assert all(line["cancelled"] == line["quantity"] for line in order["lines"]), order

    assert demo.proc.wait(timeout=60) == 0, demo.printed()[-3000:]
    printed = demo.printed()
    assert "oversell(s) prevented" in printed  # the plain line, and the summary's figures
    summary = parse_store_text(printed)
    assert set(summary) == set(urls)

    # The store, read back through the admin API of a daemon on the demo's SQLite file.
    reader = DaemonConfig(tmp_path / "reader", f"sqlite:///{demo.state / 'channel-sync.db'}")
    reader.write()
    daemon = Daemon(reader, {reader.admin_token_env: "reader-token"}).start()
    try:
        daemon.wait_healthy(timeout=30)
        with httpx.Client(
            base_url=reader.admin_url, headers={"Authorization": "Bearer reader-token"}, timeout=10
        ) as store:
            orders = all_orders(store)
    finally:
        daemon.stop()
    counted: dict[str, dict[str, int]] = {
        name: {"orders": 0, **{status: 0 for status in STATUSES}, "oversold": 0} for name in urls
    }
    for order in orders:
        row = counted[order["channel"]]
        row["orders"] += 1
        row[order["status"]] += 1
        row["oversold"] += int(order["is_oversold"])
    assert summary == counted
    assert all(row["cancelled"] > 0 and row["shipped"] > 0 for row in counted.values())
