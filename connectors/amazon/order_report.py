"""Which orders changed in a long window, from Amazon's order report: the reconcile's list.

Why: searchOrders gives 100 orders a call at 0.0056 calls/s, a page every 3 minutes once its
burst of 20 is spent: about 2,000 orders an hour. A reconcile over a window holding more (a busy
day, or a poll that fell behind while notifications were lost) read for hours; the chaos run's
end phase spent its hour on it. The All Orders report by last update
(GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL) lists every order of up to 30 days in one
document, for createReport, getReport until it is done, getReportDocument and the download. The
reconcile then reads with getOrder only the orders the store lacks at the version the report
gives (sync/polling.py), at 0.5 a second.

Not for every poll: createReport and getReportDocument run at one a minute, Amazon takes
minutes to produce a report, and the report has no buyer data or prices. Polls stay on
searchOrders, whose pages carry each order in full.

Versions: the report's `last-updated-date` has whole seconds, as searchOrders' `lastUpdatedTime`.
A notice summary stores the same change just below that second (mapper_notice.provisional_time).
So each version is given as the earliest time the store may date that change, its second minus
`mapper_notice.JUST_BELOW`: a store holding that change, from a full read or a summary, holds it
at or after that time; one holding an earlier change, before it.

Paging: the versions of the last few reports read are kept in memory (an id and a time per
order) and handed out 100 a page; the cursor is `report id/offset`. A poll and a reconcile may
page through two reports at once: with one report held, each would have read its document again
at every page, and getReportDocument allows one call a minute. A cursor of a report no longer in
memory (a restart) reads that report's document again.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import logging
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from urllib.parse import quote

from connectors.amazon import const
from connectors.amazon.client import AmazonClient, Clock, Sleep, answer_shape
from connectors.amazon.mapper_notice import JUST_BELOW
from connectors.base import OrderVersion, OrderVersionPage
from connectors.errors import AuthError, BulkListRefusedError, PermanentError, RetryableError

log = logging.getLogger(__name__)

ORDER_ID_COLUMN = "amazon-order-id"
UPDATED_COLUMN = "last-updated-date"


class OrderReports:
    """Order versions of one seller from All Orders reports."""

    def __init__(
        self,
        client: AmazonClient,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        deadline_s: float = const.REPORT_DEADLINE_S,
    ) -> None:
        self._client = client
        self._sleep = sleep
        self._clock = clock
        self._now = now
        self._deadline_s = deadline_s
        self._refused_at: float | None = None
        self._held: OrderedDict[str, Sequence[OrderVersion]] = OrderedDict()  # newest last

    @property
    def is_refused(self) -> bool:
        """Amazon refused createReport within the last `REPORT_REFUSAL_HOLD_S`."""
        return (
            self._refused_at is not None
            and self._clock() - self._refused_at < const.REPORT_REFUSAL_HOLD_S
        )

    async def versions(self, updated_since: datetime, cursor: str | None) -> OrderVersionPage:
        """A page of the versions of orders updated at or after `updated_since`, oldest first.

        BulkListRefusedError when Amazon refuses createReport (an app without the Inventory and
        Order Tracking role), and for `REPORT_REFUSAL_HOLD_S` after, without asking."""
        if cursor is None:
            report_id = await self._create(updated_since)
            offset = 0
        else:
            report_id, offset = _parse_cursor(cursor, self._client.channel)
        versions = await self._versions_of(report_id)
        end = offset + const.ORDER_REPORT_PAGE
        return OrderVersionPage(
            versions=versions[offset:end],
            next_cursor=f"{report_id}/{end}" if end < len(versions) else None,
        )

    async def _create(self, updated_since: datetime) -> str:
        now = self._now()
        start = updated_since - const.ORDER_DATA_LAG
        if start < now - const.ORDER_REPORT_MAX_WINDOW:
            log.warning(
                "channel %s: the order report covers the last %d days, not since %s",
                self._client.channel,
                const.ORDER_REPORT_MAX_WINDOW.days,
                start.isoformat(),
            )
            start = now - const.ORDER_REPORT_MAX_WINDOW + const.ORDER_DATA_LAG
        client = self._client
        if self.is_refused:
            raise BulkListRefusedError(
                "order reports were refused lately", channel=client.channel, operation="report"
            )
        try:
            created = await client.call(
                const.CREATE_REPORT,
                lambda apis: apis.reports._request(
                    const.REPORTS_PATH,
                    data={
                        "reportType": const.ORDER_REPORT_TYPE,
                        "marketplaceIds": list(client.marketplace_ids),
                        "dataStartTime": _iso(start),
                    },
                    params={"method": "POST"},
                    add_marketplace=False,
                ),
            )
        except AuthError as err:
            if err.operation != const.CREATE_REPORT:
                raise  # Login with Amazon refused the seller: the channel's own problem
            self._refused_at = self._clock()
            log.warning(
                "channel %s: Amazon refused the order report (%s); reconciles and late polls read "
                "searchOrders pages instead. Grant the app the Inventory and Order Tracking role.",
                client.channel,
                err,
            )
            raise BulkListRefusedError(
                f"createReport refused: {err}", channel=client.channel, operation="report"
            ) from err
        with answer_shape(client.channel, const.CREATE_REPORT):
            report_id = str(created["reportId"])
        log.info(
            "channel %s: order report %s asked for, since %s",
            client.channel,
            report_id,
            _iso(start),
        )
        return report_id

    async def _versions_of(self, report_id: str) -> Sequence[OrderVersion]:
        held = self._held.get(report_id)
        if held is not None:
            self._held.move_to_end(report_id)
            return held
        document_id = await self._wait(report_id)
        versions: Sequence[OrderVersion] = ()
        if document_id is not None:
            versions = await self._read_document(document_id)
        self._held[report_id] = versions
        while len(self._held) > const.ORDER_REPORTS_HELD:
            self._held.popitem(last=False)
        log.info(
            "channel %s: order report %s lists %d orders",
            self._client.channel,
            report_id,
            len(versions),
        )
        return versions

    async def _wait(self, report_id: str) -> str | None:
        """The report's document id once it is done; None when Amazon found nothing to report."""
        started = self._clock()
        pause = const.REPORT_POLL_FIRST_S
        while True:
            report = await self._client.call(
                const.GET_REPORT, lambda apis: apis.reports.get_report(report_id)
            )
            status = str(report.get("processingStatus"))
            if status == const.REPORT_DONE:
                with answer_shape(self._client.channel, const.GET_REPORT):
                    return str(report["reportDocumentId"])
            if status == const.REPORT_NO_DATA:
                return None
            if status == const.REPORT_FAILED:
                raise RetryableError(
                    f"order report {report_id} ended FATAL",
                    channel=self._client.channel,
                    operation=const.GET_REPORT,
                )
            if self._clock() - started >= self._deadline_s:
                raise RetryableError(
                    f"order report {report_id} still {status} after {self._deadline_s:.0f} s",
                    channel=self._client.channel,
                    operation=const.GET_REPORT,
                )
            await self._sleep(pause)
            pause = min(pause * 1.5, const.REPORT_POLL_MAX_S)

    async def _read_document(self, document_id: str) -> Sequence[OrderVersion]:
        client = self._client
        document = await client.call(
            const.GET_REPORT_DOCUMENT,
            lambda apis: apis.reports._request(
                const.REPORT_DOCUMENT_PATH.format(quote(document_id, safe="")),
                params={"method": "GET"},
                add_marketplace=False,
            ),
        )
        with answer_shape(client.channel, const.GET_REPORT_DOCUMENT):
            url = str(document["url"])
        content = await client.download_document(url, const.DOWNLOAD_REPORT_DOCUMENT)
        try:
            return versions_of_document(content, document.get("compressionAlgorithm"))
        except (ValueError, OSError, EOFError, zlib.error) as err:
            raise PermanentError(
                f"order report {document_id} unreadable: {err}",
                channel=client.channel,
                operation=const.DOWNLOAD_REPORT_DOCUMENT,
            ) from err


