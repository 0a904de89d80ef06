"""Stock out in both worlds: Trading listings through ReviseInventoryStatus (4 a call, through
ebaysdk), Inventory-API listings through bulkUpdatePriceQuantity; eBay's per-item answers, its
250 revisions a listing a day, and the daily call quota."""

from __future__ import annotations

import logging

import httpx
import pytest
import requests

from connectors.base import PushOutcome, StockTarget
from connectors.ebay import const
from connectors.errors import AuthError, RateLimitedError, UncertainOutcomeError
from tests.connectors.ebay.fake_ebay import (
    CLIENT_SECRET,
    REFRESH_TOKEN,
    FakeClock,
    FakeEbay,
    FakeTrading,
    connect,
    json_of,
    statuses,
    trading_answer,
)

pytestmark = pytest.mark.anyio
BULK = "/sell/inventory/v1/bulk_update_price_quantity"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _bulk_ok(request: httpx.Request) -> dict[str, object]:
    responses = []
    for entry in json_of(request)["requests"]:
        responses.append({"statusCode": 200, "sku": entry["sku"]})
        for offer in entry.get("offers", ()):
            responses.append({"statusCode": 200, "sku": entry["sku"], "offerId": offer["offerId"]})
    return {"responses": responses}


async def test_ten_trading_listings_go_out_in_three_calls() -> None:
    ebay, trading = FakeEbay(), FakeTrading()
    connector = connect(ebay, trading)
    targets = [StockTarget(f"trading:11055000{n:04d}", n) for n in range(10)]
    results = await connector.push_stock(targets)
    assert [r.outcome for r in results] == [PushOutcome.APPLIED] * 10
    calls = trading.of("ReviseInventoryStatus")
    assert [len(statuses(root)) for root in calls] == [4, 4, 2]
    sent = [status for root in calls for status in statuses(root)]
    assert sent == [{"ItemID": f"11055000{n:04d}", "Quantity": str(n)} for n in range(10)]
    verb, headers, _root = trading.calls[0]
    assert verb == "ReviseInventoryStatus"
    assert headers["X-EBAY-API-IAF-TOKEN"] == "user-token-1"  # the OAuth user token
    assert headers["X-EBAY-API-SITEID"] == "0"
    assert "PRD-secret" not in str(headers)  # the client secret (cert id) is never sent
    assert ebay.api_calls() == []  # nothing went through the REST APIs
    await connector.aclose()


async def test_a_channel_with_both_kinds_of_listing_pushes_each_through_its_own_api() -> None:
    ebay, trading = FakeEbay(), FakeTrading()
    ebay.on("POST", BULK, _bulk_ok)
    connector = connect(ebay, trading)
    targets = [
        StockTarget("trading:110551234567", 5),
        StockTarget("inventory:MUG-RED", 7, extra={"offer_ids": ["5005317010"]}),
        StockTarget("trading:110559876543:TEE-M", 2),
        StockTarget("TEE-L", 3, extra={"stock_api": "inventory"}),  # bound by hand
        StockTarget("110550000001", 1),  # a bare ref takes the channel file's world
    ]
    results = await connector.push_stock(targets)
    assert [r.outcome for r in results] == [PushOutcome.APPLIED] * 5
    (revise,) = trading.of("ReviseInventoryStatus")
    assert statuses(revise) == [
        {"ItemID": "110550000001", "Quantity": "1"},
        {"ItemID": "110551234567", "Quantity": "5"},
        {"ItemID": "110559876543", "Quantity": "2", "SKU": "TEE-M"},
    ]
    (bulk,) = ebay.calls("POST", BULK)
    assert json_of(bulk) == {
        "requests": [
            {
                "sku": "MUG-RED",
                "shipToLocationAvailability": {"quantity": 7},
                "offers": [{"offerId": "5005317010", "availableQuantity": 7}],
            },
            {"sku": "TEE-L", "shipToLocationAvailability": {"quantity": 3}},
        ]
    }
    assert bulk.headers["Authorization"] == "Bearer user-token-1"
    await connector.aclose()


