"""The reference sandbox as its users drive it: the marketplace API, the control API and faults."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from sandbox.reference import ChannelOptions, create_app
from tests.support.reference import REPO, ThreadedSandbox

pytestmark = pytest.mark.anyio
TOKEN = "app-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_app() -> Any:
    return create_app(
        [
            ChannelOptions("shop", compare_and_swap=True, idempotent=True, max_stock_batch=3),
            ChannelOptions("plain"),
            ChannelOptions("loose", allow_oversell=True),
        ],
        token=TOKEN,
        seed=1,
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as http:
        yield http


async def control(http: httpx.AsyncClient, channel: str, path: str, body: object = None) -> Any:
    method = "GET" if body is None else "POST"
    response = await http.request(method, f"/{channel}/_sandbox{path}", json=body)
    assert response.is_success, response.text
    return response.json()


async def place(http: httpx.AsyncClient, channel: str, **lines: int) -> str:
    body = {"lines": [{"sku": sku, "quantity": n} for sku, n in lines.items()]}
    order_id: str = (await control(http, channel, "/orders", body))["order_id"]
    return order_id


async def api(
    http: httpx.AsyncClient, method: str, path: str, body: object = None, **kw: Any
) -> httpx.Response:
    headers = {**AUTH, **kw.pop("headers", {})}
    return await http.request(method, path, json=body, headers=headers, **kw)


# ---- buyers, stock and orders ------------------------------------------------------------------


async def test_a_buyer_order_lowers_the_channel_stock_and_is_listed(
    client: httpx.AsyncClient,
) -> None:
    await control(client, "shop", "/stock", {"A": 5, "B": 1})
    body = {
        "lines": [{"sku": "A", "quantity": 2}],
        "buyer": {"id": "B-9", "name": "Jo Buyer", "address": {"country_code": "GB"}},
    }
    placed = await control(client, "shop", "/orders", body)

    assert await control(client, "shop", "/inventory") == {"A": 3, "B": 1}
    order = (await api(client, "GET", f"/shop/v1/orders/{placed['order_id']}")).json()
    assert order["status"] == "unfulfilled"
    assert order["buyer_id"] == "B-9"
    assert order["ship_to"]["name"] == "Jo Buyer"
    assert order["ship_to"]["country_code"] == "GB"
    assert order["lines"] == [
        {
            "id": f"{placed['order_id']}-1",
            "listing": "L-A",
            "sku": "A",
            "quantity": 2,
            "cancelled": 0,
            "shipped": 0,
            "unit_price": "10.00",
        }
    ]
    assert order["total"] == "20.00"
    assert order["updated_at"].endswith("Z")


async def test_an_order_for_an_unlisted_sku_or_beyond_stock_is_refused_and_writes_nothing(
    client: httpx.AsyncClient,
) -> None:
    await control(client, "plain", "/stock", {"A": 1})
    unknown = await client.post(
        "/plain/_sandbox/orders", json={"lines": [{"sku": "NOPE", "quantity": 1}]}
    )
    short = await client.post(
        "/plain/_sandbox/orders", json={"lines": [{"sku": "A", "quantity": 2}]}
    )
    malformed = await client.post("/plain/_sandbox/orders", json={"lines": [{"sku": "A"}]})

    assert unknown.status_code == 422
    assert "NOPE" in unknown.json()["message"]
    assert short.status_code == 409
    assert short.json()["error"] == "out_of_stock"
    assert malformed.status_code == 422
    assert "lines.0.quantity" in malformed.json()["message"]
    assert await control(client, "plain", "/inventory") == {"A": 1}
    listed = (await api(client, "GET", "/plain/v1/orders")).json()
    assert listed["orders"] == []


async def test_an_overselling_channel_sells_past_its_stock_but_shows_zero(
    client: httpx.AsyncClient,
) -> None:
    await control(client, "loose", "/stock", {"A": 1})
    await place(client, "loose", A=3)
    assert await control(client, "loose", "/inventory") == {"A": 0}


async def test_orders_page_by_cursor_oldest_first_and_an_update_moves_an_order_to_the_end(
    client: httpx.AsyncClient,
) -> None:
    await control(client, "shop", "/stock", {"A": 50})
    ids = [await place(client, "shop", A=1) for _ in range(5)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await api(client, "GET", "/shop/v1/orders", params=params)).json()
        seen += [order["id"] for order in page["orders"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    assert pages == 3

    first = (await api(client, "GET", f"/shop/v1/orders/{ids[0]}")).json()
    await control(client, "shop", "/ship", {"order_id": ids[0]})
    shipped = (await api(client, "GET", f"/shop/v1/orders/{ids[0]}")).json()
    assert shipped["updated_at"] > first["updated_at"]
    since = {"updated_since": first["updated_at"]}
    page = (await api(client, "GET", "/shop/v1/orders", params=since)).json()
    assert [o["id"] for o in page["orders"]][-1] == ids[0]


async def test_bad_query_parameters_are_refused_naming_them(client: httpx.AsyncClient) -> None:
    for params, named in [
        ({"updated_since": "yesterday"}, "updated_since"),
        ({"updated_since": "2026-01-01T00:00:00"}, "updated_since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"cursor": "not-ours"}, "cursor"),
    ]:
        response = await api(client, "GET", "/shop/v1/orders", params=params)
        assert response.status_code == 422, params
        assert named in response.json()["message"]


async def test_unknown_orders_listings_and_channels_answer_404(client: httpx.AsyncClient) -> None:
    assert (await api(client, "GET", "/shop/v1/orders/O-404")).status_code == 404
    put = await api(client, "PUT", "/shop/v1/listings/L-X/stock", {"quantity": 1})
    assert put.status_code == 404
    assert (await api(client, "GET", "/nowhere/v1/orders")).status_code == 404


# ---- stock ---------------------------------------------------------------------------------


async def test_a_batch_answers_each_item_with_compare_and_swap_conflicts_apart(
    client: httpx.AsyncClient,
) -> None:
    await control(client, "shop", "/stock", {"A": 5, "B": 2})
    items = [
        {"listing": "L-A", "quantity": 9, "expected": 5},
        {"listing": "L-B", "quantity": 7, "expected": 3},
        {"listing": "L-Z", "quantity": 1},
    ]
    response = await api(client, "POST", "/shop/v1/stock", {"items": items})

    assert response.status_code == 200
    assert response.json()["results"] == [
        {"listing": "L-A", "status": "applied", "quantity": 9},
        {"listing": "L-B", "status": "conflict", "quantity": 2},
        {"listing": "L-Z", "status": "rejected", "reason": "no such listing"},
    ]
    assert await control(client, "shop", "/inventory") == {"A": 9, "B": 2}
    read = await api(client, "GET", "/shop/v1/stock", params={"listing": ["L-A", "L-Z"]})
    assert read.json() == {"stock": {"L-A": 9}}


async def test_one_listing_conflict_is_409_with_the_current_quantity(
    client: httpx.AsyncClient,
) -> None:
    await control(client, "shop", "/stock", {"A": 4})
    stale = await api(client, "PUT", "/shop/v1/listings/L-A/stock", {"quantity": 1, "expected": 5})
    fresh = await api(client, "PUT", "/shop/v1/listings/L-A/stock", {"quantity": 1, "expected": 4})
    assert stale.status_code == 409
    assert stale.json()["quantity"] == 4
    assert fresh.status_code == 200
    assert await control(client, "shop", "/inventory") == {"A": 1}


async def test_batches_past_the_limit_or_malformed_are_refused_and_write_nothing(
    client: httpx.AsyncClient,
) -> None:
    await control(client, "shop", "/stock", {s: 1 for s in "ABCD"})
    await control(client, "plain", "/stock", {"A": 1})
    too_many = [{"listing": f"L-{s}", "quantity": 0} for s in "ABCD"]
    cases = [
        ("/shop/v1/stock", {"items": too_many}, "exceeds the maximum of 3"),
        ("/shop/v1/stock", {"items": []}, "at least one"),
        ("/shop/v1/stock", {"items": [{"listing": "L-A", "quantity": -1}]}, "items.0.quantity"),
        ("/shop/v1/stock", {"items": [{"listing": "L-A", "quantity": "3"}]}, "items.0.quantity"),
        ("/plain/v1/stock", {"items": [{"listing": "L-A", "quantity": 0, "expected": 1}]}, "swap"),
    ]
    for path, body, reason in cases:
        response = await api(client, "POST", path, body)
        assert response.status_code == 422, body
        assert reason in response.json()["message"]
    not_json = await client.post("/shop/v1/stock", content=b"{", headers=AUTH)
    assert not_json.status_code == 400
    assert await control(client, "shop", "/inventory") == {s: 1 for s in "ABCD"}
    assert await control(client, "plain", "/inventory") == {"A": 1}


async def test_listings_page_to_the_end(client: httpx.AsyncClient) -> None:
    await control(client, "plain", "/stock", {f"S{n:02}": n for n in range(7)})
    listings: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await api(client, "GET", "/plain/v1/listings", params=params)).json()
        listings += page["listings"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [(x["listing"], x["sku"], x["quantity"]) for x in listings] == [
        (f"L-S{n:02}", f"S{n:02}", n) for n in range(7)
    ]


# ---- fulfilments and cancels -----------------------------------------------------------------


def parcel(line_id: str, quantity: int = 1, tracking: str = "1Z1") -> dict[str, Any]:
    return {
        "lines": [{"line_id": line_id, "quantity": quantity}],
        "carrier": "UPS",
        "tracking_number": tracking,
    }


async def test_an_idempotent_channel_answers_a_replayed_key_with_the_same_fulfilment(
    client: httpx.AsyncClient,
) -> None:
    await control(client, "shop", "/stock", {"A": 5})
    order_id = await place(client, "shop", A=2)
    key = {"Idempotency-Key": "ship-1"}
    path = f"/shop/v1/orders/{order_id}/fulfillments"
    first = await api(client, "POST", path, parcel(f"{order_id}-1"), headers=key)
    again = await api(client, "POST", path, parcel(f"{order_id}-1"), headers=key)

    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    order = (await api(client, "GET", f"/shop/v1/orders/{order_id}")).json()
    assert order["status"] == "partially_fulfilled"
    assert order["lines"][0]["shipped"] == 1
    assert [f["id"] for f in order["fulfillments"]] == [first.json()["fulfillment"]["id"]]
    assert order["fulfillments"][0]["tracking_number"] == "1Z1"


async def test_a_channel_without_idempotency_ignores_the_key_and_ships_again(
    client: httpx.AsyncClient,
) -> None:
    await control(client, "plain", "/stock", {"A": 5})
    order_id = await place(client, "plain", A=2)
    key = {"Idempotency-Key": "ship-1"}
    path = f"/plain/v1/orders/{order_id}/fulfillments"
    first = await api(client, "POST", path, parcel(f"{order_id}-1"), headers=key)
    second = await api(client, "POST", path, parcel(f"{order_id}-1"), headers=key)
    third = await api(client, "POST", path, parcel(f"{order_id}-1"), headers=key)

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["fulfillment"]["id"] != second.json()["fulfillment"]["id"]
    assert third.status_code == 422
    assert "units left" in third.json()["message"]
    listed = (await api(client, "GET", f"/plain/v1/orders/{order_id}/fulfillments")).json()
    assert len(listed["fulfillments"]) == 2
    assert "idempotency_key" not in listed["fulfillments"][0]


async def test_configured_refusals_answer_422_with_the_reason_and_ship_nothing(
    client: httpx.AsyncClient,
) -> None:
    await control(client, "shop", "/stock", {"A": 5})
    order_id = await place(client, "shop", A=1)
    await control(client, "shop", "/faults", {"refuse": {order_id: "order is on hold"}})

    shipped = await api(
        client, "POST", f"/shop/v1/orders/{order_id}/fulfillments", parcel(f"{order_id}-1")
    )
    cancelled = await api(client, "POST", f"/shop/v1/orders/{order_id}/cancel", {})

    for response in (shipped, cancelled):
        assert response.status_code == 422
        assert response.json() == {"error": "refused", "message": "order is on hold"}
    assert (await control(client, "shop", "/fulfillments"))["fulfillments"] == []
    order = (await api(client, "GET", f"/shop/v1/orders/{order_id}")).json()
    assert order["status"] == "unfulfilled"


async def test_cancel_whole_or_lines_and_a_shipped_order_cannot_be_cancelled(
    client: httpx.AsyncClient,
) -> None:
    await control(client, "plain", "/stock", {"A": 9, "B": 9})
    partial = await place(client, "plain", A=2, B=1)
    whole = await place(client, "plain", A=1)
    shipped = await place(client, "plain", A=1)
    await control(client, "plain", "/ship", {"order_id": shipped, "tracking_number": "T-1"})

    lines = {"lines": [{"line_id": f"{partial}-1", "quantity": 1}]}
    some = await api(client, "POST", f"/plain/v1/orders/{partial}/cancel", lines)
    everything = await api(client, "POST", f"/plain/v1/orders/{whole}/cancel", {"reason": "x"})
    refused = await api(client, "POST", f"/plain/v1/orders/{shipped}/cancel", {})

    assert some.json()["order"]["lines"][0]["cancelled"] == 1
    assert some.json()["order"]["status"] == "unfulfilled"
    assert everything.json()["order"]["status"] == "cancelled"
    assert refused.status_code == 422
    assert refused.json()["error"] == "already_shipped"
    admin = (await control(client, "plain", "/fulfillments"))["fulfillments"]
    assert [(f["order_id"], f["source"], f["tracking_number"]) for f in admin] == [
        (shipped, "admin", "T-1")
    ]


# ---- auth, faults, counters ------------------------------------------------------------------


async def test_a_bad_token_or_broken_auth_is_401_and_every_call_is_counted(
    client: httpx.AsyncClient,
) -> None:
    no_token = await client.get("/shop/v1/account")
    wrong = await client.get("/shop/v1/account", headers={"Authorization": "Bearer nope"})
    good = await api(client, "GET", "/shop/v1/account")
    await control(client, "shop", "/faults", {"auth_broken": True})
    broken = await api(client, "GET", "/shop/v1/account")

    assert [r.status_code for r in (no_token, wrong, good, broken)] == [401, 401, 200, 401]
    assert wrong.headers["WWW-Authenticate"] == "Bearer"
    calls = await control(client, "shop", "/calls")
    assert calls["calls"] == {"get_account": 4}
    assert calls["throttled"] == {}


async def test_throttled_calls_get_429_with_retry_after_and_are_counted_apart(
    client: httpx.AsyncClient,
) -> None:
    await control(client, "shop", "/stock", {"A": 1})
    await control(
        client,
        "shop",
        "/faults",
        {"operations": {"get_stock": {"throttle_rate": 1.0}}, "retry_after_s": 2},
    )
    throttled = await api(client, "GET", "/shop/v1/stock", params={"listing": "L-A"})
    other = await api(client, "GET", "/shop/v1/listings")

    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "2"
    assert other.status_code == 200
    calls = await control(client, "shop", "/calls")
    assert calls["calls"] == {"get_stock": 1, "list_listings": 1}
    assert calls["throttled"] == {"get_stock": 1}


async def test_a_failure_before_applying_is_503_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    await control(client, "shop", "/stock", {"A": 1})
    await control(client, "shop", "/faults", {"next": {"set_stock": ["fail_before"]}})
    items = {"items": [{"listing": "L-A", "quantity": 8}]}
    failed = await api(client, "POST", "/shop/v1/stock", items)
    retried = await api(client, "POST", "/shop/v1/stock", items)

    assert failed.status_code == 503
    assert retried.status_code == 200
    assert await control(client, "shop", "/inventory") == {"A": 8}


async def test_fault_draws_are_seeded_so_a_run_repeats(client: httpx.AsyncClient) -> None:
    async def run() -> list[int]:
        await control(client, "shop", "/faults", {"seed": 42, "default": {"fail_before_rate": 0.5}})
        return [(await api(client, "GET", "/shop/v1/account")).status_code for _ in range(30)]

    first, second = await run(), await run()
    assert first == second
    assert {503, 200} == set(first)


async def test_fault_settings_are_validated_naming_the_bad_key(client: httpx.AsyncClient) -> None:
    for body, named in [
        ({"operations": {"teleport": {"throttle_rate": 1}}}, "teleport"),
        ({"default": {"fail_after_rate": 1.5}}, "default.fail_after_rate"),
        ({"lost_answer": "sometimes"}, "lost_answer"),
        ({"no_such_knob": 1}, "no_such_knob"),
    ]:
        response = await client.post("/shop/_sandbox/faults", json=body)
        assert response.status_code == 422, body
        assert named in response.json()["message"]
    assert (await control(client, "shop", "/faults"))["default"]["fail_after_rate"] == 0


async def test_latency_delays_each_call(client: httpx.AsyncClient) -> None:
    await control(client, "shop", "/faults", {"operations": {"get_account": {"latency_ms": 150}}})
    started = time.monotonic()
    assert (await api(client, "GET", "/shop/v1/account")).status_code == 200
    assert time.monotonic() - started >= 0.15


async def test_calls_past_max_in_flight_are_throttled(client: httpx.AsyncClient) -> None:
    await control(
        client,
        "shop",
        "/faults",
        {"max_in_flight": 1, "operations": {"get_account": {"latency_ms": 200}}},
    )
    answers = await asyncio.gather(*(api(client, "GET", "/shop/v1/account") for _ in range(3)))
    assert sorted(r.status_code for r in answers) == [200, 429, 429]
    calls = await control(client, "shop", "/calls")
    assert calls["max_in_flight_seen"] == 3
    assert calls["throttled"] == {"get_account": 2}


# ---- lost answers, on a real server -----------------------------------------------------------


def test_a_lost_answer_is_applied_then_the_connection_resets_or_times_out() -> None:
    with ThreadedSandbox(make_app()) as server:
        shop = f"{server.url}/shop"
        with httpx.Client(headers=AUTH, timeout=0.5) as http:
            http.post(f"{shop}/_sandbox/stock", json={"A": 1, "B": 1})
            http.post(f"{shop}/_sandbox/faults", json={"next": {"set_stock": ["fail_after"]}})
            with pytest.raises(httpx.RemoteProtocolError):
                http.post(f"{shop}/v1/stock", json={"items": [{"listing": "L-A", "quantity": 6}]})

            http.post(
                f"{shop}/_sandbox/faults",
                json={
                    "next": {"set_stock": ["fail_after"]},
                    "lost_answer": "timeout",
                    "timeout_delay_s": 5,
                },
            )
            with pytest.raises(httpx.ReadTimeout):
                http.post(f"{shop}/v1/stock", json={"items": [{"listing": "L-B", "quantity": 4}]})

            assert http.get(f"{shop}/_sandbox/inventory").json() == {"A": 6, "B": 4}
            assert http.get(f"{shop}/v1/account").status_code == 200


# ---- the command line --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--channel", "Shop!"], "channel name"),
        (["--channel", "shop:fast"], "unknown option 'fast'"),
        (["--channel", "shop:batch=0"], "unknown option 'batch=0'"),
        (["--channel", "shop", "--channel", "shop"], "given twice"),
        (["--channel", "shop", "--host", "0.0.0.0"], "loopback only"),
    ],
)
def test_the_command_line_refuses_bad_arguments_naming_them(args: list[str], named: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox.reference", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert named in done.stderr


async def test_the_call_log_lists_every_api_call_in_arrival_order_with_its_query(
    client: httpx.AsyncClient,
) -> None:
    before = datetime.now(UTC)
    await api(client, "GET", "/shop/v1/orders", params={"updated_since": "2026-01-01T00:00:00Z"})
    await api(client, "GET", "/shop/v1/listings")
    await api(client, "GET", "/plain/v1/account")
    after = datetime.now(UTC)

    without = await control(client, "shop", "/calls")
    calls = await control(client, "shop", "/calls?log=1")
    refused = await client.get("/shop/_sandbox/calls", params={"log": "yes"})

    assert "log" not in without
    assert [(c["operation"], c["query"]) for c in calls["log"]] == [
        ("list_orders", "updated_since=2026-01-01T00%3A00%3A00Z"),
        ("list_listings", ""),
    ]
    times = [datetime.fromisoformat(c["at"]) for c in calls["log"]]
    assert before <= times[0] <= times[1] <= after
    assert refused.status_code == 422
    assert "log" in refused.json()["message"]
