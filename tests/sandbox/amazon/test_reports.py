"""The Reports API for the all-orders-by-last-update flat file: a report holds exactly the orders
last updated in its window, at the second getOrder shows; an empty window ends CANCELLED; the
IN_QUEUE -> IN_PROGRESS -> DONE timeline under the knobs; GZIP documents; refused requests; the
presigned download URL; the usage plans and injected faults of the three operations."""

from __future__ import annotations

import gzip
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from sandbox.amazon import USAGE_PLANS
from sandbox.amazon.model import Buyer
from tests.sandbox.amazon.conftest import US, Seller, model_problems

pytestmark = pytest.mark.anyio

REPORTS = "/reports/2021-06-30/reports"
DOCUMENTS = "/reports/2021-06-30/documents"
ORDERS_BY_UPDATE = "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL"
AT_ONCE = {"reports": {"queue_s": 0, "processing_s": 0}}
COLUMNS = [
    "amazon-order-id",
    "merchant-order-id",
    "purchase-date",
    "last-updated-date",
    "order-status",
    "fulfillment-channel",
    "sales-channel",
    "order-channel",
    "ship-service-level",
    "product-name",
    "sku",
    "asin",
    "item-status",
    "quantity",
    "currency",
    "item-price",
    "item-tax",
    "shipping-price",
    "shipping-tax",
    "gift-wrap-price",
    "gift-wrap-tax",
    "item-promotion-discount",
    "ship-promotion-discount",
    "ship-city",
    "ship-state",
    "ship-postal-code",
    "ship-country",
    "promotion-ids",
    "is-business-order",
    "purchase-order-number",
    "price-designation",
]


def _at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _create(seller: Seller, **fields: Any) -> httpx.Response:
    body = {"reportType": ORDERS_BY_UPDATE, "marketplaceIds": [US], **fields}
    return await seller.api("POST", REPORTS, json=body)


async def _create_id(seller: Seller, **fields: Any) -> str:
    answer = await _create(seller, **fields)
    assert answer.status_code == 202, answer.text
    assert model_problems("reports", "CreateReportResponse", answer.json()) == []
    report_id: str = answer.json()["reportId"]
    return report_id


async def _report(seller: Seller, report_id: str) -> dict[str, Any]:
    answer = await seller.api("GET", f"{REPORTS}/{report_id}")
    assert answer.status_code == 200, answer.text
    report: dict[str, Any] = answer.json()
    assert model_problems("reports", "Report", report) == []
    return report


async def _document(seller: Seller, document_id: str) -> dict[str, Any]:
    answer = await seller.api("GET", f"{DOCUMENTS}/{document_id}")
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    assert model_problems("reports", "ReportDocument", document) == []
    return document


async def _text(seller: Seller, report_id: str) -> str:
    """The report's document, downloaded and decompressed when it says GZIP."""
    report = await _report(seller, report_id)
    assert report["processingStatus"] == "DONE", report
    document = await _document(seller, report["reportDocumentId"])
    download = await seller.http.get(document["url"])
    assert download.status_code == 200, download.text
    data = download.content
    if document.get("compressionAlgorithm") == "GZIP":
        data = gzip.decompress(data)
    return data.decode("utf-8")


def _rows(text: str) -> list[dict[str, str]]:
    assert text.endswith("\n")
    header, *lines = text[:-1].split("\n")
    assert header.split("\t") == COLUMNS
    return [dict(zip(COLUMNS, line.split("\t"), strict=True)) for line in lines]