async def test_an_inventory_channel_reads_bare_refs_as_skus() -> None:
    ebay = FakeEbay()
    ebay.on("POST", BULK, _bulk_ok)
    trading = FakeTrading()
    connector = connect(ebay, trading, stock_api="inventory")
    (result,) = await connector.push_stock([StockTarget("MUG-RED", 4)])
    assert result.outcome is PushOutcome.APPLIED
    assert json_of(ebay.calls("POST", BULK)[0])["requests"][0]["sku"] == "MUG-RED"
    assert trading.calls == []
    await connector.aclose()


async def test_trading_item_errors_are_put_on_their_items() -> None:
    trading = FakeTrading()
    trading.on(
        "ReviseInventoryStatus",
        trading_answer(
            "ReviseInventoryStatus",
            "<InventoryStatus><ItemID>110550000001</ItemID><Quantity>3</Quantity></InventoryStatus>",
            ack="Failure",
            errors=[
                {
                    "code": "21916750",
                    "long": "The listing has ended and cannot be revised.",
                    "params": ["110550000002"],
                },
            ],
        ),
    )
    connector = connect(FakeEbay(), trading)
    results = await connector.push_stock(
        [
            StockTarget("trading:110550000001", 3),
            StockTarget("trading:110550000002", 4),
            StockTarget("trading:110550000003", 5),
        ]
    )
    assert [(r.outcome, r.error) for r in results] == [
        (PushOutcome.APPLIED, None),
        (PushOutcome.REJECTED, "21916750: The listing has ended and cannot be revised."),
        (PushOutcome.RETRY, results[2].error),  # neither confirmed nor refused: try again
    ]
    await connector.aclose()


async def test_a_redundant_revision_warning_counts_as_applied() -> None:
    trading = FakeTrading()
    trading.on(
        "ReviseInventoryStatus",
        trading_answer(
            "ReviseInventoryStatus",
            "<InventoryStatus><ItemID>110550000001</ItemID><Quantity>3</Quantity></InventoryStatus>",
            ack="Warning",
            errors=[{"code": const.TRADING_REDUNDANT, "severity": "Warning"}],
        ),
    )
    connector = connect(FakeEbay(), trading)
    (result,) = await connector.push_stock([StockTarget("trading:110550000001", 3)])
    assert result.outcome is PushOutcome.APPLIED
    await connector.aclose()


async def test_a_refused_token_in_the_xml_is_renewed_once_then_an_auth_error() -> None:
    ebay, trading = FakeEbay(), FakeTrading()
    expired = trading_answer(
        "ReviseInventoryStatus", ack="Failure", errors=[{"code": "932", "long": "Hard expired."}]
    )
    trading.queue("ReviseInventoryStatus", expired, expired)
    connector = connect(ebay, trading)
    with pytest.raises(AuthError, match="932"):
        await connector.push_stock([StockTarget("trading:110550000001", 3)])
    tokens = [headers["X-EBAY-API-IAF-TOKEN"] for _v, headers, _r in trading.calls]
    assert tokens == ["user-token-1", "user-token-2"]
    await connector.aclose()


async def test_trading_outages_are_retried_and_an_unanswered_push_raises() -> None:
    clock = FakeClock()
    trading = FakeTrading()
    trading.queue(
        "ReviseInventoryStatus",
        (503, b"<html>Service Unavailable</html>"),
        requests.exceptions.ReadTimeout("read timed out"),
        trading_answer("ReviseInventoryStatus"),
    )
    connector = connect(FakeEbay(), trading, clock=clock)
    (result,) = await connector.push_stock([StockTarget("trading:110550000001", 3)])
    assert result.outcome is PushOutcome.APPLIED  # absolute quantities: safe to resend
    assert len(trading.calls) == 3 and len(clock.sleeps) == 2

    down = FakeTrading()
    down.on("ReviseInventoryStatus", requests.exceptions.ReadTimeout("read timed out"))
    connector = connect(FakeEbay(), down, clock=clock, attempts=2)
    with pytest.raises(UncertainOutcomeError):
        await connector.push_stock([StockTarget("trading:110550000001", 3)])
    await connector.aclose()


