"""The admin JSON API for stock, orders and jobs, on a real store, through Starlette's TestClient."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.exceptions import StarletteDeprecationWarning

from connectors.base import Address, Money, Order, OrderLine, OrderStatus
from sync.db import Database
from sync.http.admin import AdminContext, create_admin_app
from sync.ingest import ChannelRef, ingest_orders
from sync.metrics import Metrics
from sync.models import (
    BundleComponent,
    Channel,
    Event,
    JobKind,
    JobState,
    Listing,
    OutboxJob,
    Sku,
    StockLevel,
)

TOKEN = "admin-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
with warnings.catch_warnings():
    # Starlette 1.x prefers the `httpx2` fork for its TestClient; the project pins `httpx`, which
    # it still supports (the warning is raised once, at import).
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

CANARY_NAME = "Zebediah Canarywood"
CANARY_STREET = "17 Canary Lane"
CANARY_BUYER = "buyer-canary-5f1e"


@dataclass
class Api:
    """A client on the admin app, the store behind it, and how often the pusher was woken."""

    client: TestClient
    database: Database
    channels: dict[str, int]
    order_ids: dict[str, int] = field(default_factory=dict)
    wakes: list[int] = field(default_factory=list)

    def get(self, path: str, **params: Any) -> Any:
        """GET with the token; answers the parsed JSON of a 200."""
        response = self.client.get(path, params=params, headers=AUTH)
        assert response.status_code == 200, response.text
        return response.json()


def _order(
    external_id: str,
    lines: list[tuple[str, int]],
    *,
    minute: int,
    status: OrderStatus = OrderStatus.OPEN,
) -> Order:
    return Order(
        external_id=external_id,
        number=f"#{external_id}",
        status=status,
        currency="EUR",
        updated_at=T0 + timedelta(minutes=minute),
        created_at=T0,
        total=Money(Decimal("19.98"), "EUR"),
        lines=[
            OrderLine(
                external_line_id=f"{external_id}-{n}",
                sku=sku,
                quantity=qty,
                unit_price=Money(Decimal("9.99"), "EUR"),
            )
            for n, (sku, qty) in enumerate(lines)
        ],
        ship_to=Address(
            name=CANARY_NAME, line1=CANARY_STREET, city="Canary Town", country_code="DE"
        ),
        buyer_ref=CANARY_BUYER,
    )


def _seed(database: Database) -> tuple[dict[str, int], dict[str, int]]:
    """Two channels; A (3 on hand), B, KIT = 2 A + 1 B, BOX/1; a few orders, one oversold."""
    with database.session() as session:
        shop, market = Channel(name="shop", kind="memory"), Channel(name="market", kind="memory")
        session.add_all([shop, market])
        session.add_all(Sku(sku=code, title=f"Item {code}") for code in ("A", "B", "BOX/1"))
        session.add(Sku(sku="KIT", is_bundle=True))
        session.flush()
        session.add_all(
            [
                BundleComponent(bundle_sku="KIT", component_sku="A", quantity=2),
                BundleComponent(bundle_sku="KIT", component_sku="B", quantity=1),
                StockLevel(sku="A", location="default", on_hand=3),
                StockLevel(sku="A", location="backroom", on_hand=4),
                StockLevel(sku="B", location="default", on_hand=10),
                Listing(channel_id=shop.id, sku="A", external_ref="shop:A", is_dirty=False),
                Listing(channel_id=market.id, sku="KIT", external_ref="market:KIT", is_dirty=False),
            ]
        )
        session.flush()
        channels = {"shop": shop.id, "market": market.id}
    order_ids: dict[str, int] = {}
    with database.session() as session:
        shop_ref = ChannelRef(id=channels["shop"], name="shop")
        market_ref = ChannelRef(id=channels["market"], name="market")
        for ref, order in [
            (shop_ref, _order("s1", [("A", 2), ("NOT-OURS", 1)], minute=1)),
            (shop_ref, _order("s2", [("A", 2)], minute=2)),  # A at default: 3 - 4, oversold
            (market_ref, _order("m1", [("B", 1)], minute=3)),
            (market_ref, _order("m2", [("NOT-OURS", 1)], minute=4, status=OrderStatus.CANCELLED)),
        ]:
            order_ids |= ingest_orders(session, ref, [order]).order_ids
    with database.session() as session:
        # As if the pusher had told the shop 3 since (ingest lowers what a channel that sold
        # units is believed to hold).
        listing = session.scalars(select(Listing).where(Listing.external_ref == "shop:A")).one()
        listing.last_pushed_quantity, listing.last_pushed_at = 3, T0
    return channels, order_ids


@pytest.fixture
def api(database: Database) -> Iterator[Api]:
    channels, order_ids = _seed(database)
    metrics = Metrics("test")
    metrics.watch_store(database.read_session)
    wakes: list[int] = []
    ctx = AdminContext(
        db=database,
        metrics=metrics,
        token=lambda: TOKEN,
        enabled_channels={"shop", "market"},
        schema_problem=lambda: None,
        on_ledger_change=lambda: wakes.append(1),
    )
    with TestClient(create_admin_app(ctx)) as client:
        yield Api(client, database, channels, order_ids, wakes)


def _store(database: Database) -> tuple[object, ...]:
    """Everything a refused request must leave as it was."""
    with database.read_session() as session:
        return (
            sorted(
                session.execute(select(StockLevel.sku, StockLevel.location, StockLevel.on_hand))
            ),
            session.scalar(select(func.count()).select_from(Event)),
            sorted(session.execute(select(Listing.external_ref, Listing.is_dirty))),
            sorted(session.execute(select(OutboxJob.id, OutboxJob.state, OutboxJob.attempts))),
        )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/stock"),
        ("GET", "/api/stock/A"),
        ("PUT", "/api/stock/A"),
        ("GET", "/api/orders"),
        ("GET", "/api/orders/1"),
        ("GET", "/api/jobs"),
        ("POST", "/api/jobs/1/retry"),
    ],
)
def test_every_route_needs_the_token(api: Api, method: str, path: str) -> None:
    before = _store(api.database)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = api.client.request(
            method, path, headers=headers, json={"location": "default", "on_hand": 0}
        )
        assert response.status_code == 401
    assert _store(api.database) == before


# Stock


def test_stock_pages_walk_every_sku_exactly_once(api: Api) -> None:
    with api.database.session() as session:
        session.add_all(Sku(sku=code) for code in ("a-1", "a_1", "Z", "ß", "x y", "0", "9/9"))
    with api.database.read_session() as session:
        every = sorted(session.scalars(select(Sku.sku)))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = api.get("/api/stock", limit=3, **({"cursor": cursor} if cursor else {}))
        seen += [item["sku"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == every and len(seen) == len(set(seen)) == 11
    assert pages == 4
    assert len(api.get("/api/stock")["items"]) == 11


def test_stock_item_shows_locations_totals_and_what_each_channel_was_told(api: Api) -> None:
    item = api.get("/api/stock/A")
    assert item["sku"] == "A" and item["is_bundle"] is False
    assert item["locations"] == [
        {"location": "backroom", "on_hand": 4, "reserved": 0, "available": 4},
        {"location": "default", "on_hand": 3, "reserved": 4, "available": -1},
    ]
    assert item["totals"] == {"on_hand": 7, "reserved": 4, "available": 3}
    assert item["channels"] == [
        {
            "channel": "shop",
            "listing_ref": "shop:A",
            "last_pushed_quantity": 3,
            "last_pushed_at": T0.isoformat(),
            "is_dirty": True,
        }
    ]
    assert api.get("/api/stock/BOX/1")["locations"] == []


def test_a_bundle_shows_its_components_and_derived_stock(api: Api) -> None:
    item = api.get("/api/stock/KIT")
    assert item["is_bundle"] is True
    assert item["components"] == [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}]
    # A: backroom 4 free, default oversold (counts 0); B: default 9 free.
    assert item["locations"] == [
        {"location": "backroom", "on_hand": None, "reserved": None, "available": 0},
        {"location": "default", "on_hand": None, "reserved": None, "available": 0},
    ]
    assert item["totals"] == {"on_hand": None, "reserved": None, "available": 2}
    assert item["channels"][0]["channel"] == "market"


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("cursor=%%%", "cursor"),
    ],
)
def test_bad_stock_queries_are_400_naming_the_parameter(api: Api, query: str, param: str) -> None:
    response = api.client.get(f"/api/stock?{query}", headers=AUTH)
    assert response.status_code == 400
    assert response.json()["detail"].startswith(f"{param}: ")


def test_an_unknown_sku_is_404(api: Api) -> None:
    response = api.client.get("/api/stock/NOPE", headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "no SKU 'NOPE'"}


def test_put_stock_sets_on_hand_answers_the_view_and_wakes_the_pusher(api: Api) -> None:
    response = api.client.put(
        "/api/stock/A", json={"location": "default", "on_hand": 4}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    assert response.json()["locations"][1] == {
        "location": "default",
        "on_hand": 4,
        "reserved": 4,
        "available": 0,
    }
    assert api.wakes == [1]
    with api.database.read_session() as session:
        assert (
            session.scalar(
                select(StockLevel.on_hand).where(
                    StockLevel.sku == "A", StockLevel.location == "default"
                )
            )
            == 4
        )
        assert dict(session.execute(select(Listing.external_ref, Listing.is_dirty)).all()) == {
            "shop:A": True,
            "market:KIT": True,
        }
    # The restock covers the oversold order.
    assert api.get("/api/orders", oversold="true")["items"] == []


@pytest.mark.parametrize(
    ("body", "content_type", "status", "names"),
    [
        (b'{"location": "default"}', "application/json", 422, "on_hand: Field required"),
        (b'{"location": "default", "on_hand": -1}', "application/json", 422, "on_hand:"),
        (b'{"location": "default", "on_hand": "5"}', "application/json", 422, "on_hand:"),
        (b'{"location": "default", "on_hand": 5.0}', "application/json", 422, "on_hand:"),
        (b'{"location": "default", "on_hand": true}', "application/json", 422, "on_hand:"),
        (b'{"location": "default", "on_hand": 1e99}', "application/json", 422, "on_hand:"),
        (b'{"location": "", "on_hand": 1}', "application/json", 422, "location:"),
        (b'{"location": "   ", "on_hand": 1}', "application/json", 422, "location:"),
        (b'{"location": 7, "on_hand": 1}', "application/json", 422, "location:"),
        (b'{"location": "' + b"x" * 65 + b'", "on_hand": 1}', "application/json", 422, "location:"),
        (b'{"location": "d", "on_hand": 1, "sku": "B"}', "application/json", 422, "sku: Extra"),
        (b"[1, 2]", "application/json", 422, "body:"),
        (b'{"location": "default", "on_hand": ', "application/json", 400, "not valid JSON"),
        (b"", "application/json", 400, "not valid JSON"),
        (b"\xff\xfe\x00", "application/json", 400, "JSON"),
        (b"location=default&on_hand=1", "application/x-www-form-urlencoded", 400, "JSON"),
        (b'{"location": "default", "on_hand": 1}', "", 400, "Content-Type"),
    ],
)
def test_put_stock_refuses_bad_bodies_and_writes_nothing(
    api: Api, body: bytes, content_type: str, status: int, names: str
) -> None:
    before = _store(api.database)
    headers = {**AUTH, **({"Content-Type": content_type} if content_type else {})}
    response = api.client.put("/api/stock/A", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert names in response.json()["detail"]
    assert _store(api.database) == before
    assert api.wakes == []


@pytest.mark.parametrize(
    ("sku", "status", "detail"),
    [("NOPE", 404, "unknown SKU 'NOPE'"), ("KIT", 409, "bundle")],
)
def test_put_stock_on_an_unknown_sku_or_a_bundle_writes_nothing(
    api: Api, sku: str, status: int, detail: str
) -> None:
    before = _store(api.database)
    response = api.client.put(
        f"/api/stock/{sku}", json={"location": "default", "on_hand": 1}, headers=AUTH
    )
    assert response.status_code == status
    assert detail in response.json()["detail"]
    assert _store(api.database) == before
    assert api.wakes == []


# Orders


def test_orders_newest_first_with_lines_and_exact_money(api: Api) -> None:
    page = api.get("/api/orders")
    assert [o["external_id"] for o in page["items"]] == ["m2", "m1", "s2", "s1"]
    assert page["next_cursor"] is None
    s1 = page["items"][-1]
    assert s1["id"] == api.order_ids["s1"]
    assert (s1["channel"], s1["number"], s1["status"], s1["currency"]) == (
        "shop",
        "#s1",
        "open",
        "EUR",
    )
    assert (s1["total"], s1["is_oversold"]) == ("19.9800", False)
    assert [
        (
            line["channel_sku"],
            line["sku"],
            line["is_unmapped"],
            line["quantity"],
            line["unit_price"],
        )
        for line in s1["lines"]
    ] == [("A", "A", False, 2, "9.9900"), ("NOT-OURS", None, True, 1, "9.9900")]
    assert s1["lines"][0]["cancelled"] == s1["lines"][0]["shipped"] == 0


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"channel": "shop"}, ["s2", "s1"]),
        ({"channel": "market", "status": "cancelled"}, ["m2"]),
        ({"status": "open"}, ["m1", "s2", "s1"]),
        ({"oversold": "true"}, ["s2"]),
        ({"oversold": "false", "channel": "shop"}, ["s1"]),
    ],
)
def test_order_filters(api: Api, params: dict[str, str], expected: list[str]) -> None:
    assert [o["external_id"] for o in api.get("/api/orders", **params)["items"]] == expected


def test_order_pages_walk_every_order_once(api: Api) -> None:
    seen = []
    cursor = None
    while True:
        page = api.get("/api/orders", limit=3, **({"cursor": cursor} if cursor else {}))
        seen += [o["external_id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["m2", "m1", "s2", "s1"]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("status=lost", "status"),
        ("oversold=yes", "oversold"),
        ("limit=many", "limit"),
        ("limit=-1", "limit"),
        ("channel=nowhere", "channel"),
        ("cursor=bm9wZQ", "cursor"),
        ("colour=red", "colour"),
        ("status=open&status=shipped", "status"),
    ],
)
def test_bad_order_filters_are_400_naming_the_parameter(api: Api, query: str, param: str) -> None:
    response = api.client.get(f"/api/orders?{query}", headers=AUTH)
    assert response.status_code == 400
    assert response.json()["detail"].startswith(f"{param}: ")


def test_buyer_data_never_appears_in_order_lists(api: Api) -> None:
    for params in ({}, {"channel": "shop"}, {"oversold": "true"}, {"limit": "1"}):
        response = api.client.get("/api/orders", params=params, headers=AUTH)
        for canary in (CANARY_NAME, CANARY_STREET, CANARY_BUYER, "Canary Town"):
            assert canary not in response.text
        for item in response.json()["items"]:
            assert "ship_to" not in item and "buyer_ref" not in item


def test_one_order_has_its_reservations_and_its_ship_to_but_no_buyer_ref(api: Api) -> None:
    order_id = api.order_ids["s2"]
    response = api.client.get(f"/api/orders/{order_id}", headers=AUTH)
    assert response.status_code == 200
    assert CANARY_BUYER not in response.text
    order = response.json()
    # The seller ships to it: the one response that opens the sealed address (issue 9 section 4).
    assert {k: order["ship_to"][k] for k in ("name", "line1", "city", "country_code")} == {
        "name": CANARY_NAME,
        "line1": CANARY_STREET,
        "city": "Canary Town",
        "country_code": "DE",
    }
    assert "buyer_ref" not in order
    assert order["is_oversold"] is True
    assert [
        {k: r[k] for k in ("sku", "location", "reserved", "consumed", "released")}
        for r in order["reservations"]
    ] == [{"sku": "A", "location": "default", "reserved": 2, "consumed": 0, "released": 0}]
    assert order["reservations"][0]["order_line_id"] == order["lines"][0]["id"]


@pytest.mark.parametrize(("path", "status"), [("999999", 404), ("abc", 400), ("-1", 400)])
def test_unknown_or_malformed_order_ids(api: Api, path: str, status: int) -> None:
    response = api.client.get(f"/api/orders/{path}", headers=AUTH)
    assert response.status_code == status
    assert set(response.json()) == {"error", "detail"}


# Jobs


def _jobs(api: Api) -> dict[str, int]:
    """A dead, a pending, a done job, and a dead one whose identity has a newer pending job."""
    specs = [
        ("dead", JobState.DEAD, "stock:1"),
        ("pending", JobState.PENDING, "stock:2"),
        ("done", JobState.DONE, "stock:3"),
        ("superseded", JobState.DEAD, "stock:2"),
    ]
    ids = {}
    with api.database.session() as session:
        for name, state, key in specs:
            job = OutboxJob(
                channel_id=api.channels["market" if name == "done" else "shop"],
                kind=JobKind.STOCK,
                identity_key=key,
                payload={"ship_to": CANARY_NAME},
                state=state,
                attempts=12 if state == JobState.DEAD else 0,
                last_error="listing refused" if state == JobState.DEAD else None,
            )
            session.add(job)
            session.flush()
            ids[name] = job.id
    return ids


def test_jobs_list_filters_and_hides_payloads(api: Api) -> None:
    ids = _jobs(api)
    response = api.client.get("/api/jobs", params={"state": "dead"}, headers=AUTH)
    assert CANARY_NAME not in response.text
    dead = response.json()["items"]
    assert [j["id"] for j in dead] == [ids["superseded"], ids["dead"]]
    assert set(dead[0]) == {
        "id",
        "channel",
        "kind",
        "identity_key",
        "state",
        "attempts",
        "run_after",
        "last_error",
        "created_at",
    }
    assert (dead[1]["channel"], dead[1]["last_error"], dead[1]["attempts"]) == (
        "shop",
        "listing refused",
        12,
    )
    assert [j["id"] for j in api.get("/api/jobs", channel="market")["items"]] == [ids["done"]]
    assert [j["id"] for j in api.get("/api/jobs", limit=2, offset=1)["items"]] == [
        ids["done"],
        ids["pending"],
    ]
    for query, param in [
        ("state=stuck", "state"),
        ("channel=nowhere", "channel"),
        ("offset=-1", "offset"),
        ("limit=x", "limit"),
    ]:
        bad = api.client.get(f"/api/jobs?{query}", headers=AUTH)
        assert bad.status_code == 400
        assert bad.json()["detail"].startswith(f"{param}: ")


def test_retry_requeues_a_dead_job_once(api: Api) -> None:
    ids = _jobs(api)
    response = api.client.post(f"/api/jobs/{ids['dead']}/retry", headers=AUTH)
    assert response.status_code == 200, response.text
    assert (response.json()["state"], response.json()["attempts"]) == ("pending", 0)
    assert api.wakes == [1]
    again = api.client.post(f"/api/jobs/{ids['dead']}/retry", headers=AUTH)
    assert again.status_code == 409
    assert "is pending" in again.json()["detail"]
    assert api.wakes == [1]


@pytest.mark.parametrize(
    ("job", "status", "detail"),
    [
        ("superseded", 409, "a newer job for stock:2 is already pending"),
        ("done", 409, "only dead jobs"),
        ("pending", 409, "only dead jobs"),
        ("999999", 404, "no job 999999"),
        ("first", 400, "whole number"),
    ],
)
def test_retry_refusals_change_nothing(api: Api, job: str, status: int, detail: str) -> None:
    ids = _jobs(api)
    before = _store(api.database)
    response = api.client.post(f"/api/jobs/{ids.get(job, job)}/retry", headers=AUTH)
    assert response.status_code == status
    assert detail in response.json()["detail"]
    assert _store(api.database) == before
    assert api.wakes == []


def test_metrics_count_unmapped_lines_and_oversold_orders(api: Api) -> None:
    text = api.client.get("/metrics", headers=AUTH).text
    # m2's unmapped line is on a cancelled order: not counted.
    assert 'channel_sync_unmapped_lines{channel="shop"} 1.0' in text
    assert 'channel_sync_unmapped_lines{channel="market"} 0.0' in text
    assert 'channel_sync_oversold_orders{channel="shop"} 1.0' in text
    assert 'channel_sync_oversold_orders{channel="market"} 0.0' in text
