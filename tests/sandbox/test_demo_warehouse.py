"""The demo's warehouse: which open orders it takes, when their parcels leave (a seeded 2-8 s
after it saw them), and how the admin API's answers are counted; against an
httpx.MockTransport, with the clock given by the test."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from sandbox.demo_warehouse import CARRIERS, SHIP_AFTER_S, Warehouse

ADMIN = "http://admin.test"


def order(order_id: int, channel: str, **flags: bool) -> dict[str, Any]:
    return {
        "id": order_id,
        "channel": channel,
        "status": "open",
        "is_oversold": flags.get("is_oversold", False),
        "is_reserving": flags.get("is_reserving", True),
    }


def warehouse(handler: Any = None, seed: int = 4) -> Warehouse:
    transport = httpx.MockTransport(handler or (lambda r: httpx.Response(500)))
    return Warehouse(httpx.AsyncClient(base_url=ADMIN, transport=transport), seed=seed)


def test_each_order_it_can_fill_leaves_once_between_two_and_eight_seconds_after_it_saw_it() -> None:
    orders = [
        order(3, "ebay"),
        order(1, "shopify"),
        order(2, "amazon", is_oversold=True),  # no units on the shelf for it
        order(4, "amazon", is_reserving=False),  # Amazon ships it from its own stock
        order(5, "amazon"),
    ]
    house = warehouse()
    assert house.take(orders, now=100.0) == 3
    assert house.take(orders, now=101.0) == 0  # seen already, even the ones it left alone
    assert house.due(100.0 + SHIP_AFTER_S[0] - 0.01) == []
    ready = house.due(100.0 + SHIP_AFTER_S[1])
    assert sorted((d.order_id, d.channel) for d in ready) == [
        (1, "shopify"),
        (3, "ebay"),
        (5, "amazon"),
    ]
    assert all(100.0 + SHIP_AFTER_S[0] <= d.at <= 100.0 + SHIP_AFTER_S[1] for d in ready)
    assert house.due(1000.0) == []  # each one once

    again = warehouse()
    again.take(orders, now=100.0)
    assert [d.at for d in again.due(200.0)] == [d.at for d in ready]  # seeded
    other = warehouse(seed=5)
    other.take(orders, now=100.0)
    assert [d.at for d in other.due(200.0)] != [d.at for d in ready]


def test_a_parcel_is_recorded_through_the_admin_api_and_refusals_are_counted() -> None:
    bodies: list[tuple[str, dict[str, Any]]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        bodies.append((request.url.path, json.loads(request.content)))
        order_id = request.url.path.split("/")[3]
        status = {"1": 201, "2": 409}.get(order_id, 503)
        return httpx.Response(status, json={})

    house = warehouse(answer)
    house.take([order(1, "shopify"), order(2, "ebay"), order(3, "ebay")], now=0.0)

    async def ship_all() -> None:
        for due in house.due(60.0):
            await house.ship(due)

    asyncio.run(ship_all())
    assert [path for path, _ in bodies] == [f"/api/orders/{n}/shipments" for n in (1, 2, 3)]
    for _, body in bodies:
        assert set(body) == {"carrier", "tracking"}  # every open unit: no lines
        assert body["carrier"] in CARRIERS
        assert len(body["tracking"]) >= 12
    assert house.tally.shipped == {"shopify": 1}
    assert house.tally.refused == {"ebay": 1}  # cancelled meanwhile
    assert house.tally.failed == {"ebay": 1}
    assert "1 parcel(s) shipped" in house.tally.describe()


def test_open_orders_are_read_page_by_page() -> None:
    asked: list[dict[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        asked.append(params)
        assert request.url.path == "/api/orders"
        if "cursor" not in params:
            return httpx.Response(200, json={"items": [order(9, "ebay")], "next_cursor": "OQ"})
        return httpx.Response(200, json={"items": [order(8, "amazon")], "next_cursor": None})

    found = asyncio.run(warehouse(answer).open_orders())
    assert [o["id"] for o in found] == [9, 8]
    assert [a.get("status") for a in asked] == ["open", "open"]
    assert asked[1]["cursor"] == "OQ"
