"""The Feeds API and the document store behind it (CHANNELS.md, "Stock push": createFeedDocument
-> PUT the bytes to the URL within 5 minutes -> createFeed -> poll getFeed until DONE, FATAL or
CANCELLED -> getFeedDocument for the processing report).

The upload and download URLs point at the sandbox itself (`/_feeds/...`), presigned as S3's
are (presign.py): they expire, and an upload must carry the Content-Type declared at
createFeedDocument (S3 answers 403 SignatureDoesNotMatch otherwise). Those transfers are not
SP-API calls and are not rate-limited. A feed waits `queue_s` IN_QUEUE, then `processing_s`
IN_PROGRESS, then is processed at once (listing changes applied, report stored, optionally gzip);
the state advances whenever the sandbox is looked at, so no background task runs.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.amazon.api import Answer, Call
from sandbox.amazon.errors import invalid_input, not_found
from sandbox.amazon.feed_processing import FeedFatalError, fatal_report, process_listings_feed
from sandbox.amazon.model import Clock, Feed, FeedDocument, iso
from sandbox.amazon.presign import Presigner, s3_error

if TYPE_CHECKING:
    from sandbox.amazon.app import AmazonSandbox

FEED_TYPES = frozenset({"JSON_LISTINGS_FEED"})
"""Feed types the sandbox processes (the XML and flat-file inventory feeds were removed on
2025-07-31)."""
REPORT_CONTENT_TYPE = "application/json; charset=UTF-8"


class FeedDesk:
    """Documents and feeds of one seller account."""

    def __init__(self, clock: Clock, key: bytes) -> None:
        self.clock = clock
        self.presigner = Presigner(clock, key)
        self.documents: dict[str, FeedDocument] = {}
        self.feeds: dict[str, Feed] = {}
        self._numbers = iter(range(50_001_000_000, 1 << 62))

    def next_feed_id(self) -> str:
        """A new feed id (Amazon's are decimal numbers)."""
        return str(next(self._numbers))

    def url(self, base_url: str, kind: str, document: FeedDocument, lifetime_s: float) -> str:
        """A presigned upload or download URL."""
        return self.presigner.url(
            base_url, f"/_feeds/{kind}", document.document_id, document.content_type, lifetime_s
        )

    def new_document(self, content_type: str) -> FeedDocument:
        """An empty document slot."""
        document = FeedDocument(
            document_id=f"amzn1.tortuga.4.na.{uuid.uuid4()}",
            content_type=content_type,
            created_at=self.clock.now(),
        )
        self.documents[document.document_id] = document
        return document

    def advance(self, sandbox: AmazonSandbox, feed: Feed) -> None:
        """Move a feed along its timeline; process it when its time comes."""
        if feed.status in ("DONE", "FATAL", "CANCELLED"):
            return
        knobs = sandbox.faults.settings.feeds
        elapsed = self.clock.monotonic() - feed.created_mono
        if elapsed < knobs.queue_s:
            return
        if feed.started_at is None:
            feed.started_at = self.clock.now()
            feed.status = "IN_PROGRESS"
        if elapsed < knobs.queue_s + knobs.processing_s:
            return
        feed.ended_at = self.clock.now()
        if feed.forced_outcome == "CANCELLED":
            feed.status = "CANCELLED"
            return
        document = self.documents.get(feed.input_document_id)
        try:
            if feed.forced_outcome == "FATAL":
                raise FeedFatalError("The feed could not be processed (sandbox fault).")
            if document is None or document.data is None:
                raise FeedFatalError("The feed document was never uploaded.")
            outcome = process_listings_feed(sandbox, feed.feed_id, document.data)
        except FeedFatalError as err:
            feed.status = "FATAL"
            report = fatal_report(sandbox.store.seller_id, feed.feed_id, str(err))
        else:
            feed.status = "DONE"
            feed.messages, feed.errors = outcome.messages, outcome.errors
            report = outcome.report
        result = self.new_document(REPORT_CONTENT_TYPE)
        data = json.dumps(report).encode("utf-8")
        result.compressed = knobs.gzip_reports
        result.data = gzip.compress(data) if knobs.gzip_reports else data
        feed.result_document_id = result.document_id

    def advance_all(self, sandbox: AmazonSandbox) -> None:
        """Advance every unfinished feed."""
        for feed in list(self.feeds.values()):
            self.advance(sandbox, feed)


def _feed_view(feed: Feed) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "feedId": feed.feed_id,
        "feedType": feed.feed_type,
        "marketplaceIds": feed.marketplace_ids,
        "createdTime": iso(feed.created_at),
        "processingStatus": feed.status,
    }
    if feed.started_at is not None:
        shown["processingStartTime"] = iso(feed.started_at)
    if feed.ended_at is not None:
        shown["processingEndTime"] = iso(feed.ended_at)
    if feed.result_document_id is not None:
        shown["resultFeedDocumentId"] = feed.result_document_id
    return shown


