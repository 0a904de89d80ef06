"""The JSON_LISTINGS_FEED flow end to end: presigned upload, processing states, listing changes,
and a processing report in Amazon's schema with per-SKU errors; refused uploads, FATAL and
CANCELLED feeds; a 10,000-SKU reconciliation in one feed."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from tests.sandbox.amazon.conftest import (
    AVAILABILITY,
    SELLER,
    US,
    Seller,
    availability,
    schema_problems,
)

pytestmark = pytest.mark.anyio

JSON = "application/json; charset=UTF-8"
REPORT_SCHEMA = "schemas/feeds/listings-feed-processing-report-schema-v2.json"


def _document(messages: list[dict[str, Any]], **header: Any) -> bytes:
    return json.dumps(
        {"header": {"sellerId": SELLER, "version": "2.0", **header}, "messages": messages}
    ).encode()


def _patch(number: int, sku: str, value: Any) -> dict[str, Any]:
    return {
        "messageId": number,
        "sku": sku,
        "operationType": "PATCH",
        "productType": "PRODUCT",
        "patches": [{"op": "replace", "path": AVAILABILITY, "value": value}],
    }


async def _submit(seller: Seller, data: bytes, content_type: str = JSON) -> str:
    created = await seller.api("POST", "/feeds/2021-06-30/documents", json={"contentType": JSON})
    assert created.status_code == 201, created.text
    upload = await seller.http.put(
        created.json()["url"], content=data, headers={"Content-Type": content_type}
    )
    assert upload.status_code == 200, upload.text
    feed = await seller.api(
        "POST",
        "/feeds/2021-06-30/feeds",
        json={
            "feedType": "JSON_LISTINGS_FEED",
            "marketplaceIds": [US],
            "inputFeedDocumentId": created.json()["feedDocumentId"],
        },
    )
    assert feed.status_code == 202, feed.text
    feed_id: str = feed.json()["feedId"]
    return feed_id


async def _feed(seller: Seller, feed_id: str) -> dict[str, Any]:
    answer = await seller.api("GET", f"/feeds/2021-06-30/feeds/{feed_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def _report(seller: Seller, document_id: str) -> dict[str, Any]:
    answer = await seller.api("GET", f"/feeds/2021-06-30/documents/{document_id}")
    assert answer.status_code == 200, answer.text
    download = await seller.http.get(answer.json()["url"])
    assert download.status_code == 200
    data = download.content
    if answer.json().get("compressionAlgorithm") == "GZIP":
        data = gzip.decompress(data)
    report: dict[str, Any] = json.loads(data)
    return report


async def test_a_feed_is_queued_processed_and_reports_per_sku_errors(seller: Seller) -> None:
    await seller.list(A=1, B=1, C=1)
    data = _document(
        [
            _patch(1, "A", availability(10)),
            _patch(2, "NOPE", availability(3)),
            {
                "messageId": 3,
                "sku": "B",
                "operationType": "PARTIAL_UPDATE",
                "productType": "PRODUCT",
                "attributes": {"fulfillment_availability": availability(20)},
            },
            _patch(4, "C", availability(-5)),
        ]
    )
    feed_id = await _submit(seller, data)

    assert (await _feed(seller, feed_id))["processingStatus"] == "IN_QUEUE"
    seller.clock.advance(0.3)
    assert (await _feed(seller, feed_id))["processingStatus"] == "IN_PROGRESS"
    assert await seller.control("GET", "/inventory") == {"A": 1, "B": 1, "C": 1}
    seller.clock.advance(0.5)
    done = await _feed(seller, feed_id)

    assert done["processingStatus"] == "DONE"
    assert await seller.control("GET", "/inventory") == {"A": 10, "B": 20, "C": 1}
    report = await _report(seller, done["resultFeedDocumentId"])
    assert schema_problems(REPORT_SCHEMA, report) == []
    assert report["summary"] == {
        "errors": 2,
        "warnings": 0,
        "messagesProcessed": 4,
        "messagesAccepted": 2,
        "messagesInvalid": 2,
    }
    assert [(i["messageId"], i["sku"], i["code"]) for i in report["issues"]] == [
        (2, "NOPE", "4000001"),
        (4, "C", "4000003"),
    ]


async def test_reports_can_come_gzip_compressed_with_the_included_items(seller: Seller) -> None:
    await seller.list(A=1)
    await seller.control(
        "POST", "/faults", {"feeds": {"gzip_reports": True, "queue_s": 0, "processing_s": 0}}
    )
    report_header = {"includedData": ["fulfillmentAvailability"], "apiVersion": "2021-08-01"}

    feed_id = await _submit(
        seller, _document([_patch(1, "A", availability(4))], report=report_header)
    )

    done = await _feed(seller, feed_id)
    report = await _report(seller, done["resultFeedDocumentId"])
    assert schema_problems(REPORT_SCHEMA, report) == []
    assert report["items"] == [
        {
            "sku": "A",
            "fulfillmentAvailability": [{"fulfillmentChannelCode": "DEFAULT", "quantity": 4}],
        }
    ]


async def test_uploads_need_the_declared_content_type_and_a_live_url(seller: Seller) -> None:
    created = (
        await seller.api("POST", "/feeds/2021-06-30/documents", json={"contentType": JSON})
    ).json()

    wrong_type = await seller.http.put(
        created["url"], content=b"{}", headers={"Content-Type": "text/plain"}
    )
    tampered = await seller.http.put(
        created["url"].replace("Signature=", "Signature=0"),
        content=b"{}",
        headers={"Content-Type": JSON},
    )
    seller.clock.advance(301)
    expired = await seller.http.put(created["url"], content=b"{}", headers={"Content-Type": JSON})

    assert wrong_type.status_code == 403
    assert b"SignatureDoesNotMatch" in wrong_type.content
    assert tampered.status_code == 403
    assert expired.status_code == 403
    assert b"expired" in expired.content
    assert (await seller.control("GET", "/calls"))["transfers"] == {}


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"not json", "not valid UTF-8 JSON"),
        (json.dumps({"messages": []}).encode(), "header"),
        (
            _document(
                [],
            ),
            "1 to 25000",
        ),
        (
            json.dumps(
                {"header": {"sellerId": "A2OTHER", "version": "2.0"}, "messages": [{}]}
            ).encode(),
            "sellerId",
        ),
    ],
)
async def test_an_unreadable_document_makes_the_feed_fatal(
    seller: Seller, data: bytes, named: str
) -> None:
    await seller.control("POST", "/faults", {"feeds": {"queue_s": 0, "processing_s": 0}})

    done = await _feed(seller, await _submit(seller, data))

    assert done["processingStatus"] == "FATAL"
    report = await _report(seller, done["resultFeedDocumentId"])
    assert schema_problems(REPORT_SCHEMA, report) == []
    (issue,) = report["issues"]
    assert "messageId" not in issue
    assert named in issue["message"]


async def test_outcomes_can_be_forced_and_feeds_are_checked_at_creation(seller: Seller) -> None:
    await seller.list(A=1)
    await seller.control(
        "POST",
        "/faults",
        {"feeds": {"queue_s": 0, "processing_s": 0, "next_outcomes": ["CANCELLED", "FATAL"]}},
    )
    data = _document([_patch(1, "A", availability(4))])

    cancelled = await _feed(seller, await _submit(seller, data))
    fatal = await _feed(seller, await _submit(seller, data))
    legacy = await seller.api(
        "POST",
        "/feeds/2021-06-30/feeds",
        json={
            "feedType": "POST_INVENTORY_AVAILABILITY_DATA",
            "marketplaceIds": [US],
            "inputFeedDocumentId": "x",
        },
    )

    assert cancelled["processingStatus"] == "CANCELLED"
    assert "resultFeedDocumentId" not in cancelled
    assert fatal["processingStatus"] == "FATAL"
    assert legacy.status_code == 400
    assert "JSON_LISTINGS_FEED" in legacy.json()["errors"][0]["message"]
    assert await seller.control("GET", "/inventory") == {"A": 1}


async def test_ten_thousand_skus_reconcile_through_one_feed(seller: Seller) -> None:
    skus = [f"SKU-{n:05d}" for n in range(10_000)]
    await seller.control(
        "POST", "/listings", {"listings": [{"sku": sku, "quantity": 1} for sku in skus]}, status=201
    )
    await seller.control("POST", "/faults", {"feeds": {"queue_s": 0, "processing_s": 0}})
    data = _document([_patch(n + 1, sku, availability(n % 50)) for n, sku in enumerate(skus)])

    done = await _feed(seller, await _submit(seller, data))

    assert done["processingStatus"] == "DONE"
    inventory = await seller.control("GET", "/inventory")
    assert all(inventory[sku] == n % 50 for n, sku in enumerate(skus))
    report = await _report(seller, done["resultFeedDocumentId"])
    assert report["summary"]["messagesAccepted"] == 10_000
    calls = (await seller.control("GET", "/calls"))["calls"]
    assert calls == {"createFeedDocument": 1, "createFeed": 1, "getFeed": 1, "getFeedDocument": 1}