async def test_a_report_holds_exactly_the_orders_updated_in_its_window(seller: Seller) -> None:
    await seller.control("POST", "/faults", AT_ONCE)
    await seller.list(A=10, B=10)
    untouched = await seller.order(A=1)
    moved = await seller.order(B=1)
    seller.clock.advance(60)
    start = seller.clock.now()
    seller.clock.advance(10)
    two_lines = await seller.order(A=1, B=2)
    seller.clock.advance(10)
    await seller.control("POST", "/cancel", {"order_id": moved["order_id"]})
    seller.clock.advance(10)
    end = seller.clock.now()
    seller.clock.advance(1)
    late = await seller.order(A=1)
    seller.clock.advance(60)

    rows = _rows(
        await _text(
            seller, await _create_id(seller, dataStartTime=_at(start), dataEndTime=_at(end))
        )
    )

    ids = [row["amazon-order-id"] for row in rows]
    assert ids == [two_lines["order_id"], two_lines["order_id"], moved["order_id"]]
    assert untouched["order_id"] not in ids and late["order_id"] not in ids
    for row in rows:
        answer = await seller.api("GET", f"/orders/2026-01-01/orders/{row['amazon-order-id']}")
        shown = datetime.fromisoformat(answer.json()["order"]["lastUpdatedTime"])
        assert row["last-updated-date"].endswith("+00:00")
        assert datetime.fromisoformat(row["last-updated-date"]) == shown
    first, second, cancelled = rows
    assert (first["sku"], first["quantity"], first["item-price"]) == ("A", "1", "12.50")
    assert (second["sku"], second["quantity"], second["item-price"]) == ("B", "2", "25.00")
    assert first["order-status"] == first["item-status"] == "Unshipped"
    assert cancelled["order-status"] == cancelled["item-status"] == "Canceled"
    assert first["fulfillment-channel"] == "Merchant"
    assert first["sales-channel"] == "Amazon.com"
    assert first["currency"] == "USD"
    assert first["purchase-date"] == (start + timedelta(seconds=10)).isoformat()
    where = (first["ship-city"], first["ship-postal-code"], first["ship-country"])
    assert where == ("Seattle", "98101", "US")


async def test_the_report_leaves_out_the_buyer_and_lists_an_order_without_items(
    seller: Seller,
) -> None:
    await seller.control("POST", "/faults", AT_ONCE)
    await seller.list(A=10)
    with_items = await seller.order(A=1)
    seller.clock.advance(1)
    empty = seller.sandbox.store.place_order([], Buyer(name="Jo Buyer", city="Seattle"))
    seller.clock.advance(1)

    text = await _text(seller, await _create_id(seller))

    for secret in ("Jo Buyer", "jo@example.com", "1 Main St"):
        assert secret not in text
    rows = _rows(text)
    assert [row["amazon-order-id"] for row in rows] == [with_items["order_id"], empty.order_id]
    item_columns = ["product-name", "sku", "asin", "item-status", "quantity", "item-price"]
    assert [rows[1][column] for column in item_columns] == [""] * len(item_columns)
    assert rows[1]["order-status"] == "Unshipped"
    assert rows[1]["ship-city"] == "Seattle"


async def test_a_report_with_no_data_ends_cancelled_without_a_document(seller: Seller) -> None:
    await seller.control("POST", "/faults", AT_ONCE)
    await seller.list(A=10)
    await seller.order(A=1)
    seller.clock.advance(600)
    start = seller.clock.now()
    seller.clock.advance(60)

    report = await _report(seller, await _create_id(seller, dataStartTime=_at(start)))

    assert report["processingStatus"] == "CANCELLED"
    assert "reportDocumentId" not in report
    assert "processingEndTime" in report
    (shown,) = (await seller.control("GET", "/reports"))["reports"]
    assert (shown["status"], shown["orders"], shown["document_id"]) == ("CANCELLED", 0, None)


async def test_a_report_is_queued_then_produced_from_the_orders_as_they_are_then(
    seller: Seller,
) -> None:
    await seller.control("POST", "/faults", {"reports": {"queue_s": 5, "processing_s": 10}})
    await seller.list(A=10)
    kept = await seller.order(A=1)
    changed = await seller.order(A=1)
    seller.clock.advance(1)
    created_at = seller.clock.now()
    report_id = await _create_id(seller)

    queued = await _report(seller, report_id)
    seller.clock.advance(4.9)
    still_queued = await _report(seller, report_id)
    seller.clock.advance(0.2)
    started = await _report(seller, report_id)
    await seller.control("POST", "/cancel", {"order_id": changed["order_id"]})
    seller.clock.advance(9.8)
    still_started = await _report(seller, report_id)
    seller.clock.advance(0.2)
    done = await _report(seller, report_id)

    assert queued["processingStatus"] == still_queued["processingStatus"] == "IN_QUEUE"
    assert "processingStartTime" not in still_queued
    assert started["processingStatus"] == still_started["processingStatus"] == "IN_PROGRESS"
    assert "reportDocumentId" not in still_started
    assert done["processingStatus"] == "DONE"
    assert done["createdTime"] == done["dataEndTime"] == _at(created_at)
    assert done["dataStartTime"] == _at(created_at - timedelta(days=30))
    assert done["processingStartTime"] == _at(created_at + timedelta(seconds=5.1))
    assert done["processingEndTime"] == _at(created_at + timedelta(seconds=15.1))
    rows = _rows(await _text(seller, report_id))
    assert [row["amazon-order-id"] for row in rows] == [kept["order_id"]]