def create_feed_document(sandbox: AmazonSandbox, call: Call) -> Answer:
    """POST /feeds/2021-06-30/documents: an upload URL valid for `upload_expiry_s`."""
    body = call.body
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("contentType"), str)
        or not body["contentType"]
    ):
        raise invalid_input("contentType is required")
    desk = sandbox.feeds
    document = desk.new_document(body["contentType"])
    lifetime = sandbox.faults.settings.feeds.upload_expiry_s
    return Answer(
        201,
        {
            "feedDocumentId": document.document_id,
            "url": desk.url(call.base_url, "upload", document, lifetime),
        },
    )


def create_feed(sandbox: AmazonSandbox, call: Call) -> Answer:
    """POST /feeds/2021-06-30/feeds: 202 with the feed id."""
    body = call.body
    if not isinstance(body, dict):
        raise invalid_input("the body must be a JSON object")
    feed_type, document_id = body.get("feedType"), body.get("inputFeedDocumentId")
    markets = body.get("marketplaceIds")
    if not isinstance(feed_type, str) or not isinstance(document_id, str):
        raise invalid_input("feedType and inputFeedDocumentId are required")
    if not isinstance(markets, list) or not 1 <= len(markets) <= 25:
        raise invalid_input("marketplaceIds must list 1 to 25 marketplaces")
    unknown = [m for m in markets if m not in sandbox.store.marketplace_ids]
    if unknown:
        raise invalid_input(f"marketplaceIds: {unknown[0]} is not a marketplace of this seller")
    if feed_type not in FEED_TYPES:
        raise invalid_input(f"feedType {feed_type} is not supported; use JSON_LISTINGS_FEED")
    desk = sandbox.feeds
    if document_id not in desk.documents:
        raise invalid_input(f"inputFeedDocumentId {document_id} is not a document of this seller")
    outcomes = sandbox.faults.feed_outcomes
    feed = Feed(
        feed_id=desk.next_feed_id(),
        feed_type=feed_type,
        marketplace_ids=list(markets),
        input_document_id=document_id,
        created_at=desk.clock.now(),
        created_mono=desk.clock.monotonic(),
        forced_outcome=outcomes.popleft() if outcomes else None,
    )
    desk.feeds[feed.feed_id] = feed
    desk.advance(sandbox, feed)
    return Answer(202, {"feedId": feed.feed_id})


def get_feed(sandbox: AmazonSandbox, call: Call) -> Answer:
    """GET /feeds/2021-06-30/feeds/{feedId}."""
    feed = sandbox.feeds.feeds.get(call.path["feedId"])
    if feed is None:
        raise not_found(f"No feed found for feedId {call.path['feedId']}")
    sandbox.feeds.advance(sandbox, feed)
    return Answer(200, _feed_view(feed))


def get_feed_document(sandbox: AmazonSandbox, call: Call) -> Answer:
    """GET /feeds/2021-06-30/documents/{feedDocumentId}: a download URL valid 5 minutes."""
    desk = sandbox.feeds
    document = desk.documents.get(call.path["feedDocumentId"])
    if document is None:
        raise not_found(f"No document found for feedDocumentId {call.path['feedDocumentId']}")
    shown: dict[str, Any] = {
        "feedDocumentId": document.document_id,
        "url": desk.url(call.base_url, "download", document, 300),
    }
    if document.compressed:
        shown["compressionAlgorithm"] = "GZIP"
    return Answer(200, shown)


def _presigned(request: Request) -> tuple[AmazonSandbox, FeedDocument] | Response:
    sandbox: AmazonSandbox = request.app.state.sandbox
    desk = sandbox.feeds
    document = desk.documents.get(request.path_params["document_id"])
    if document is None:
        return s3_error(403, "AccessDenied", "Access Denied")
    content_type = document.content_type
    if request.method == "PUT":
        content_type = request.headers.get("content-type", "")
    refusal = desk.presigner.refusal(
        request.query_params,
        document.document_id,
        content_type,
        mismatch_hint="Check the Content-Type: it must be the one given to createFeedDocument.",
    )
    if refusal is not None:
        return refusal
    return sandbox, document


async def upload(request: Request) -> Response:
    """PUT a feed document's bytes to its presigned URL."""
    found = _presigned(request)
    if isinstance(found, Response):
        return found
    sandbox, document = found
    document.data = await request.body()
    sandbox.transfers["upload"] += 1
    etag = hashlib.md5(document.data, usedforsecurity=False).hexdigest()
    return Response(status_code=200, headers={"ETag": f'"{etag}"'})


async def download(request: Request) -> Response:
    """GET a document's bytes from its presigned URL."""
    found = _presigned(request)
    if isinstance(found, Response):
        return found
    sandbox, document = found
    sandbox.transfers["download"] += 1
    return Response(document.data or b"", media_type=document.content_type)


def transfer_routes() -> list[Route]:
    """The presigned-URL routes (S3's part of the flow)."""
    return [
        Route("/_feeds/upload/{document_id}", upload, methods=["PUT"]),
        Route("/_feeds/download/{document_id}", download, methods=["GET"]),
    ]
