"""The Reports API 2021-06-30 for the one report type the sandbox produces, the "All Orders Report
by Last Update" flat file (order_report.py): createReport -> poll getReport until DONE, CANCELLED
or FATAL -> getReportDocument -> GET the presigned URL (gunzip when compressionAlgorithm is GZIP).

The window: dataEndTime defaults to now and dataStartTime to 30 days before dataEndTime. Neither
may be in the future (the model: "must be prior to or equal to the current date and time"), the
end may not precede the start, and the window may not exceed 30 days (Amazon's limit for this
report). Both are kept to whole seconds, as order times are; both bounds are inclusive.

A report waits `queue_s` IN_QUEUE, then `processing_s` IN_PROGRESS, then is produced at once from
the orders as they are at that moment (an order updated after createReport has left the window
and belongs to a later one); the state advances whenever the sandbox is looked at, so no
background task runs. Amazon's quirk: a report that finds no data ends CANCELLED, not DONE, and
has no document (the model's processingStatus table: "an automatic cancellation if there is no
data to return"). `next_outcomes` forces FATAL or CANCELLED on the next reports, neither with a
document.

The document's URL points at the sandbox itself (`/_reports/download/{reportDocumentId}`),
presigned (presign.py) and valid 5 minutes as the model says; downloads are not SP-API calls and
are not rate-limited. With `enableContentEncodingUrlHeader=true`, a GZIP document downloads with
`Content-Encoding: gzip`.
"""

from __future__ import annotations

import gzip
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.amazon.api import Answer, Call, parse_time
from sandbox.amazon.errors import invalid_input, not_found
from sandbox.amazon.model import Clock, Report, ReportDocument, iso
from sandbox.amazon.order_report import CONTENT_TYPE, REPORT_TYPE, render, select_orders
from sandbox.amazon.presign import ENCODING_PARAMETER, Presigner, s3_error

if TYPE_CHECKING:
    from sandbox.amazon.app import AmazonSandbox

MAX_WINDOW = timedelta(days=30)
URL_LIFETIME_S = 300.0
DOWNLOAD_ROUTE = "/_reports/download"
FINISHED = frozenset({"DONE", "CANCELLED", "FATAL"})


class ReportDesk:
    """Reports and report documents of one seller account."""

    def __init__(self, clock: Clock, key: bytes) -> None:
        self.clock = clock
        self.presigner = Presigner(clock, key)
        self.reports: dict[str, Report] = {}
        self.documents: dict[str, ReportDocument] = {}
        self._numbers = iter(range(60_001_000_000, 1 << 62))

    def next_report_id(self) -> str:
        """A new report id (Amazon's are decimal numbers)."""
        return str(next(self._numbers))

    def advance(self, sandbox: AmazonSandbox, report: Report) -> None:
        """Move a report along its timeline; produce it when its time comes."""
        if report.status in FINISHED:
            return
        knobs = sandbox.faults.settings.reports
        elapsed = self.clock.monotonic() - report.created_mono
        if elapsed < knobs.queue_s:
            return
        if report.started_at is None:
            report.started_at = self.clock.now()
            report.status = "IN_PROGRESS"
        if elapsed < knobs.queue_s + knobs.processing_s:
            return
        report.ended_at = self.clock.now()
        if report.forced_outcome is not None:
            report.status = report.forced_outcome
            return
        orders = select_orders(
            sandbox.store.orders.values(),
            report.data_start,
            report.data_end,
            report.marketplace_ids,
        )
        if not orders:
            report.status = "CANCELLED"
            return
        text = render(orders).encode("utf-8")
        document = ReportDocument(
            document_id=f"amzn1.spdoc.1.4.na.{uuid.uuid4()}",
            content_type=CONTENT_TYPE,
            created_at=report.ended_at,
            data=gzip.compress(text) if knobs.gzip else text,
            compressed=knobs.gzip,
        )
        self.documents[document.document_id] = document
        report.document_id = document.document_id
        report.orders = len(orders)
        report.status = "DONE"

    def advance_all(self, sandbox: AmazonSandbox) -> None:
        """Advance every unfinished report."""
        for report in list(self.reports.values()):
            self.advance(sandbox, report)


def _report_view(report: Report) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "reportId": report.report_id,
        "reportType": report.report_type,
        "dataStartTime": iso(report.data_start),
        "dataEndTime": iso(report.data_end),
        "marketplaceIds": report.marketplace_ids,
        "createdTime": iso(report.created_at),
        "processingStatus": report.status,
    }
    if report.started_at is not None:
        shown["processingStartTime"] = iso(report.started_at)
    if report.ended_at is not None:
        shown["processingEndTime"] = iso(report.ended_at)
    if report.document_id is not None:
        shown["reportDocumentId"] = report.document_id
    return shown


def _time(body: dict[str, Any], name: str) -> datetime | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid_input(f"{name} must be an ISO 8601 date-time string")
    return parse_time(name, value).replace(microsecond=0)