async def test_the_trading_call_limit_stops_the_push_until_ebays_day_ends() -> None:
    trading = FakeTrading()
    trading.on(
        "ReviseInventoryStatus",
        trading_answer(
            "ReviseInventoryStatus",
            ack="Failure",
            errors=[{"code": "518", "long": "Your application has exceeded usage limit."}],
        ),
    )
    connector = connect(FakeEbay(), trading)
    targets = [StockTarget(f"trading:11055000{n:04d}", 1) for n in range(8)]
    with pytest.raises(RateLimitedError) as caught:
        await connector.push_stock(targets)
    assert caught.value.retry_after == pytest.approx(12 * 3600)  # noon Pacific: 12 h to go
    assert len(trading.calls) == 1  # not retried, and the second batch not sent
    with pytest.raises(RateLimitedError):
        await connector.push_stock(targets[:1])
    assert len(trading.calls) == 1
    (trading_quota,) = [q for q in connector.status().quotas if q.api == "trading"]
    assert trading_quota.is_exhausted and trading_quota.remaining == 0
    await connector.aclose()


async def test_a_bulk_batch_refused_as_a_whole_is_sent_one_entry_per_call() -> None:
    ebay = FakeEbay()

    def bulk(request: httpx.Request) -> httpx.Response | dict[str, object]:
        entries = json_of(request)["requests"]
        if len(entries) > 1:
            return httpx.Response(
                400, json={"errors": [{"errorId": 25001, "message": "only one SKU per call"}]}
            )
        if entries[0]["sku"] == "GONE":
            return {
                "responses": [
                    {
                        "statusCode": 404,
                        "sku": "GONE",
                        "errors": [{"errorId": 25702, "message": "SKU not found"}],
                    }
                ]
            }
        return _bulk_ok(request)

    ebay.on("POST", BULK, bulk)
    connector = connect(ebay, stock_api="inventory")
    results = await connector.push_stock(
        [StockTarget("MUG-RED", 1), StockTarget("GONE", 2), StockTarget("TEE-M", 3)]
    )
    assert [(r.outcome, r.error) for r in results] == [
        (PushOutcome.APPLIED, None),
        (PushOutcome.REJECTED, "25702: SKU not found"),
        (PushOutcome.APPLIED, None),
    ]
    assert [len(json_of(r)["requests"]) for r in ebay.calls("POST", BULK)] == [3, 1, 1, 1]
    await connector.aclose()


async def test_a_ref_that_names_nothing_is_rejected_and_the_latest_target_wins() -> None:
    trading = FakeTrading()
    connector = connect(FakeEbay(), trading)
    results = await connector.push_stock(
        [
            StockTarget("trading:not-a-number", 1),
            StockTarget("trading:110550000001", 9),
            StockTarget("trading:110550000001", 4),
        ]
    )
    assert results[0].outcome is PushOutcome.REJECTED and "ItemID" in str(results[0].error)
    assert [r.outcome for r in results[1:]] == [PushOutcome.APPLIED] * 2
    (revise,) = trading.of("ReviseInventoryStatus")
    assert statuses(revise) == [{"ItemID": "110550000001", "Quantity": "4"}]
    await connector.aclose()


