"""The reconcile's list of changed orders from Amazon's All Orders report (order_report.py)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jsonschema
import pytest

from connectors.amazon import const
from connectors.amazon.mapper_notice import provisional_time
from connectors.amazon.order_report import versions_of_document
from connectors.base import ListsOrderVersionsInBulk, OrderVersion
from connectors.errors import BulkListRefusedError, PermanentError, RetryableError
from tests.connectors.amazon.conftest import load_spec
from tests.connectors.amazon.fake_amazon import (
    ORDER_ID,
    ORDER_REPORT_URL,
    US,
    FakeAmazon,
    connector,
    error,
    order,
)

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SINCE = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
HEADER = (
    "amazon-order-id\tmerchant-order-id\tpurchase-date\tlast-updated-date\torder-status\t"
    "fulfillment-channel\tsales-channel\tsku\tquantity\tship-city\n"
)


def _row(order_id: str, updated: str, sku: str = "MUG-RED", status: str = "Unshipped") -> str:
    return f"{order_id}\t\t2026-03-01T08:00:00+00:00\t{updated}\t{status}\tMerchant\tAmazon.com\t{sku}\t1\tSeattle\n"


def _document(rows: int) -> bytes:
    lines = [
        _row(f"114-{n:07d}-0000001", f"2026-03-01T10:{n // 60:02d}:{n % 60:02d}+00:00")
        for n in range(rows)
    ]
    return (HEADER + "".join(lines)).encode()


def _report(status: str, document_id: str | None = None) -> dict[str, Any]:
    report: dict[str, Any] = {
        "reportId": "rep-1",
        "reportType": const.ORDER_REPORT_TYPE,
        "createdTime": "2026-03-01T12:00:00Z",
        "processingStatus": status,
    }
    if document_id is not None:
        report["reportDocumentId"] = document_id
    return report


def _fake(document: bytes, *statuses: str, compression: str | None = None) -> FakeAmazon:
    amazon = FakeAmazon()
    amazon.on(const.CREATE_REPORT, httpx.Response(202, json={"reportId": "rep-1"}))
    answers = [_report(s, "doc-9" if s == "DONE" else None) for s in statuses]
    amazon.queue(const.GET_REPORT, *answers)
    shown = {"reportDocumentId": "doc-9", "url": ORDER_REPORT_URL}
    if compression:
        shown["compressionAlgorithm"] = compression
    amazon.on(const.GET_REPORT_DOCUMENT, shown)
    amazon.on(const.DOWNLOAD_REPORT_DOCUMENT, httpx.Response(200, content=document))
    return amazon


def _make(amazon: FakeAmazon) -> Any:
    return connector(amazon, now=lambda: NOW)


async def test_a_report_is_asked_for_the_window_and_handed_out_a_page_at_a_time() -> None:
    amazon = _fake(_document(250), "IN_QUEUE", "IN_PROGRESS", "DONE")
    amazon_connector = _make(amazon)
    assert isinstance(amazon_connector, ListsOrderVersionsInBulk)

    first = await amazon_connector.bulk_order_versions(SINCE, None)
    (created,) = amazon.calls(const.CREATE_REPORT)
    assert created.json() == {
        "reportType": "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL",
        "marketplaceIds": [US],
        "dataStartTime": "2026-03-01T08:57:00Z",  # the window less Amazon's order-data lag
    }
    assert len(amazon.calls(const.GET_REPORT)) == 3
    assert amazon.clock.sleeps == [2.0, 3.0]  # it waited between looks, backing off
    assert len(first.versions) == 100 and first.next_cursor == "rep-1/100"
    assert first.versions[0] == OrderVersion(
        "114-0000000-0000001", datetime(2026, 3, 1, 10, 0, tzinfo=UTC) - timedelta(milliseconds=1)
    )

    second = await amazon_connector.bulk_order_versions(SINCE, first.next_cursor)
    third = await amazon_connector.bulk_order_versions(SINCE, second.next_cursor)
    assert (len(second.versions), len(third.versions), third.next_cursor) == (100, 50, None)
    listed = [*first.versions, *second.versions, *third.versions]
    assert len({v.external_id for v in listed}) == 250
    assert listed == sorted(listed, key=lambda v: v.updated_at)
    # The later pages came from the report already read: one of each call in all.
    assert [len(amazon.calls(op)) for op in (const.CREATE_REPORT, const.GET_REPORT_DOCUMENT)] == [
        1,
        1,
    ]


async def test_a_cursor_of_a_report_no_longer_held_reads_its_document_again() -> None:
    """After a restart the cursor names a report this process never read: no new report."""
    amazon = _fake(_document(150), "DONE")
    page = await _make(amazon).bulk_order_versions(SINCE, "rep-1/100")
    assert (len(page.versions), page.next_cursor) == (50, None)
    assert amazon.calls(const.CREATE_REPORT) == []
    assert len(amazon.calls(const.GET_REPORT_DOCUMENT)) == 1


async def test_a_report_that_found_nothing_is_an_empty_list() -> None:
    """Amazon cancels a report with no data instead of producing an empty document."""
    amazon = _fake(b"", "IN_QUEUE", "CANCELLED")
    page = await _make(amazon).bulk_order_versions(SINCE, None)
    assert (list(page.versions), page.next_cursor) == ([], None)
    assert amazon.calls(const.GET_REPORT_DOCUMENT) == []


async def test_a_fatal_report_or_one_past_the_deadline_fails_the_reconcile_to_be_retried() -> None:
    amazon = _fake(b"", "FATAL")
    with pytest.raises(RetryableError, match="rep-1 ended FATAL"):
        await _make(amazon).bulk_order_versions(SINCE, None)

    slow = _fake(b"", *["IN_PROGRESS"] * 200)
    with pytest.raises(RetryableError, match="still IN_PROGRESS after 1200 s"):
        await _make(slow).bulk_order_versions(SINCE, None)
    assert sum(slow.clock.sleeps) >= const.REPORT_DEADLINE_S
    assert max(slow.clock.sleeps) == const.REPORT_POLL_MAX_S


async def test_a_window_older_than_thirty_days_is_cut_to_what_amazon_reports() -> None:
    amazon = _fake(_document(1), "DONE")
    await _make(amazon).bulk_order_versions(NOW - timedelta(days=90), None)
    (created,) = amazon.calls(const.CREATE_REPORT)
    start = datetime.fromisoformat(created.json()["dataStartTime"])
    assert NOW - timedelta(days=30) < start < NOW - timedelta(days=29)


async def test_a_gzip_document_is_read_and_one_without_the_columns_is_refused_by_name() -> None:
    amazon = _fake(gzip.compress(_document(3)), "DONE", compression="GZIP")
    page = await _make(amazon).bulk_order_versions(SINCE, None)
    assert len(page.versions) == 3

    broken = _fake(b"order-id\tupdated\nX\t2026-03-01T10:00:00+00:00\n", "DONE")
    with pytest.raises(PermanentError, match="no amazon-order-id column"):
        await _make(broken).bulk_order_versions(SINCE, None)


def test_an_order_of_several_items_is_one_version_at_its_newest_change() -> None:
    text = (
        HEADER
        + _row("114-1", "2026-03-01T10:00:05+00:00", "MUG-RED")
        + _row("114-1", "2026-03-01T10:00:05+00:00", "MUG-BLUE")
        + _row("114-2", "2026-03-01T11:00:00+01:00")  # an offset: 10:00:00 UTC
        + _row("", "2026-03-01T10:00:00+00:00")
        + _row("114-3", "not a time")
    )
    versions = versions_of_document(text.encode("latin-1"), None)
    assert [(v.external_id, v.updated_at.second) for v in versions] == [("114-2", 59), ("114-1", 4)]


def test_a_report_version_is_current_for_a_summary_or_a_full_read_of_that_change() -> None:
    """The store dates a notice summary just below its change's second, and a full read at that
    second: both count as holding the version the report lists; an earlier change does not."""
    changed = datetime(2026, 3, 1, 10, 0, 5, 734_000, tzinfo=UTC)
    (listed,) = versions_of_document(
        (HEADER + _row("114-1", "2026-03-01T10:00:05Z")).encode(), None
    )
    assert provisional_time(changed) >= listed.updated_at
    assert changed.replace(microsecond=0) >= listed.updated_at
    earlier = provisional_time(changed - timedelta(seconds=1))
    assert earlier < listed.updated_at


async def test_create_report_requests_validate_against_the_reports_model() -> None:
    model = load_spec("models", "reports-api-model", "reports_2021-06-30.json")
    schema = {
        "$ref": "#/definitions/CreateReportSpecification",
        "definitions": model["definitions"],
    }
    validator = jsonschema.Draft4Validator(schema)
    assert not validator.is_valid({"marketplaceIds": [US]})  # it does check
    amazon = _fake(_document(1), "DONE")
    await _make(amazon).bulk_order_versions(SINCE, None)
    (created,) = amazon.calls(const.CREATE_REPORT)
    errors = [e.message for e in validator.iter_errors(created.json())]
    assert errors == []


async def test_a_poll_and_a_reconcile_paging_two_reports_at_once_read_each_document_once() -> None:
    amazon = _fake(_document(250), "DONE", "DONE")
    amazon.queue(
        const.CREATE_REPORT,
        httpx.Response(202, json={"reportId": "rep-1"}),
        httpx.Response(202, json={"reportId": "rep-2"}),
    )
    reports = _make(amazon)
    first = await reports.bulk_order_versions(SINCE, None)
    second = await reports.bulk_order_versions(SINCE, None)
    cursors = [first.next_cursor, second.next_cursor]
    assert cursors == ["rep-1/100", "rep-2/100"]
    for _ in range(2):  # turn about, as two jobs would
        pages = [await reports.bulk_order_versions(SINCE, cursor) for cursor in cursors]
        cursors = [page.next_cursor for page in pages]
    assert cursors == [None, None]
    assert len(amazon.calls(const.GET_REPORT_DOCUMENT)) == 2


async def test_an_app_without_the_reports_role_is_refused_reports_not_the_channel() -> None:
    """A 403 on createReport means the role is missing, not that the seller's credentials are
    bad: it must not stop the channel (AuthError would), and is not asked again for an hour."""
    amazon = _fake(_document(1), "DONE")
    amazon.on(
        const.CREATE_REPORT, error(403, "Unauthorized", "Access to requested resource is denied.")
    )
    amazon.on(const.GET_ORDER, {"order": order()})
    reports = connector(amazon, now=lambda: NOW, has_notifications=True)
    assert reports.bulk_after == const.ORDER_REPORT_POLL_AFTER
    with pytest.raises(BulkListRefusedError, match="createReport refused"):
        await reports.bulk_order_versions(SINCE, None)
    asked = len(amazon.calls(const.CREATE_REPORT))
    assert asked == 2  # once, and once more with a fresh access token
    assert reports.bulk_after is None  # polls stop asking for reports
    with pytest.raises(BulkListRefusedError):
        await reports.bulk_order_versions(SINCE, None)
    assert len(amazon.calls(const.CREATE_REPORT)) == asked
    assert (await reports.fetch_order(ORDER_ID)).external_id == ORDER_ID  # the channel works

    amazon.clock.now += const.REPORT_REFUSAL_HOLD_S
    assert reports.bulk_after == const.ORDER_REPORT_POLL_AFTER  # asked again after the hold
