"""Bulk stock through one JSON_LISTINGS_FEED: document, upload, feed, wait, read the report.

CHANNELS.md: createFeedDocument -> PUT the bytes to the presigned URL within 5 minutes ->
createFeed -> poll getFeed until DONE/FATAL/CANCELLED -> getFeedDocument for the processing
report (maybe gzip). Each target is one PATCH message; the report's ERROR issues are Amazon's
per-listing refusals (REJECTED with its message), everything else in a DONE feed applied.

The package's wrappers for createFeedDocument and createFeed put stray keys in the body (its
own path, a second `MarketplaceIds`), and its getFeedDocument downloads and decodes the report
itself (ISO-8859-1 by default): those three go through its generic request method with exactly
the bodies Amazon's model defines, and the documents move through our own client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from urllib.parse import quote

from connectors.amazon import const, payloads
from connectors.amazon.client import AmazonClient, Clock, Sleep, answer_shape
from connectors.base import PushOutcome, StockPushResult, StockTarget
from connectors.errors import RetryableError

log = logging.getLogger(__name__)


class FeedPusher:
    """Sends batches of stock targets as feeds for one seller."""

    def __init__(
        self,
        client: AmazonClient,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        deadline_s: float = const.FEED_DEADLINE_S,
    ) -> None:
        self._client = client
        self._sleep = sleep
        self._clock = clock
        self._deadline_s = deadline_s
        self.last_feed_id: str | None = None

    async def push(self, targets: Sequence[StockTarget]) -> list[StockPushResult]:
        """One feed for `targets` (distinct listings); one result per target, in order."""
        client = self._client
        skus = [target.listing_ref for target in targets]
        document = payloads.encode_document(payloads.listings_feed(client.seller_id, targets))
        created = await client.call(
            const.CREATE_FEED_DOCUMENT,
            lambda apis: apis.feeds._request(
                const.FEED_DOCUMENTS_PATH,
                data={"contentType": const.FEED_CONTENT_TYPE},
                params={"method": "POST"},
                add_marketplace=False,
            ),
        )
        with answer_shape(client.channel, const.CREATE_FEED_DOCUMENT):
            document_id, url = str(created["feedDocumentId"]), str(created["url"])
        await client.upload_document(url, document, const.FEED_CONTENT_TYPE)
        feed = await client.call(
            const.CREATE_FEED,
            lambda apis: apis.feeds._request(
                const.FEEDS_PATH,
                data={
                    "feedType": const.FEED_TYPE,
                    "marketplaceIds": list(client.marketplace_ids),
                    "inputFeedDocumentId": document_id,
                },
                params={"method": "POST"},
                add_marketplace=False,
            ),
        )
        with answer_shape(client.channel, const.CREATE_FEED):
            feed_id = str(feed["feedId"])
        self.last_feed_id = feed_id
        log.info("channel %s: feed %s sent with %d listings", client.channel, feed_id, len(skus))
        status, report_id = await self._wait(feed_id)
        if status is None:
            return _all(targets, PushOutcome.RETRY, f"feed {feed_id} still processing; sent again")
        if status == "CANCELLED":
            return _all(targets, PushOutcome.RETRY, f"feed {feed_id} was cancelled")
        errors: dict[int, str] = {}
        feed_level: list[str] = []
        if report_id is not None:
            report = await self._report(report_id)
            errors, feed_level = payloads.report_errors(report, skus)
        elif status == const.FEED_DONE:
            raise RetryableError(
                f"feed {feed_id} is DONE without a processing report",
                channel=client.channel,
                operation=const.GET_FEED,
            )
        # FATAL: "some, none, or all of the operations may have completed": the messages the
        # report refused are refused, the others are sent again.
        other = PushOutcome.APPLIED if status == const.FEED_DONE else PushOutcome.RETRY
        reason = payloads.excerpt(feed_level) or f"feed {feed_id} ended {status}"
        return [
            StockPushResult(target.listing_ref, PushOutcome.REJECTED, error=errors[position])
            if position in errors
            else StockPushResult(
                target.listing_ref,
                other,
                error=None if other is PushOutcome.APPLIED else reason,
            )
            for position, target in enumerate(targets, start=1)
        ]

    async def _wait(self, feed_id: str) -> tuple[str | None, str | None]:
        """(final processingStatus, resultFeedDocumentId), or (None, None) past the deadline."""
        started = self._clock()
        pause = const.FEED_POLL_FIRST_S
        while True:
            await self._sleep(pause)
            feed = await self._client.call(
                const.GET_FEED,
                lambda apis: apis.feeds.get_feed(feed_id),  # the package quotes it
            )
            status = str(feed.get("processingStatus"))
            if status == const.FEED_DONE or status in const.FEED_FAILED:
                report = feed.get("resultFeedDocumentId")
                return status, str(report) if report else None
            if self._clock() - started >= self._deadline_s:
                log.warning(
                    "channel %s: feed %s still %s after %.0f s; its listings go again",
                    self._client.channel,
                    feed_id,
                    status,
                    self._deadline_s,
                )
                return None, None
            pause = min(pause * 1.5, const.FEED_POLL_MAX_S)

    async def _report(self, document_id: str) -> dict[str, object]:
        document = await self._client.call(
            const.GET_FEED_DOCUMENT,
            lambda apis: apis.feeds._request(
                const.FEED_DOCUMENT_PATH.format(quote(document_id, safe="")),
                params={"method": "GET"},
                add_marketplace=False,
            ),
        )
        with answer_shape(self._client.channel, const.GET_FEED_DOCUMENT):
            url = str(document["url"])
        content = await self._client.download_document(url)
        try:
            return payloads.decode_document(content, document.get("compressionAlgorithm"))
        except (ValueError, UnicodeDecodeError) as err:
            raise RetryableError(
                f"processing report unreadable ({err})",
                channel=self._client.channel,
                operation=const.DOWNLOAD_FEED_DOCUMENT,
            ) from err


def _all(targets: Sequence[StockTarget], outcome: PushOutcome, error: str) -> list[StockPushResult]:
    return [StockPushResult(target.listing_ref, outcome, error=error) for target in targets]
