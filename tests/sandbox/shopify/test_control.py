"""The `/_sandbox/` control API: seeding, buyers' orders, the merchant's admin actions, and bad
input refused with the problem named and nothing changed."""

from __future__ import annotations

import pytest

from tests.sandbox.shopify.conftest import Shop, ShopFactory

pytestmark = pytest.mark.anyio


async def test_the_shop_describes_itself_for_a_channel_file(shop: Shop) -> None:
    described = await shop.control("GET", "/shop")

    assert described["domain"] == "demo.myshopify.com"
    assert described["api_base_url"] == "http://shop/admin/api"
    assert list(described["locations"]) == ["Main warehouse"]
    assert described["locations"]["Main warehouse"].startswith("gid://shopify/Location/")


async def test_a_buyer_order_commits_stock_at_the_location_that_has_it(
    make_shop: ShopFactory,
) -> None:
    shop: Shop = await make_shop(locations=("East", "West"))
    await shop.control(
        "POST", "/products", {"products": [{"sku": "A", "stock": {"East": 1, "West": 4}}]}
    )

    await shop.order(A=3)

    detail = await shop.control("GET", "/inventory?detail=1")
    assert detail == {
        "A": {
            "East": {"available": 1, "committed": 0, "on_hand": 1},
            "West": {"available": 1, "committed": 3, "on_hand": 4},
        }
    }
    assert await shop.control("GET", "/inventory") == {"A": 2}


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ({"lines": [{"sku": "NOPE", "quantity": 1}]}, 404, "NOPE"),
        ({"lines": [{"sku": "A", "quantity": 6}]}, 409, "not enough stock"),
        ({"lines": [{"sku": "A", "quantity": 0}]}, 422, "lines.0.quantity"),
        ({"lines": [{"sku": "A", "quantity": 1, "colour": "red"}]}, 422, "lines.0.colour"),
        ({"lines": []}, 422, "lines"),
    ],
)
async def test_a_bad_order_is_refused_and_writes_nothing(
    shop: Shop, body: object, status: int, named: str
) -> None:
    await shop.seed(A=5)
    await shop.subscribe("ORDERS_CREATE")

    refused = await shop.control("POST", "/orders", body, status=status)

    assert named in refused["error"]
    assert await shop.control("GET", "/inventory") == {"A": 5}
    assert (await shop.gql("{ orders(first: 5) { nodes { id } } }"))["data"]["orders"][
        "nodes"
    ] == []
    await shop.settle()
    assert shop.receiver.requests == []


async def test_an_order_of_two_lines_that_stock_cannot_cover_takes_nothing(shop: Shop) -> None:
    await shop.seed(A=5, B=1)

    await shop.control(
        "POST",
        "/orders",
        {"lines": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 2}]},
        409,
    )

    assert await shop.control("GET", "/inventory") == {"A": 5, "B": 1}


async def test_an_oversellable_variant_goes_below_zero(shop: Shop) -> None:
    await shop.control(
        "POST", "/products", {"products": [{"sku": "A", "stock": 1, "oversell": True}]}
    )

    await shop.order(A=3)

    assert await shop.control("GET", "/inventory") == {"A": -2}


async def test_seeding_a_sku_twice_creates_nothing(shop: Shop) -> None:
    await shop.seed(A=1)

    refused = await shop.control(
        "POST", "/products", {"products": [{"sku": "B"}, {"sku": "A"}]}, status=409
    )

    assert "A" in refused["error"]
    assert await shop.control("GET", "/inventory") == {"A": 1}


async def test_the_merchant_sets_stock_and_ships_in_the_admin(make_shop: ShopFactory) -> None:
    shop: Shop = await make_shop(locations=("East", "West"))
    await shop.control("POST", "/products", {"products": [{"sku": "A", "stock": {"East": 2}}]})

    after = await shop.control("POST", "/inventory", {"A": {"West": 5}})
    assert after == {"A": 7}
    order_id = await shop.order(A=4)  # East holds only 2: West takes all 4
    shipped = await shop.control(
        "POST", "/ship", {"order_id": order_id, "tracking": {"company": "DHL", "number": "JD1"}}
    )

    assert len(shipped["fulfillments"]) == 1
    (fulfillment,) = (await shop.control("GET", "/fulfillments"))["fulfillments"]
    assert fulfillment["location"] == "West" and fulfillment["source"] == "admin"
    assert fulfillment["tracking"] == {"company": "DHL", "number": "JD1", "url": None}
    nothing_left = await shop.control("POST", "/ship", {"order_id": order_id}, status=409)
    assert "nothing left" in nothing_left["error"]


async def test_unknown_orders_and_malformed_bodies_are_named(shop: Shop) -> None:
    missing = await shop.control("POST", "/cancel", {"order_id": "#4242"}, status=404)
    assert "#4242" in missing["error"]
    not_json = await shop.http.post("/_sandbox/orders", content=b"{nope")
    assert not_json.status_code == 400
    bad_bucket = await shop.control("POST", "/bucket", {"restore_rate": -1}, status=422)
    assert "restore_rate" in bad_bucket["error"]