async def test_a_listing_never_gets_more_than_250_revisions_a_day() -> None:
    clock = FakeClock()
    trading = FakeTrading()
    connector = connect(FakeEbay(), trading, clock=clock)
    ref = "trading:110550000001"
    (first,) = await connector.push_stock([StockTarget(ref, 5)])
    assert first.outcome is PushOutcome.APPLIED
    for _ in range(238):  # revised 239 times today in all
        connector.revisions.record("trading:110550000001")
    (drop,) = await connector.push_stock([StockTarget(ref, 4)])
    assert drop.outcome is PushOutcome.APPLIED  # the 240th: the last that is not a zero
    (held,) = await connector.push_stock([StockTarget(ref, 3)])
    assert held.outcome is PushOutcome.RETRY and "240/250" in str(held.error)
    for _ in range(10):  # showing 0 may use the last ten
        (zero,) = await connector.push_stock([StockTarget(ref, 0)])
        assert zero.outcome is PushOutcome.APPLIED
    (over,) = await connector.push_stock([StockTarget(ref, 0)])
    assert over.outcome is PushOutcome.RETRY and "250/250" in str(over.error)
    assert len(trading.calls) == 12
    assert connector.status().revisions.at_limit == ("trading:110550000001",)
    clock.advance(12 * 3600 + 1)  # past midnight Pacific: a new day
    (next_day,) = await connector.push_stock([StockTarget(ref, 8)])
    assert next_day.outcome is PushOutcome.APPLIED
    await connector.aclose()


async def test_rises_of_a_busy_listing_are_spaced_out_drops_are_not() -> None:
    clock = FakeClock()
    trading = FakeTrading()
    connector = connect(FakeEbay(), trading, clock=clock)
    ref = "trading:110550000001"
    for _ in range(const.REVISION_PACING_FROM):
        connector.revisions.record("trading:110550000001")
    clock.advance(400)
    (first,) = await connector.push_stock([StockTarget(ref, 5)])
    assert first.outcome is PushOutcome.APPLIED
    # About 12 hours left, 240 - 126 = 114 rises left: about one every 376 s.
    clock.advance(60)
    (rise,) = await connector.push_stock([StockTarget(ref, 6)])
    assert rise.outcome is PushOutcome.RETRY and str(rise.error).startswith("coalescing")
    (drop,) = await connector.push_stock([StockTarget(ref, 4)])
    assert drop.outcome is PushOutcome.APPLIED  # the listing showed more than there is
    clock.advance(400)
    (later,) = await connector.push_stock([StockTarget(ref, 6)])
    assert later.outcome is PushOutcome.APPLIED
    assert [
        s["Quantity"] for root in trading.of("ReviseInventoryStatus") for s in statuses(root)
    ] == [
        "5",
        "4",
        "6",
    ]
    await connector.aclose()


async def test_calls_slow_down_before_the_daily_quota_runs_out() -> None:
    clock = FakeClock()
    trading = FakeTrading()
    connector = connect(FakeEbay(), trading, clock=clock, daily_quotas={"trading": 100})
    targets = [StockTarget(f"trading:11055000{n:04d}", 1) for n in range(4)]
    for _ in range(50):  # the first half of the day's calls go at once
        await connector.push_stock(targets)
    assert clock.sleeps == []
    # Half used with 12 hours left: the other 48 (2 kept for shipments) are spread evenly.
    with pytest.raises(RateLimitedError, match="pacing") as caught:
        await connector.push_stock(targets)
    assert caught.value.retry_after == pytest.approx(12 * 3600 / 48)
    clock.advance(12 * 3600 / 48)
    await connector.push_stock(targets)
    (trading_quota,) = [q for q in connector.status().quotas if q.api == "trading"]
    assert (trading_quota.used, trading_quota.limit, trading_quota.is_pacing) == (51, 100, True)
    assert connector.status().to_json()["quotas"][-1]["remaining"] == 49
    await connector.aclose()


async def test_no_token_or_secret_in_debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ebay, trading = FakeEbay(), FakeTrading()
    ebay.on("POST", BULK, _bulk_ok)
    connector = connect(ebay, trading)
    await connector.push_stock(
        [StockTarget("trading:110550000001", 3), StockTarget("inventory:MUG-RED", 1)]
    )
    assert len(trading.calls) == 1 and len(ebay.calls("POST", BULK)) == 1
    for secret in ("user-token-1", CLIENT_SECRET, REFRESH_TOKEN):
        assert secret not in caplog.text
    await connector.aclose()
