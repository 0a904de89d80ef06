"""The demo's buyers: seeded draws over the channels and the catalogue, a steady rate, each
marketplace's answer counted (placed, sold out, failed), some orders cancelled where they were
placed, and which refusals are oversells prevented; against an httpx.MockTransport."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx
import pytest

from sandbox.demo_orders import OrderGenerator

SANDBOXES = {
    "shopify": "http://shopify.test",
    "amazon": "http://amazon.test",
    "ebay": "http://ebay.test",
}


def test_the_same_seed_places_the_same_orders_on_every_channel() -> None:
    def draws(seed: int) -> list[tuple[str, str, int]]:
        generator = OrderGenerator(SANDBOXES, ["A", "B", "C"], rate=1, seed=seed)
        orders = [generator.next_order() for _ in range(300)]
        return [(c, b["lines"][0]["sku"], b["lines"][0]["quantity"]) for c, b in orders]

    first = draws(7)
    assert first == draws(7)
    assert first != draws(8)
    assert set(Counter(channel for channel, _, _ in first)) == set(SANDBOXES)
    assert {sku for _, sku, _ in first} == {"A", "B", "C"}
    assert {quantity for _, _, quantity in first} == {1, 2}


def test_orders_go_out_at_the_rate_and_every_answer_is_counted() -> None:
    seen: list[tuple[str, dict[str, object]]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append((request.url.host, body))
        assert request.url.path == "/_sandbox/orders"
        sku = body["lines"][0]["sku"]
        status = {"A": 201, "B": 409}.get(sku, 500)
        return httpx.Response(status, json={"order_id": str(len(seen))})

    generator = OrderGenerator(
        SANDBOXES,
        ["A", "B", "C"],
        rate=50,
        seed=3,
        cancel_share=0,
        transport=httpx.MockTransport(answer),
    )

    async def run_for(seconds: float) -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        await generator.run(stop)

    asyncio.run(run_for(1.0))

    assert 20 <= len(seen) <= 55  # 50 a second, give or take a busy machine
    tally = generator.tally
    by_sku = Counter(body["lines"][0]["sku"] for _, body in seen)  # type: ignore[index]
    assert tally.placed.total() == by_sku["A"]
    assert tally.sold_out.total() == by_sku["B"]
    assert tally.failed.total() == by_sku["C"]
    assert "refused as sold out" in tally.describe()


def test_no_rate_is_no_generator() -> None:
    with pytest.raises(ValueError, match="positive"):
        OrderGenerator(SANDBOXES, ["A"], rate=0)


def test_some_buyers_cancel_where_they_bought_and_every_answer_is_counted() -> None:
    placed: dict[tuple[str, str], dict[str, object]] = {}
    cancels: list[tuple[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        host = request.url.host
        if request.url.path == "/_sandbox/orders":
            order_id = f"{host}-{len(placed)}"
            placed[(host, order_id)] = body["lines"][0]
            return httpx.Response(201, json={"order_id": order_id})
        assert request.url.path == "/_sandbox/cancel"
        assert set(body) == {"order_id"}
        cancels.append((host, body["order_id"]))
        # Every third cancel comes too late: the marketplace shipped the order already.
        return httpx.Response(409 if len(cancels) % 3 == 0 else 200, json={})

    generator = OrderGenerator(
        SANDBOXES,
        ["A", "B"],
        rate=40,
        seed=5,
        cancel_share=0.5,
        cancel_after_s=(0.0, 0.01),
        transport=httpx.MockTransport(answer),
    )

    async def run_for(seconds: float) -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        await generator.run(stop)

    asyncio.run(run_for(0.6))

    tally = generator.tally
    assert len(placed) == tally.placed.total() >= 10
    assert 0 < len(cancels) < len(placed)
    for host, order_id in cancels:
        assert (host, order_id) in placed  # on the marketplace that took the order
    refused = len(cancels) // 3
    assert tally.cancelled.total() == len(cancels) - refused
    assert tally.cancel_refused.total() == refused
    # The units buyers hold: placed, less those of the cancels the marketplaces accepted.
    accepted = [c for i, c in enumerate(cancels, start=1) if i % 3]
    held: Counter[str] = Counter()
    for line in placed.values():
        held[str(line["sku"])] += int(str(line["quantity"]))
    for key in accepted:
        line = placed[key]
        held[str(line["sku"])] -= int(str(line["quantity"]))
    assert tally.units_ordered() == held
    assert "cancelled by their buyer" in tally.describe()


def test_a_refusal_is_an_oversell_prevented_when_the_unsynced_channel_had_the_units() -> None:
    generator = OrderGenerator(SANDBOXES, ["A"], rate=1, listed={"A": 3})
    # eBay's own buyers hold 2 of the 3 units it listed: unsynced, it would still show 1.
    generator.tally.held["ebay"]["A"] = 2
    assert generator.is_prevented("ebay", "A", 1)
    assert not generator.is_prevented("ebay", "A", 2)  # its own sales left too few anyway
    assert generator.is_prevented("amazon", "A", 2)
    assert not generator.is_prevented("amazon", "UNLISTED", 1)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"error": "sold out"})

    async def refuse() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            for channel, quantity in (("ebay", 1), ("ebay", 2), ("amazon", 2)):
                body = {"lines": [{"sku": "A", "quantity": quantity}], "buyer": {}}
                assert await generator.place(client, channel, body) is None

    asyncio.run(refuse())
    assert generator.tally.sold_out == Counter({"ebay": 2, "amazon": 1})
    assert generator.tally.prevented == Counter({"ebay": 1, "amazon": 1})