async def test_a_gzip_document_decompresses_to_the_same_text(seller: Seller) -> None:
    await seller.list(A=10)
    await seller.order(A=3)
    seller.clock.advance(1)
    window = {"dataStartTime": "2026-05-01T00:00:00Z", "dataEndTime": _at(seller.clock.now())}
    await seller.control("POST", "/faults", AT_ONCE)
    plain = await _text(seller, await _create_id(seller, **window))
    await seller.control(
        "POST", "/faults", {"reports": {"queue_s": 0, "processing_s": 0, "gzip": True}}
    )

    report = await _report(seller, await _create_id(seller, **window))
    document = await _document(seller, report["reportDocumentId"])
    raw = await seller.http.get(document["url"])
    decoded = await seller.api(
        "GET",
        f"{DOCUMENTS}/{report['reportDocumentId']}",
        params={"enableContentEncodingUrlHeader": "true"},
    )
    transparent = await seller.http.get(decoded.json()["url"])

    assert document["compressionAlgorithm"] == "GZIP"
    assert raw.content[:2] == b"\x1f\x8b"
    assert gzip.decompress(raw.content).decode("utf-8") == plain
    assert "content-encoding" not in raw.headers
    assert transparent.headers["content-encoding"] == "gzip"
    assert transparent.text == plain
    assert len(_rows(plain)) == 1


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"reportType": "GET_MERCHANT_LISTINGS_ALL_DATA"}, "GET_MERCHANT_LISTINGS_ALL_DATA"),
        (
            {"dataStartTime": "2026-04-20T00:00:00Z", "dataEndTime": "2026-04-10T00:00:00Z"},
            "dataEndTime 2026-04-10T00:00:00Z is before dataStartTime",
        ),
        (
            {"dataStartTime": "2026-03-01T00:00:00Z", "dataEndTime": "2026-04-01T00:00:00Z"},
            "longer than 30 days",
        ),
        ({"dataStartTime": "2026-05-02T00:00:00Z"}, "dataStartTime 2026-05-02T00:00:00Z is in"),
        ({"dataStartTime": "yesterday"}, "dataStartTime"),
        ({"marketplaceIds": ["A1PA6795UKMFR9"]}, "A1PA6795UKMFR9"),
    ],
)
async def test_report_requests_are_checked(
    seller: Seller, fields: dict[str, Any], named: str
) -> None:
    answer = await _create(seller, **fields)

    assert answer.status_code == 400, answer.text
    assert model_problems("reports", "ErrorList", answer.json()) == []
    error = answer.json()["errors"][0]
    assert error["code"] == "InvalidInput"
    assert named in error["message"]
    assert (await seller.control("GET", "/reports"))["reports"] == []


async def test_the_start_defaults_to_thirty_days_before_the_end(seller: Seller) -> None:
    report_id = await _create_id(seller, dataEndTime="2026-03-01T00:00:00Z")

    report = await _report(seller, report_id)

    assert report["dataStartTime"] == "2026-01-30T00:00:00Z"
    assert report["dataEndTime"] == "2026-03-01T00:00:00Z"


async def test_unknown_reports_and_documents_are_not_found(seller: Seller) -> None:
    report = await seller.api("GET", f"{REPORTS}/60009999999")
    document = await seller.api("GET", f"{DOCUMENTS}/amzn1.spdoc.1.4.na.nope")

    assert report.status_code == document.status_code == 404
    assert report.json()["errors"][0]["code"] == "NotFound"
    assert "60009999999" in report.json()["errors"][0]["message"]
    assert model_problems("reports", "ErrorList", document.json()) == []