def _window(now: datetime, body: dict[str, Any]) -> tuple[datetime, datetime]:
    """(dataStartTime, dataEndTime) with Amazon's defaults; 400 naming what is wrong."""
    end = _time(body, "dataEndTime") or now.replace(microsecond=0)
    start = _time(body, "dataStartTime") or end - MAX_WINDOW
    for name, moment in (("dataStartTime", start), ("dataEndTime", end)):
        if moment > now:
            raise invalid_input(
                f"{name} {iso(moment)} is in the future: it must be at or before the current "
                f"time ({iso(now)})"
            )
    if end < start:
        raise invalid_input(
            f"dataEndTime {iso(end)} is before dataStartTime {iso(start)}: it must be equal to "
            "or after it"
        )
    if end - start > MAX_WINDOW:
        raise invalid_input(
            f"the window from dataStartTime {iso(start)} to dataEndTime {iso(end)} is longer "
            f"than 30 days, the most {REPORT_TYPE} covers"
        )
    return start, end


def create_report(sandbox: AmazonSandbox, call: Call) -> Answer:
    """POST /reports/2021-06-30/reports: 202 with the report id."""
    body = call.body
    if not isinstance(body, dict):
        raise invalid_input("the body must be a JSON object")
    report_type, markets = body.get("reportType"), body.get("marketplaceIds")
    if not isinstance(report_type, str) or not report_type:
        raise invalid_input("reportType is required")
    if (
        not isinstance(markets, list)
        or not 1 <= len(markets) <= 25
        or not all(isinstance(m, str) for m in markets)
    ):
        raise invalid_input("marketplaceIds must list 1 to 25 marketplaces")
    unknown = [m for m in markets if m not in sandbox.store.marketplace_ids]
    if unknown:
        raise invalid_input(f"marketplaceIds: {unknown[0]} is not a marketplace of this seller")
    if report_type != REPORT_TYPE:
        raise invalid_input(
            f"reportType {report_type} is not produced by the sandbox; it produces {REPORT_TYPE}"
        )
    desk = sandbox.reports
    start, end = _window(desk.clock.now(), body)
    outcomes = sandbox.faults.report_outcomes
    report = Report(
        report_id=desk.next_report_id(),
        report_type=report_type,
        marketplace_ids=list(markets),
        data_start=start,
        data_end=end,
        created_at=desk.clock.now(),
        created_mono=desk.clock.monotonic(),
        forced_outcome=outcomes.popleft() if outcomes else None,
    )
    desk.reports[report.report_id] = report
    desk.advance(sandbox, report)
    return Answer(202, {"reportId": report.report_id})


def get_report(sandbox: AmazonSandbox, call: Call) -> Answer:
    """GET /reports/2021-06-30/reports/{reportId}."""
    report = sandbox.reports.reports.get(call.path["reportId"])
    if report is None:
        raise not_found(f"No report found for reportId {call.path['reportId']}")
    sandbox.reports.advance(sandbox, report)
    return Answer(200, _report_view(report))


def get_report_document(sandbox: AmazonSandbox, call: Call) -> Answer:
    """GET /reports/2021-06-30/documents/{reportDocumentId}: a download URL valid 5 minutes."""
    desk = sandbox.reports
    document_id = call.path["reportDocumentId"]
    document = desk.documents.get(document_id)
    if document is None:
        raise not_found(f"No document found for reportDocumentId {document_id}")
    wants_encoding = call.query.one("enableContentEncodingUrlHeader") == "true"
    url = desk.presigner.url(
        call.base_url,
        DOWNLOAD_ROUTE,
        document.document_id,
        document.content_type,
        URL_LIFETIME_S,
        encoding="gzip" if wants_encoding and document.compressed else "",
    )
    shown: dict[str, Any] = {"reportDocumentId": document.document_id, "url": url}
    if document.compressed:
        shown["compressionAlgorithm"] = "GZIP"
    return Answer(200, shown)


async def download(request: Request) -> Response:
    """GET a report document's bytes from its presigned URL."""
    sandbox: AmazonSandbox = request.app.state.sandbox
    desk = sandbox.reports
    document = desk.documents.get(request.path_params["document_id"])
    if document is None:
        return s3_error(403, "AccessDenied", "Access Denied")
    refusal = desk.presigner.refusal(
        request.query_params, document.document_id, document.content_type
    )
    if refusal is not None:
        return refusal
    sandbox.transfers["report_download"] += 1
    encoding = request.query_params.get(ENCODING_PARAMETER)
    headers = {"Content-Encoding": encoding} if encoding else None
    return Response(document.data, media_type=document.content_type, headers=headers)


def report_transfer_routes() -> list[Route]:
    """The presigned download route of report documents (S3's part of the flow)."""
    return [Route(f"{DOWNLOAD_ROUTE}/{{document_id}}", download, methods=["GET"])]
