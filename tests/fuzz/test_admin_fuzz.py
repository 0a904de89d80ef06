"""Hostile input against the admin API (issue 9 §2), with a valid token, on a real SQLite store.

The app from `create_admin_app`, seeded as tests/sync/test_admin_api.py seeds it (two channels,
stock, a bundle, four orders, one oversold) plus a dead job, driven through Starlette's
TestClient (server errors are raised, not hidden). Properties, over derandomized examples:
- every route, with random JSON (and not-JSON) bodies, content types and query strings, answers
  below 500; a refusal (4xx) says what is wrong (`{"error", "detail"}`; the router's own 404/405
  for a path or method that does not exist) and leaves orders, lines, shipments, stock levels,
  reservations, outbox jobs, listings and events exactly as they were;
- any method on any path under /api/ does the same; the app answers /healthz afterwards.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from sqlalchemy import select
from starlette.exceptions import StarletteDeprecationWarning

from sync.db import Database
from sync.http.admin import AdminContext, create_admin_app
from sync.metrics import Metrics
from sync.models import (
    Event,
    JobKind,
    JobState,
    Listing,
    Order,
    OrderLine,
    OutboxJob,
    Reservation,
    Shipment,
    ShipmentLine,
    StockLevel,
)
from tests.fuzz.strategies import (
    DEPTH,
    FUZZ,
    content_types,
    hostile_bodies,
    json_values,
    methods,
    nested_json,
    path_segments,
    query_items,
)
from tests.sync.test_admin_api import AUTH, TOKEN, _seed

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

ROUTER_REFUSALS = {404, 405}  # Starlette's plain-text answers for an unknown path or method


@dataclass
class Admin:
    """A client on the admin app and the store behind it."""

    client: TestClient
    database: Database

    def send(
        self, method: str, path: str, *, body: bytes = b"", content_type: str | None, query: str
    ) -> int:
        headers = dict(AUTH)
        if content_type is not None:
            headers["Content-Type"] = content_type
        url = f"{path}?{query}" if query else path
        before = snapshot(self.database)
        answer = self.client.request(method, url, content=body, headers=headers)
        status: int = answer.status_code
        assert status < 500, (status, answer.text[:300])
        if currently_in_test_context():
            event(f"answered {status}")  # --hypothesis-show-statistics
        if status >= 400:
            assert snapshot(self.database) == before, f"{method} {path} {status} wrote"
            if method != "HEAD" and not (
                status in ROUTER_REFUSALS
                and not answer.headers["content-type"].startswith("application/json")
            ):
                refusal = answer.json()
                assert refusal.get("error") and (refusal.get("detail") or status == 404), refusal
        assert self.client.get("/healthz").status_code == 200
        return status


def snapshot(database: Database) -> tuple[object, ...]:
    """Every row a refused request must leave as it was."""
    with database.read_session() as session:
        return tuple(
            sorted(map(tuple, session.execute(select(*columns))), key=repr)
            for columns in (
                (Order.id, Order.status, Order.is_oversold, Order.updated_at),
                (OrderLine.id, OrderLine.quantity_cancelled, OrderLine.quantity_shipped),
                (Shipment.id,),
                (ShipmentLine.shipment_id, ShipmentLine.quantity),
                (StockLevel.sku, StockLevel.location, StockLevel.on_hand),
                (Reservation.id, Reservation.reserved, Reservation.consumed, Reservation.released),
                (OutboxJob.id, OutboxJob.state, OutboxJob.attempts, OutboxJob.identity_key),
                (Listing.id, Listing.is_dirty),
                (Event.id,),
            )
        )


@pytest.fixture
def admin(database: Database) -> Iterator[Admin]:
    channels, _ = _seed(database)
    with database.session() as session:
        session.add(
            OutboxJob(
                channel_id=channels["shop"],
                kind=JobKind.STOCK,
                identity_key="stock:shop:A",
                payload={"quantity": 3},
                state=JobState.DEAD,
                attempts=8,
                last_error="HTTP 400 from the channel",
            )
        )

    async def sync_channel(name: str) -> dict[str, dict[str, Any]]:
        if name != "shop":
            raise KeyError(name)
        return {"poll": {"ok": True}, "reconcile": {"ok": True}}

    ctx = AdminContext(
        db=database,
        metrics=Metrics("fuzz"),
        token=lambda: TOKEN,
        enabled_channels={"shop", "market"},
        schema_problem=lambda: None,
        sync_channel=sync_channel,
    )
    with TestClient(create_admin_app(ctx), base_url="http://127.0.0.1") as client:
        yield Admin(client, database)


_plausible: st.SearchStrategy[Any] = st.sampled_from(
    [
        "default",
        "backroom",
        "",
        " ",
        "A",
        "KIT",
        "NOT-OURS",
        0,
        1,
        3,
        -1,
        2**31,
        2**63,
        "3",
        3.0,
        True,
        None,
        [],
        {},
    ]
)
_value = _plausible | json_values
_lines = st.lists(
    st.dictionaries(st.sampled_from(["sku", "quantity", "qty"]), _value, max_size=3) | _value,
    max_size=4,
)
STOCK_BODY = st.dictionaries(
    st.sampled_from(["location", "on_hand", "sku"]) | st.text(max_size=6), _value, max_size=3
)
SHIPMENT_BODY = st.dictionaries(
    st.sampled_from(["carrier", "tracking", "lines", "notify"]),
    _value | _lines | st.text(min_size=200, max_size=400),
    max_size=4,
)
CANCEL_BODY = st.dictionaries(
    st.sampled_from(["lines", "reason", "x"]), _value | _lines, max_size=3
)


def _encoded(data: st.DataObject, structured: st.SearchStrategy[Any]) -> bytes:
    if data.draw(st.booleans()):
        return json.dumps(data.draw(structured | _value)).encode()
    return bytes(data.draw(hostile_bodies))


_ids = st.sampled_from(["1", "2", "3", "4", "5", "99", "0", "-1", "1.0", "\u0661", "9" * 25]) | (
    path_segments
)


@given(data=st.data(), content_type=content_types, query=query_items)
@FUZZ
def test_every_route_refuses_bad_input_with_a_reason_and_writes_nothing(
    admin: Admin, data: st.DataObject, content_type: str | None, query: list[tuple[str, str]]
) -> None:
    route = data.draw(
        st.sampled_from(["stock-set", "shipment", "cancel", "retry", "sync", "read", "read-one"])
    )
    segment = quote(data.draw(_ids), safe="")
    if route == "stock-set":
        sku = quote(data.draw(st.sampled_from(["A", "B", "KIT", "BOX/1", "nope"]) | _ids), safe="/")
        method, path, body = "PUT", f"/api/stock/{sku}", _encoded(data, STOCK_BODY)
    elif route == "shipment":
        method, path = "POST", f"/api/orders/{segment}/shipments"
        body = _encoded(data, SHIPMENT_BODY)
    elif route == "cancel":
        method, path = "POST", f"/api/orders/{segment}/cancel"
        body = b"" if data.draw(st.booleans()) else _encoded(data, CANCEL_BODY)
    elif route == "retry":
        method, path, body = "POST", f"/api/jobs/{segment}/retry", _encoded(data, _value)
    elif route == "sync":
        name = quote(data.draw(st.sampled_from(["shop", "market", "x" * 300]) | _ids), safe="")
        method, path, body = "POST", f"/api/channels/{name}/sync", _encoded(data, _value)
    elif route == "read":
        path = data.draw(st.sampled_from(["/api/stock", "/api/orders", "/api/jobs", "/api/status"]))
        method, body = "GET", b""
    else:
        path = data.draw(st.sampled_from(["/api/stock/", "/api/orders/"])) + segment
        method, body = "GET", b""
    admin.send(method, path, body=body, content_type=content_type, query=urlencode(query))


@given(
    method=methods,
    segments=st.lists(path_segments, min_size=1, max_size=4),
    query=query_items,
    body=hostile_bodies,
    content_type=content_types,
)
@FUZZ
def test_any_method_and_path_under_api_answers_below_500_and_writes_nothing_on_refusal(
    admin: Admin,
    method: str,
    segments: list[str],
    query: list[tuple[str, str]],
    body: bytes,
    content_type: str | None,
) -> None:
    path = "/api/" + "/".join(quote(segment, safe="") for segment in segments)
    sent = b"" if method in ("GET", "HEAD") else body
    admin.send(method, path, body=sent, content_type=content_type, query=urlencode(query))


def test_stock_set_refuses_json_nested_past_the_parser(admin: Admin) -> None:
    status = admin.send(
        "PUT", "/api/stock/A", body=nested_json(DEPTH), content_type="application/json", query=""
    )
    assert status == 400
