"""Bulk stock by JSON_LISTINGS_FEED: one feed for a big push, per-listing results from the report."""

from __future__ import annotations

import gzip
import itertools
import json
from typing import Any

import httpx
import pytest

from connectors.amazon import const
from connectors.base import PushOutcome, StockTarget
from connectors.errors import RetryableError
from tests.connectors.amazon.conftest import load_spec
from tests.connectors.amazon.fake_amazon import (
    REPORT_URL,
    SELLER,
    UPLOAD_URL,
    FakeAmazon,
    connector,
)

pytestmark = pytest.mark.anyio


def _feed(status: str, report: str | None = "report-1") -> dict[str, Any]:
    answer: dict[str, Any] = {
        "feedId": "feed-1",
        "feedType": const.FEED_TYPE,
        "createdTime": "2026-01-01T00:00:00Z",
        "processingStatus": status,
    }
    if report:
        answer["resultFeedDocumentId"] = report
    return answer


def _fake(*statuses: dict[str, Any], report: Any = None, gzipped: bool = False) -> FakeAmazon:
    amazon = FakeAmazon()
    amazon.on(const.CREATE_FEED_DOCUMENT, {"feedDocumentId": "doc-1", "url": UPLOAD_URL})
    amazon.on(const.UPLOAD_FEED_DOCUMENT, httpx.Response(200))
    amazon.on(const.CREATE_FEED, {"feedId": "feed-1"})
    amazon.queue(const.GET_FEED, *statuses)
    document: dict[str, Any] = {"feedDocumentId": "report-1", "url": REPORT_URL}
    if gzipped:
        document["compressionAlgorithm"] = "GZIP"
    amazon.on(const.GET_FEED_DOCUMENT, document)
    body = json.dumps(report or {"header": {}, "issues": []}).encode()
    amazon.on(
        const.DOWNLOAD_FEED_DOCUMENT,
        httpx.Response(200, content=gzip.compress(body) if gzipped else body),
    )
    return amazon


def _report(issues: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "header": {"sellerId": SELLER, "version": "2.0", "feedId": "feed-1"},
        "issues": issues,
        "summary": {"errors": len(issues), "warnings": 0, "messagesProcessed": 3},
    }


async def test_ten_thousand_skus_go_as_one_feed_not_ten_thousand_patches() -> None:
    amazon = _fake(_feed("IN_QUEUE", None), _feed("IN_PROGRESS", None), _feed("DONE"))
    targets = [StockTarget(f"SKU-{n:05d}", n % 13) for n in range(10_000)]
    results = await connector(amazon).push_stock(targets)
    assert len(results) == 10_000
    assert {r.outcome for r in results} == {PushOutcome.APPLIED}
    counts = {name: len(amazon.calls(name)) for name in {s.operation for s in amazon.sent}}
    assert counts == {
        const.LWA_TOKEN: 1,
        const.CREATE_FEED_DOCUMENT: 1,
        const.UPLOAD_FEED_DOCUMENT: 1,
        const.CREATE_FEED: 1,
        const.GET_FEED: 3,
        const.GET_FEED_DOCUMENT: 1,
        const.DOWNLOAD_FEED_DOCUMENT: 1,
    }
    (upload,) = amazon.calls(const.UPLOAD_FEED_DOCUMENT)
    assert len(json.loads(upload.request.content)["messages"]) == 10_000


async def test_a_listing_sold_out_meanwhile_is_patched_beside_the_feed() -> None:
    """A feed takes Amazon minutes: a push to a listing's last units does not wait in it."""
    amazon = _fake(_feed("DONE"))
    amazon.on(const.PATCH_LISTING, {"sku": "SKU-00007", "status": "ACCEPTED", "submissionId": "s"})
    targets = [StockTarget(f"SKU-{n:05d}", 5, urgent=n == 7) for n in range(60)]
    results = await connector(amazon, feed_threshold=50).push_stock(targets)
    assert [r.listing_ref for r in results] == [t.listing_ref for t in targets]
    assert {r.outcome for r in results} == {PushOutcome.APPLIED}
    (patch,) = amazon.calls(const.PATCH_LISTING)
    assert patch.request.url.path.endswith("/SKU-00007")
    (upload,) = amazon.calls(const.UPLOAD_FEED_DOCUMENT)
    fed = [m["sku"] for m in json.loads(upload.request.content)["messages"]]
    assert len(fed) == 59 and "SKU-00007" not in fed