async def test_the_download_url_is_signed_expires_and_is_not_rate_limited(seller: Seller) -> None:
    await seller.control("POST", "/faults", AT_ONCE)
    await seller.list(A=10)
    await seller.order(A=1)
    seller.clock.advance(1)
    report = await _report(seller, await _create_id(seller))
    url = (await _document(seller, report["reportDocumentId"]))["url"]

    downloads = [(await seller.http.get(url)).status_code for _ in range(20)]
    tampered = await seller.http.get(url.replace("Signature=", "Signature=0"))
    encoded = await seller.http.get(f"{url}&response-content-encoding=gzip")
    other = await seller.http.get(url.replace(report["reportDocumentId"], "amzn1.spdoc.1.4.na.x"))
    seller.clock.advance(299)
    last_moment = await seller.http.get(url)
    seller.clock.advance(2)
    expired = await seller.http.get(url)

    assert downloads == [200] * 20
    assert url.startswith("http://amazon/_reports/download/")
    assert tampered.status_code == encoded.status_code == other.status_code == 403
    assert b"SignatureDoesNotMatch" in tampered.content
    assert b"SignatureDoesNotMatch" in encoded.content
    assert last_moment.status_code == 200
    assert expired.status_code == 403
    assert b"expired" in expired.content
    calls = await seller.control("GET", "/calls")
    assert calls["transfers"] == {"report_download": 21}
    assert calls["calls"] == {"createReport": 1, "getReport": 1, "getReportDocument": 1}


async def test_create_report_is_throttled_past_its_burst(seller: Seller) -> None:
    plans = {
        op: (USAGE_PLANS[op].rate, USAGE_PLANS[op].burst)
        for op in ("createReport", "getReport", "getReportDocument")
    }
    assert plans == {
        "createReport": (0.0167, 15),
        "getReport": (2.0, 15),
        "getReportDocument": (0.0167, 15),
    }

    statuses = [(await _create(seller)).status_code for _ in range(16)]

    assert statuses == [202] * 15 + [429]
    refused = await _create(seller)
    assert refused.json()["errors"][0]["code"] == "QuotaExceeded"
    assert refused.headers["x-amzn-RateLimit-Limit"] == "0.0167"
    calls = await seller.control("GET", "/calls")
    assert calls["throttled"] == {"createReport": 2}
    assert len((await seller.control("GET", "/reports"))["reports"]) == 15
    seller.clock.advance(60)  # 0.0167/s: one token in about 60 s
    assert (await _create(seller)).status_code == 202


async def test_injected_faults_reach_the_report_operations(seller: Seller) -> None:
    await seller.control(
        "POST",
        "/faults",
        {
            "reports": {"queue_s": 0, "processing_s": 0},
            "next": {"createReport": ["5xx", "429"]},
            "operations": {"getReportDocument": {"error_rate": 1.0}},
        },
    )
    await seller.list(A=10)
    await seller.order(A=1)
    seller.clock.advance(1)

    failed, refused = await _create(seller), await _create(seller)
    report = await _report(seller, await _create_id(seller))
    document = await seller.api("GET", f"{DOCUMENTS}/{report['reportDocumentId']}")

    assert (failed.status_code, refused.status_code, document.status_code) == (503, 429, 503)
    assert report["processingStatus"] == "DONE"
    calls = await seller.control("GET", "/calls")
    assert calls["faulted"] == {"createReport": 2, "getReportDocument": 1}
    assert calls["throttled"] == {}
    assert len((await seller.control("GET", "/reports"))["reports"]) == 1


async def test_outcomes_can_be_forced_and_knobs_are_shown(seller: Seller) -> None:
    knobs = {"queue_s": 0, "processing_s": 0, "next_outcomes": ["FATAL", "CANCELLED"]}
    await seller.control("POST", "/faults", {"reports": knobs})
    await seller.list(A=10)
    await seller.order(A=1)
    seller.clock.advance(1)

    fatal = await _report(seller, await _create_id(seller))
    shown = await seller.control("GET", "/faults")
    cancelled = await _report(seller, await _create_id(seller))
    done = await _report(seller, await _create_id(seller))

    assert [r["processingStatus"] for r in (fatal, cancelled, done)] == [
        "FATAL",
        "CANCELLED",
        "DONE",
    ]
    assert "reportDocumentId" not in fatal and "reportDocumentId" not in cancelled
    assert shown["reports"] == {
        "queue_s": 0.0,
        "processing_s": 0.0,
        "gzip": False,
        "next_outcomes": ["CANCELLED"],
    }
    defaults = (await seller.control("POST", "/faults", {}))["reports"]
    assert defaults == {"queue_s": 0.2, "processing_s": 0.5, "gzip": False, "next_outcomes": []}
