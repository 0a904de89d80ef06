"""The demo's view: its figures from canned answers of the admin API and the sandboxes (shaped
as the real ones answer), how they are drawn, and that a look asks each API what it should."""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from typing import Any

import httpx
from rich.console import Console

from sandbox.demo_figures import Answers, figures, most_contended
from sandbox.demo_orders import OrderTally
from sandbox.demo_view import DemoView, look, plain_line, plain_text, render
from sandbox.demo_warehouse import WarehouseTally

CHANNELS = ("shopify", "amazon", "ebay")
LISTED = {"MUG": 25, "SCARF": 1, "CANDLE": 2, "TEA": 3, "PEN": 20, "NOTEBOOK": 50, "PAIR": 30}

STATUS: dict[str, Any] = {
    "draining": False,
    "channels": [
        {"name": "amazon", "state": "ok", "lag_s": 15.25, "jobs_dead": 0, "orders_today": 10},
        {"name": "ebay", "state": "degraded", "lag_s": 0.5, "jobs_dead": 2, "orders_today": 3},
        {"name": "shopify", "state": "ok", "lag_s": None, "jobs_dead": 0, "orders_today": 5},
    ],
}

METRICS = """\
# HELP channel_sync_stock_pushes_total Listing quantities pushed to channels.
# TYPE channel_sync_stock_pushes_total counter
channel_sync_stock_pushes_total{channel="shopify",outcome="applied"} 26.0
channel_sync_stock_pushes_total{channel="shopify",outcome="conflicts"} 4.0
channel_sync_stock_pushes_total{channel="ebay",outcome="applied"} 25.0
channel_sync_stock_pushes_total{channel="ebay",outcome="rejected"} 1.0
channel_sync_stock_pushes_total{channel="amazon",outcome="applied"} 19.0
# HELP channel_sync_fanout_pushes_total Shipment and cancel jobs sent to their origin channel.
# TYPE channel_sync_fanout_pushes_total counter
channel_sync_fanout_pushes_total{channel="amazon",kind="shipment",outcome="applied"} 6.0
channel_sync_fanout_pushes_total{channel="amazon",kind="shipment",outcome="already_there"} 1.0
channel_sync_fanout_pushes_total{channel="amazon",kind="shipment",outcome="retry"} 3.0
channel_sync_fanout_pushes_total{channel="amazon",kind="cancel",outcome="applied"} 2.0
channel_sync_fanout_pushes_total{channel="ebay",kind="shipment",outcome="applied"} 4.0
# HELP channel_sync_scheduled_runs_total Poll and reconcile runs.
# TYPE channel_sync_scheduled_runs_total counter
channel_sync_scheduled_runs_total{channel="ebay",job="poll",outcome="ok"} 8.0
channel_sync_scheduled_runs_total{channel="ebay",job="poll",outcome="failed"} 3.0
channel_sync_scheduled_runs_total{channel="amazon",job="reconcile",outcome="auth_failed"} 1.0
# HELP channel_sync_oversold_orders Orders flagged oversold (reserved beyond stock), by channel.
# TYPE channel_sync_oversold_orders gauge
channel_sync_oversold_orders{channel="amazon"} 0.0
channel_sync_oversold_orders{channel="ebay"} 0.0
channel_sync_oversold_orders{channel="shopify"} 2.0
"""

STOCK = [
    {"sku": "SCARF", "is_bundle": False, "totals": {"on_hand": 1, "reserved": 2, "available": -1}},
    {"sku": "CANDLE", "is_bundle": False, "totals": {"on_hand": 2, "reserved": 1, "available": 1}},
    {"sku": "TEA", "is_bundle": False, "totals": {"on_hand": 3, "reserved": 0, "available": 3}},
    {"sku": "MUG", "is_bundle": False, "totals": {"on_hand": 25, "reserved": 5, "available": 20}},
    {
        "sku": "PAIR",
        "is_bundle": True,
        "totals": {"on_hand": None, "reserved": None, "available": 10},
    },
]

INVENTORY = {
    "shopify": {"SCARF": 0, "CANDLE": 1, "TEA": 3, "MUG": 20, "PAIR": 10},
    "amazon": {"SCARF": 0, "CANDLE": 2, "TEA": 3, "MUG": 21, "PAIR": 10},
    "ebay": {"SCARF": 0, "CANDLE": 1, "TEA": 3, "MUG": 20},
}