async def test_report_errors_are_per_listing_refusals_with_amazons_message() -> None:
    report = _report(
        [
            {
                "messageId": 2,
                "sku": "SKU-B",
                "code": "4000003",
                "severity": "ERROR",
                "message": "The Amazon product type specified is invalid or not supported.",
            },
            {"messageId": 3, "sku": "SKU-C", "code": "99", "severity": "WARNING", "message": "w"},
        ]
    )
    amazon = _fake(_feed("DONE"), report=report, gzipped=True)
    targets = [StockTarget(sku, 5) for sku in ("SKU-A", "SKU-B", "SKU-C")]
    results = await connector(amazon, feed_threshold=2).push_stock(targets)
    assert [r.outcome for r in results] == [
        PushOutcome.APPLIED,
        PushOutcome.REJECTED,
        PushOutcome.APPLIED,  # a warning is not a refusal
    ]
    assert results[1].error == (
        "4000003: The Amazon product type specified is invalid or not supported."
    )


async def test_the_official_processing_report_example_reads() -> None:
    report = load_spec("schemas", "feeds", "listings-feed-processing-report-schema-v2.example.json")
    amazon = _fake(_feed("DONE"), report=report)
    # The example's issues name messages 4 and 5 (SKUs My-SKU-B and My-SKU-C).
    targets = [StockTarget(f"My-SKU-{c}", 1) for c in "AXYBC"]
    results = await connector(amazon, feed_threshold=1).push_stock(targets)
    outcomes = {r.listing_ref: (r.outcome, r.error) for r in results}
    assert outcomes["My-SKU-A"] == (PushOutcome.APPLIED, None)
    assert outcomes["My-SKU-B"][0] is PushOutcome.REJECTED
    assert "batteries_required" in str(outcomes["My-SKU-B"][1])
    assert "supplier_declared_dg_hz_regulation" in str(outcomes["My-SKU-B"][1])
    assert outcomes["My-SKU-C"][0] is PushOutcome.REJECTED
    assert "purchasable_offer.our_price" in str(outcomes["My-SKU-C"][1])


async def test_a_fatal_feed_refuses_what_the_report_names_and_retries_the_rest() -> None:
    report = _report([{"severity": "ERROR", "code": "5001", "message": "The feed was aborted."}])
    report["issues"].append({"messageId": 1, "severity": "ERROR", "message": "bad quantity"})
    amazon = _fake(_feed("FATAL"), report=report)
    results = await connector(amazon, feed_threshold=1).push_stock(
        [StockTarget("A", 1), StockTarget("B", 2)]
    )
    assert (results[0].outcome, results[0].error) == (PushOutcome.REJECTED, "bad quantity")
    assert (results[1].outcome, results[1].error) == (
        PushOutcome.RETRY,
        "5001: The feed was aborted.",
    )


async def test_a_cancelled_feed_is_retried_and_a_slow_one_given_up_after_the_deadline() -> None:
    amazon = _fake(_feed("CANCELLED", None))
    results = await connector(amazon, feed_threshold=1).push_stock(
        [StockTarget("A", 1), StockTarget("B", 2)]
    )
    assert {r.outcome for r in results} == {PushOutcome.RETRY}
    slow = _fake(*[_feed("IN_PROGRESS", None)] * 50)
    amazon_connector = connector(slow, feed_threshold=1, feed_deadline_s=120.0)
    results = await amazon_connector.push_stock([StockTarget("A", 1), StockTarget("B", 2)])
    assert {r.outcome for r in results} == {PushOutcome.RETRY}
    assert "still processing" in str(results[0].error)
    polls = [s.at for s in slow.calls(const.GET_FEED)]
    assert polls[-1] - polls[0] <= 120.0 + const.FEED_POLL_MAX_S
    assert all(b - a <= const.FEED_POLL_MAX_S + 1e-6 for a, b in itertools.pairwise(polls))