def versions_of_document(content: bytes, compression: object) -> list[OrderVersion]:
    """The order versions an All Orders flat file lists (a row per item), oldest change first.

    Only the order id and the change time are read, both ASCII, so the document's encoding
    (UTF-8 or a marketplace's Latin-1) does not matter. Raises ValueError for a document without
    those columns; rows with an empty id or an unreadable time are left out and counted.
    """
    if compression == "GZIP" or content[:2] == b"\x1f\x8b":
        content = gzip.decompress(content)
    rows = csv.DictReader(
        io.StringIO(content.decode("utf-8", errors="replace")),
        delimiter="\t",
        quoting=csv.QUOTE_NONE,
    )
    header = [name.strip().lstrip("\ufeff") for name in rows.fieldnames or ()]
    for column in (ORDER_ID_COLUMN, UPDATED_COLUMN):
        if column not in header:
            raise ValueError(f"the report has no {column} column")
    rows.fieldnames = header
    newest: dict[str, datetime] = {}
    skipped = 0
    for row in rows:
        order_id = (row.get(ORDER_ID_COLUMN) or "").strip()
        try:
            changed = datetime.fromisoformat((row.get(UPDATED_COLUMN) or "").strip())
        except ValueError:
            changed = None
        if not order_id or changed is None or changed.tzinfo is None:
            skipped += 1
            continue
        changed = changed.astimezone(UTC)
        if order_id not in newest or newest[order_id] < changed:
            newest[order_id] = changed
    if skipped:
        log.warning("order report: %d rows without an order id or a change time left out", skipped)
    versions = [
        OrderVersion(order_id, changed - JUST_BELOW) for order_id, changed in newest.items()
    ]
    versions.sort(key=lambda version: (version.updated_at, version.external_id))
    return versions


def _parse_cursor(cursor: str, channel: str) -> tuple[str, int]:
    report_id, _, offset = cursor.rpartition("/")
    if not report_id or not offset.isdigit():
        raise PermanentError(
            f"not an order report cursor: {cursor[:60]!r}", channel=channel, operation="report"
        )
    return report_id, int(offset)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
