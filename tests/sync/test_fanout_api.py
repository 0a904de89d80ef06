"""`POST /api/orders/{id}/shipments` and `/cancel` on a real store, through Starlette's TestClient;
and the daemon's wiring: a shipment posted to a running service reaches its channel."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.exceptions import StarletteDeprecationWarning

from connectors.base import Money, OrderLine, OrderStatus
from connectors.base import Order as ChannelOrder
from sync.db import Database
from sync.http.admin import AdminContext, create_admin_app
from sync.metrics import Metrics
from sync.service import ChannelSpec, Listener, Service, ServiceSettings
from tests.sync.engine_harness import Store
from tests.sync.fanout_helpers import (
    check_ledger,
    drain,
    lines_of,
    make_store,
    on_hand,
    place,
    status_of,
    store_state,
)

with warnings.catch_warnings():
    # As in test_admin_api: Starlette's TestClient on the pinned httpx warns once at import.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

TOKEN = "admin-token-for-fanout-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Api:
    """A client on the admin app over a store with reference channels, and the wakes seen."""

    client: TestClient
    store: Store
    metrics: Metrics
    wakes: list[str] = field(default_factory=list)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        """POST with the token (`body` as JSON unless None)."""
        if body is not None:
            kwargs["json"] = body
        response: httpx.Response = self.client.post(path, headers=AUTH, **kwargs)
        return response


@pytest.fixture
def api(database: Database) -> Iterator[Api]:
    store = make_store(database)
    metrics = Metrics("test")
    metrics.watch_store(database.read_session)
    wakes: list[str] = []
    ctx = AdminContext(
        db=database,
        metrics=metrics,
        token=lambda: TOKEN,
        enabled_channels={"shop", "market"},
        schema_problem=lambda: None,
        on_ledger_change=lambda: wakes.append("pusher"),
        on_fanout=lambda: wakes.append("fanout"),
    )
    with TestClient(create_admin_app(ctx)) as client:
        yield Api(client, store, metrics, wakes)


def test_a_shipment_is_recorded_answered_and_wakes_both_workers(api: Api) -> None:
    ext, order_id = place(api.store, "shop", [("A", 3), ("B", 1)])
    response = api.post(
        f"/api/orders/{order_id}/shipments",
        {"carrier": "UPS", "tracking": "1Z999", "lines": [{"sku": "A", "quantity": 2}]},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["order"]["status"] == "partially_shipped"
    assert [(line["sku"], line["shipped"]) for line in body["order"]["lines"]] == [
        ("A", 2),
        ("B", 0),
    ]
    assert api.wakes == ["pusher", "fanout"]
    drain(api.store)
    (received,) = api.store.channels["shop"].market.fulfillments
    assert (received.order_external_id, received.carrier, received.tracking) == (
        ext,
        "UPS",
        "1Z999",
    )
    assert [(line.external_line_id, line.quantity) for line in received.lines] == [(f"{ext}-1", 2)]


def test_a_shipment_without_tracking_is_taken_when_neither_is_given(api: Api) -> None:
    _, order_id = place(api.store, "shop", [("A", 1)])
    response = api.post(f"/api/orders/{order_id}/shipments", {"carrier": None, "tracking": None})
    assert response.status_code == 201, response.text
    assert response.json()["order"]["status"] == "shipped"


def _fba_order() -> ChannelOrder:
    return ChannelOrder(
        external_id="FBA-1",
        status=OrderStatus.OPEN,
        currency="USD",
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
        lines=[OrderLine("FBA-1-1", "A", 1, unit_price=Money(Decimal("5"), "USD"))],
        is_reserving=False,
    )


SHIP_REFUSALS = [
    # (order, body, status, words in the reason)
    (
        "open",
        {"carrier": "UPS", "tracking": "1Z", "lines": [{"sku": "A", "quantity": 3}]},
        422,
        "3 units asked to ship",
    ),
    (
        "open",
        {"carrier": "UPS", "tracking": "1Z", "lines": [{"sku": "Z", "quantity": 1}]},
        422,
        "no line for SKU 'Z'",
    ),
    ("open", {"carrier": "UPS", "tracking": "", "lines": []}, 422, "tracking: empty"),
    ("open", {"carrier": "UPS", "tracking": "   "}, 422, "tracking: empty"),
    ("open", {"carrier": "", "tracking": "1Z"}, 422, "carrier: empty"),
    (
        "open",
        {"carrier": "UPS", "tracking": "1Z", "lines": [{"sku": "A", "quantity": 0}]},
        422,
        "lines.0.quantity",
    ),
    (
        "open",
        {"carrier": "UPS", "tracking": "1Z", "lines": [{"sku": "A", "quantity": "1"}]},
        422,
        "lines.0.quantity",
    ),
    (
        "open",
        {
            "carrier": "UPS",
            "tracking": "1Z",
            "lines": [{"sku": "A", "quantity": 1}, {"sku": "A", "quantity": 1}],
        },
        422,
        "given more than once",
    ),
    ("open", {"carrier": "UPS"}, 422, "tracking: Field required"),
    ("open", {"carrier": "UPS", "tracking": "1Z", "extra": 1}, 422, "extra"),
    ("open", {"carrier": "UPS", "tracking": "x" * 129}, 422, "tracking"),
    ("open", "not json", 400, "not valid JSON"),
    ("missing", {"carrier": "UPS", "tracking": "1Z"}, 404, "no order"),
    ("abc", {"carrier": "UPS", "tracking": "1Z"}, 400, "whole number"),
    ("cancelled", {"carrier": "UPS", "tracking": "1Z"}, 409, "is cancelled"),
    ("fba", {"carrier": "UPS", "tracking": "1Z"}, 409, "shipped by the marketplace"),
    ("shipped", {"carrier": "UPS", "tracking": "1Z"}, 409, "nothing left to ship"),
]


@pytest.mark.parametrize(("which", "body", "status", "reason"), SHIP_REFUSALS)
def test_a_refused_shipment_is_4xx_with_its_reason_and_writes_nothing(
    api: Api, which: str, body: Any, status: int, reason: str
) -> None:
    orders = _orders(api)
    before = store_state(api.store.db)
    kwargs: dict[str, Any] = {}
    if isinstance(body, str):
        kwargs = {"content": body, "headers": {**AUTH, "Content-Type": "application/json"}}
        response = api.client.post(f"/api/orders/{orders[which]}/shipments", **kwargs)
    else:
        response = api.post(f"/api/orders/{orders[which]}/shipments", body)
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]
    assert store_state(api.store.db) == before
    assert api.wakes == []


def _orders(api: Api) -> dict[str, str]:
    _, open_id = place(api.store, "shop", [("A", 2), ("B", 1)])
    _, cancelled = place(api.store, "shop", [("A", 1)])
    assert api.post(f"/api/orders/{cancelled}/cancel").status_code == 200
    _, shipped = place(api.store, "shop", [("B", 1)])
    assert (
        api.post(
            f"/api/orders/{shipped}/shipments", {"carrier": "DHL", "tracking": "9"}
        ).status_code
        == 201
    )
    fba = api.store.ingest("market", [_fba_order()]).order_ids["FBA-1"]
    api.wakes.clear()
    return {
        "open": str(open_id),
        "cancelled": str(cancelled),
        "shipped": str(shipped),
        "fba": str(fba),
        "missing": "999999",
        "abc": "abc",
    }


def test_a_cancel_releases_marks_the_order_and_reaches_the_channel(api: Api) -> None:
    ext, order_id = place(api.store, "shop", [("A", 3), ("B", 2)])
    response = api.post(f"/api/orders/{order_id}/cancel", {"lines": [{"sku": "B", "quantity": 1}]})
    assert response.status_code == 200, response.text
    assert lines_of(api.store.db, order_id) == {f"{ext}-1": (3, 0, 0), f"{ext}-2": (2, 1, 0)}
    response = api.post(f"/api/orders/{order_id}/cancel", content=b"")  # no body: all of it
    assert response.status_code == 200, response.text
    assert response.json()["order"]["status"] == "cancelled"
    assert status_of(api.store.db, order_id) == "cancelled"
    assert on_hand(api.store.db) == {"A": 10, "B": 10}
    check_ledger(api.store.db)
    assert api.wakes == ["pusher", "fanout"] * 2
    drain(api.store)
    market = api.store.channels["shop"].market
    assert market.order(ext).status is OrderStatus.CANCELLED
    # One line's unit, then the whole order (nothing of it shipped): the cancel every channel takes.
    assert [(c.order_external_id, len(c.lines)) for c in market.cancels] == [(ext, 1), (ext, 0)]


@pytest.mark.parametrize(
    ("which", "body", "status", "reason"),
    [
        ("cancelled", None, 409, "already cancelled"),
        ("shipped", None, 409, "nothing left to cancel"),
        ("open", {"lines": [{"sku": "A", "quantity": 5}]}, 422, "5 units asked to cancel"),
        ("open", {"reason": "Because!"}, 422, "not a reason code"),
        ("open", {"lines": "all"}, 422, "lines"),
        ("missing", None, 404, "no order"),
    ],
)
def test_a_refused_cancel_is_4xx_with_its_reason_and_writes_nothing(
    api: Api, which: str, body: Any, status: int, reason: str
) -> None:
    orders = _orders(api)
    before = store_state(api.store.db)
    response = api.post(f"/api/orders/{orders[which]}/cancel", body)
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]
    assert store_state(api.store.db) == before


def test_a_dead_shipment_shows_in_status_jobs_and_metrics(api: Api) -> None:
    ext, order_id = place(api.store, "shop", [("A", 1)])
    api.store.channels["shop"].market.faults.permanent_for[ext] = "order already cancelled"
    assert (
        api.post(
            f"/api/orders/{order_id}/shipments", {"carrier": "UPS", "tracking": "1Z"}
        ).status_code
        == 201
    )
    drain(api.store, metrics=api.metrics)
    reason = "shop refused: order already cancelled"
    status = api.client.get("/api/status", headers=AUTH).json()
    shop = next(c for c in status["channels"] if c["name"] == "shop")
    assert (shop["jobs_dead"], shop["last_dead_reason"]) == (1, reason)
    dead = api.client.get("/api/jobs", params={"state": "dead"}, headers=AUTH).json()["items"]
    assert [(j["kind"], j["last_error"]) for j in dead] == [("shipment", reason)]
    metrics = api.client.get("/metrics", headers=AUTH).text
    assert (
        'channel_sync_fanout_pushes_total{channel="shop",kind="shipment",outcome="dead"} 1.0'
        in metrics
    )
    assert 'channel_sync_jobs{channel="shop",state="dead"} 1.0' in metrics


def test_a_running_service_sends_a_posted_shipment_to_its_channel(database: Database) -> None:
    """The daemon's wiring: the admin route wakes the fan-out worker the service runs."""
    store = make_store(database)
    ext, order_id = place(store, "shop", [("A", 2)])
    settings = ServiceSettings(
        webhooks=Listener("webhooks", "127.0.0.1", 0),
        admin=Listener("admin", "127.0.0.1", 0),
        admin_token=TOKEN,
        drain_deadline_s=5.0,
        auto_migrate=False,
        channels={name: ChannelSpec(kind="memory", enabled=True) for name in store.channels},
        inbox_retention_days=7,
        events_retention_days=7,
        version="test",
    )
    connectors = {name: channel.connector for name, channel in store.channels.items()}
    market = store.channels["shop"].market

    async def scenario() -> None:
        ready = asyncio.Event()
        service = Service(settings, database, connectors=connectors, on_ready=lambda _: ready.set())
        running = asyncio.create_task(service.run())
        try:
            await asyncio.wait_for(ready.wait(), 30)
            assert service.admin_address is not None
            host, port = service.admin_address
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}", headers=AUTH) as client:
                response = await client.post(
                    f"/api/orders/{order_id}/shipments", json={"carrier": "UPS", "tracking": "1Z"}
                )
                assert response.status_code == 201, response.text
            deadline = asyncio.get_running_loop().time() + 30
            while not market.fulfillments:
                assert asyncio.get_running_loop().time() < deadline, "nothing reached the channel"
                await asyncio.sleep(0.01)
        finally:
            service.request_stop()
            assert await asyncio.wait_for(running, 30) == 0

    asyncio.run(scenario())
    assert [(f.order_external_id, f.tracking) for f in market.fulfillments] == [(ext, "1Z")]