async def test_a_done_feed_without_its_report_is_retryable() -> None:
    amazon = _fake(_feed("DONE", None))
    with pytest.raises(RetryableError, match="without a processing report"):
        await connector(amazon, feed_threshold=1, attempts=1).push_stock(
            [StockTarget("A", 1), StockTarget("B", 2)]
        )


async def test_the_latest_target_per_listing_wins_and_each_position_gets_a_result() -> None:
    amazon = _fake(_feed("DONE"))
    targets = [StockTarget("A", 1), StockTarget("B", 2), StockTarget("A", 9)]
    results = await connector(amazon, feed_threshold=1).push_stock(targets)
    assert [r.listing_ref for r in results] == ["A", "B", "A"]
    (upload,) = amazon.calls(const.UPLOAD_FEED_DOCUMENT)
    messages = json.loads(upload.request.content)["messages"]
    assert [(m["sku"], m["patches"][0]["value"][0]["quantity"]) for m in messages] == [
        ("A", 9),
        ("B", 2),
    ]


def test_a_few_waiting_targets_are_taken_a_bucket_at_a_time_many_as_one_feed() -> None:
    """Below the feed threshold a push takes what patchListingsItem's burst sends at once (the
    rest wait pending, taking newer figures); above it, everything goes as one feed."""
    amazon_us = connector(FakeAmazon(), feed_threshold=50)
    assert (
        amazon_us.stock_batch_size(1)
        == const.PATCH_CLAIM
        == const.RATE_LIMITS[const.PATCH_LISTING][1]
    )
    assert amazon_us.stock_batch_size(50) == const.PATCH_CLAIM
    assert amazon_us.stock_batch_size(51) == const.FEED_MAX_MESSAGES


def test_a_batch_parts_its_urgent_targets_to_be_pushed_on_their_own() -> None:
    """So the pusher records each urgent patch when it lands, and that listing's next push
    (sold out, after its last units) need not wait minutes for the feed, nor seconds for the
    ordinary patches that leave the rate limit's tokens to urgent ones."""
    amazon_us = connector(FakeAmazon(), feed_threshold=50)
    feed = [StockTarget(f"SKU-{n:05d}", 5, urgent=n in (3, 7)) for n in range(60)]
    rest = [n for n in range(60) if n not in (3, 7)]
    assert amazon_us.stock_push_parts(feed) == [[3, 7], rest]
    assert amazon_us.stock_push_parts(feed[:5]) == [[3], [0, 1, 2, 4]]
    # No urgent one, or nothing else: one push.
    calm = [StockTarget(f"SKU-{n:05d}", 5) for n in range(60)]
    assert amazon_us.stock_push_parts(calm) == [list(range(60))]
    assert amazon_us.stock_push_parts([feed[3], feed[7]]) == [[0, 1]]
    # More urgent than the threshold (an import): all in the feed, as push_stock sends them.
    import_ = [StockTarget(f"SKU-{n:05d}", 0, urgent=True) for n in range(60)]
    assert amazon_us.stock_push_parts(import_) == [list(range(60))]


def test_a_feed_is_a_slow_push_an_urgent_patch_may_overtake() -> None:
    """A feed takes Amazon minutes, however urgent its targets; patches are sent at once."""
    amazon_us = connector(FakeAmazon(), feed_threshold=50)
    ordinary = [StockTarget(f"SKU-{n:05d}", 9) for n in range(50)]
    assert not amazon_us.stock_push_is_slow(ordinary)
    import_ = [StockTarget(f"SKU-{n:05d}", 0, urgent=True) for n in range(51)]
    assert amazon_us.stock_push_is_slow(import_)