CALLS = {
    "shopify": {"calls": {"inventorySetQuantities": 19, "orders": 8}, "throttled": {}},
    "amazon": {
        "calls": {"getOrder": 10, "patchListingsItem": 29},
        "throttled": {"getOrder": 4, "searchOrders": 1},
    },
    "ebay": {
        "calls": {"ReviseInventoryStatus": 19, "getOrders": 10},
        "throttled": {"getOrders": 2},
    },
}


def tallies() -> tuple[OrderTally, WarehouseTally]:
    buyers = OrderTally()
    buyers.placed.update({"shopify": 6, "amazon": 11, "ebay": 4})
    buyers.sold_out.update({"shopify": 2, "ebay": 3})
    buyers.prevented.update({"shopify": 1, "ebay": 2})
    buyers.cancelled.update({"amazon": 1})
    buyers.held["shopify"].update({"SCARF": 2, "MUG": 3})
    buyers.held["ebay"].update({"CANDLE": 1, "MUG": 2})
    warehouse = WarehouseTally()
    warehouse.shipped.update({"amazon": 7, "ebay": 4})
    return buyers, warehouse


def canned() -> Answers:
    return Answers(status=STATUS, stock=STOCK, metrics=METRICS, inventory=INVENTORY, calls=CALLS)


def test_the_figures_of_each_channel_come_from_the_answers_and_the_tallies() -> None:
    buyers, warehouse = tallies()
    fig = figures(
        canned(), channels=CHANNELS, listed=LISTED, buyers=buyers, warehouse=warehouse, elapsed_s=12
    )
    rows = {c.name: c for c in fig.channels}
    assert [c.name for c in fig.channels] == list(CHANNELS)

    shopify, amazon, ebay = rows["shopify"], rows["amazon"], rows["ebay"]
    assert (shopify.orders_in, amazon.orders_in, ebay.orders_in) == (5, 10, 3)
    assert (shopify.sold_out, shopify.prevented, ebay.sold_out, ebay.prevented) == (2, 1, 3, 2)
    assert (amazon.cancelled, amazon.shipped, ebay.shipped) == (1, 7, 4)
    # Applied only: conflicts are retried, rejections are errors.
    assert (shopify.stock_pushes, amazon.stock_pushes, ebay.stock_pushes) == (26, 19, 25)
    # Shipments that landed (applied or found there); not retries, not cancels.
    assert (shopify.shipments_pushed, amazon.shipments_pushed, ebay.shipments_pushed) == (0, 7, 4)
    assert (shopify.lag_s, amazon.lag_s, ebay.lag_s) == (None, 15.25, 0.5)
    assert (shopify.api_calls, amazon.api_calls, ebay.api_calls) == (27, 39, 29)
    assert (shopify.throttles, amazon.throttles, ebay.throttles) == (0, 5, 2)
    # eBay: 3 failed polls, 1 rejected push, 2 dead jobs; Amazon: 1 reconcile refused.
    assert (shopify.errors, amazon.errors, ebay.errors) == (0, 1, 6)
    assert (shopify.oversold, amazon.oversold, ebay.oversold) == (2, 0, 0)
    assert (fig.prevented, fig.oversold) == (3, 2)
    assert fig.daemon_answered


def test_the_contended_skus_are_those_buyers_hold_most_of_side_by_side_on_every_channel() -> None:
    buyers, warehouse = tallies()
    fig = figures(
        canned(), channels=CHANNELS, listed=LISTED, buyers=buyers, warehouse=warehouse, elapsed_s=1
    )
    # SCARF 2/1, CANDLE 1/2, MUG 5/25; then nothing ordered: the scarcest first.
    assert [r.sku for r in fig.contended] == ["SCARF", "CANDLE", "MUG", "TEA", "PEN"]
    scarf, candle, *_, pen = fig.contended
    assert scarf.available == -1
    assert dict(scarf.shown) == {"shopify": 0, "amazon": 0, "ebay": 0}
    assert candle.available == 1
    assert dict(candle.shown) == {"shopify": 1, "amazon": 2, "ebay": 1}
    assert pen.available is None  # the stock page did not list it
    assert dict(pen.shown) == {"shopify": None, "amazon": None, "ebay": None}

    assert most_contended({"B": 3, "A": 3, "C": 1}, Counter()) == ["C", "A", "B"]
    assert most_contended({"B": 3, "A": 3, "C": 1}, Counter({"B": 3}), limit=1) == ["B"]


def test_a_daemon_that_does_not_answer_shows_zeros_and_says_so() -> None:
    fig = figures(
        Answers(),
        channels=CHANNELS,
        listed=LISTED,
        buyers=OrderTally(),
        warehouse=WarehouseTally(),
        elapsed_s=3,
    )
    assert not fig.daemon_answered
    assert all(c.orders_in == 0 and c.lag_s is None for c in fig.channels)
    assert "daemon not answering" in plain_line(fig)


def test_the_figures_are_drawn_live_on_a_line_and_as_plain_text() -> None:
    buyers, warehouse = tallies()
    fig = figures(
        canned(), channels=CHANNELS, listed=LISTED, buyers=buyers, warehouse=warehouse, elapsed_s=42
    )
    line = plain_line(fig)
    assert line.startswith("[demo 42 s: 3 oversell(s) prevented, 2 order(s) oversold]")
    assert "orders in: shopify 5, amazon 10, ebay 3" in line
    assert "stock pushes 70; shipments pushed 11; throttled 7; errors 7" in line
    assert "max lag 15.2 s" in line

    text = plain_text(fig).splitlines()
    header = text[1].split()
    assert header[:3] == ["channel", "orders", "in"]
    amazon = next(row.split() for row in text if row.split()[:1] == ["amazon"])
    assert amazon == [
        "amazon",
        "10",
        "0",
        "0",
        "1",
        "7",
        "19",
        "7",
        "15.2",
        "s",
        "39",
        "5",
        "1",
        "0",
    ]
    scarf = next(row.split() for row in text if row.split()[:1] == ["SCARF"])
    assert scarf == ["SCARF", "-1", "0", "0", "0"]

    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(render(fig))
    drawn = out.getvalue()
    assert "3 oversell(s) prevented" in drawn
    assert "shipments pushed" in drawn and "amazon shows" in drawn
    assert "buyers: 21 placed" in drawn


def test_a_look_asks_the_admin_api_with_the_token_and_the_sandboxes_without() -> None:
    asked: list[tuple[str, str, str | None]] = []
    sandboxes = {name: f"http://{name}.test" for name in CHANNELS}

    def answer(request: httpx.Request) -> httpx.Response:
        host, path = request.url.host, request.url.path
        asked.append((host, path, request.headers.get("authorization")))
        if host == "admin.test":
            if path == "/metrics":
                return httpx.Response(200, text=METRICS)
            body = {"/api/status": STATUS, "/api/stock": {"items": STOCK, "next_cursor": None}}
            return httpx.Response(200, json=body[path])
        channel = host.removesuffix(".test")
        if channel == "ebay" and path == "/_sandbox/calls":
            return httpx.Response(503)  # one sandbox not answering: the rest still counts
        source = INVENTORY if path == "/_sandbox/inventory" else CALLS
        return httpx.Response(200, json=source[channel])

    transport = httpx.MockTransport(answer)
    buyers, warehouse = tallies()

    async def look_once() -> Answers:
        async with (
            httpx.AsyncClient(
                base_url="http://admin.test",
                headers={"Authorization": "Bearer T0KEN"},
                transport=transport,
            ) as admin,
            httpx.AsyncClient(transport=transport) as sandbox,
        ):
            view = DemoView(
                admin,
                sandboxes,
                listed=LISTED,
                buyers=lambda: buyers,
                warehouse=lambda: warehouse,
                say=print,
            )
            fig = await view.refresh(sandbox)
            assert view.last == fig
            assert {c.name: c.throttles for c in fig.channels} == {
                "shopify": 0,
                "amazon": 5,
                "ebay": 0,
            }
            return await look(admin, sandbox, sandboxes)

    answers = asyncio.run(look_once())
    assert answers.status == STATUS and list(answers.stock) == STOCK
    assert set(answers.calls) == {"shopify", "amazon"}
    for host, path, authorization in asked:
        if host == "admin.test":
            assert authorization == "Bearer T0KEN", path
        else:
            assert authorization is None, (host, path)  # the token never leaves for a sandbox
    assert {(h, p) for h, p, _ in asked if h == "admin.test"} == {
        ("admin.test", "/api/status"),
        ("admin.test", "/api/stock"),
        ("admin.test", "/metrics"),
    }
