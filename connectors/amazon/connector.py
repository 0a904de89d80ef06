"""The Amazon connector: the Connector protocol over the Selling Partner API."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from connectors.amazon import const, mapper, payloads
from connectors.amazon.client import (
    AmazonClient,
    Clock,
    Credentials,
    Endpoints,
    Sleep,
    answer_shape,
)
from connectors.amazon.confirmations import Confirmations, UnseenShipment
from connectors.amazon.feeds import FeedPusher
from connectors.amazon.order_report import OrderReports
from connectors.base import (
    CancelRequest,
    Capabilities,
    ChannelListing,
    FulfillmentRequest,
    InvalidValueError,
    Order,
    OrderPage,
    OrderVersionPage,
    PushOutcome,
    StockPushResult,
    StockTarget,
)
from connectors.errors import (
    AuthError,
    NotFoundError,
    PermanentError,
    RetryableError,
    SkipRecordError,
)
from connectors.http import RateLimiters

log = logging.getLogger(__name__)

MALFORMED = (InvalidValueError, KeyError, TypeError, ValueError, AttributeError)
"""What the mappers raise on an order they cannot read."""


def malformed_reason(err: Exception) -> str:
    """What is wrong with a record, without quoting it (it holds buyer data)."""
    if isinstance(err, KeyError):
        return f"missing field {err.args[0]!r}"
    if isinstance(err, InvalidValueError):
        return str(err)
    return type(err).__name__


def _iso(when: datetime) -> str:
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class AmazonSettings:
    """What the connector needs of a `kind = "amazon"` channel file."""

    seller_id: str
    region: str
    marketplace_ids: tuple[str, ...]
    client_id: str
    client_secret: str
    refresh_token: str
    api_base_url: str | None = None  # default: the region's host
    lwa_token_url: str | None = None
    feed_threshold: int = const.FEED_THRESHOLD
    carrier_codes: Mapping[str, str] = field(default_factory=dict)
    has_notifications: bool = False  # an SQS queue is configured
    max_in_flight: int = 2
    confirm_grace: timedelta = const.CONFIRM_VISIBLE_GRACE  # then an unseen shipment is alerted

    def __repr__(self) -> str:
        return (
            f"AmazonSettings(seller_id={self.seller_id!r}, region={self.region!r}, "
            "client_secret='**********', refresh_token='**********', ...)"
        )


class AmazonConnector:
    """One Amazon seller account in its marketplaces, spoken to over the SP-API."""

    def __init__(
        self,
        name: str,
        settings: AmazonSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        limiters: RateLimiters | None = None,
        attempts: int = const.ATTEMPTS,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        feed_deadline_s: float = const.FEED_DEADLINE_S,
    ) -> None:
        self.name = name
        self.settings = settings
        self.capabilities = Capabilities(
            # A push of up to a feed's 25,000 messages is one call: above `feed_threshold` it
            # goes as one feed, below as one patch per listing.
            max_stock_batch=const.FEED_MAX_MESSAGES,
            max_in_flight=max(1, settings.max_in_flight),
            supports_compare_and_swap=False,
            supports_webhooks=settings.has_notifications,
            # confirmShipment takes no idempotency key: an unclear outcome is checked first.
            idempotent_fulfillment=False,
        )
        self.client = AmazonClient(
            channel=name,
            seller_id=settings.seller_id,
            region=settings.region,
            marketplace_ids=settings.marketplace_ids,
            credentials=Credentials(
                settings.client_id, settings.client_secret, settings.refresh_token
            ),
            endpoints=Endpoints(
                api=settings.api_base_url or const.REGION_HOSTS[settings.region],
                token=settings.lwa_token_url or const.LWA_TOKEN_URL,
            ),
            transport=transport,
            limiters=limiters,
            attempts=attempts,
            sleep=sleep,
            clock=clock,
        )
        self.feeds = FeedPusher(self.client, sleep=sleep, clock=clock, deadline_s=feed_deadline_s)
        self.order_reports = OrderReports(self.client, sleep=sleep, clock=clock, now=now)
        self.confirmations = Confirmations(name, now=now, grace=settings.confirm_grace)

    async def check_connection(self) -> None:
        """Prove Login with Amazon gives a token for the seller; AuthError when it does not."""
        await self.client.check_auth()

    # Orders in -------------------------------------------------------------------------------

    async def fetch_orders(self, updated_since: datetime, cursor: str | None) -> OrderPage:
        """searchOrders from `updated_since` minus Amazon's order-data lag, 100 per page."""
        params: dict[str, str | int] = {
            "lastUpdatedAfter": _iso(updated_since - const.ORDER_DATA_LAG),
            "marketplaceIds": ",".join(self.settings.marketplace_ids),
            "includedData": ",".join(const.INCLUDED_DATA),
            "maxResultsPerPage": const.ORDERS_PAGE,
        }
        if cursor:
            params["paginationToken"] = cursor
        body = await self.client.call(
            const.SEARCH_ORDERS, lambda apis: apis.orders.search_orders(**params)
        )
        with answer_shape(self.name, const.SEARCH_ORDERS):
            raw_orders, next_token = mapper.orders_of_page(body)
        orders = []
        for raw in raw_orders:
            try:
                orders.append(mapper.order_from_api(raw))
            except MALFORMED as err:
                order_id = raw.get("orderId") if isinstance(raw, Mapping) else None
                log.warning(
                    "channel %s: order %s left out, malformed: %s",
                    self.name,
                    str(order_id)[:40],
                    malformed_reason(err),
                )
        self.confirmations.check(orders)
        orders.sort(key=lambda order: order.updated_at)
        return OrderPage(orders=tuple(orders), next_cursor=next_token)

    @property
    def bulk_after(self) -> timedelta | None:
        """Polls list from the report only where notifications store most orders first, and
        not while Amazon refuses reports."""
        if not self.settings.has_notifications or self.order_reports.is_refused:
            return None
        return const.ORDER_REPORT_POLL_AFTER

    async def bulk_order_versions(
        self, updated_since: datetime, cursor: str | None
    ) -> OrderVersionPage:
        """The reconcile's list of changed orders, from the All Orders report (order_report.py)."""
        return await self.order_reports.versions(updated_since, cursor)

    async def _raw_order(self, external_id: str, operation: str) -> Mapping[str, object]:
        body = await self.client.call(
            const.GET_ORDER,
            lambda apis: apis.orders.get_order(
                external_id, includedData=",".join(const.INCLUDED_DATA)
            ),
        )
        with answer_shape(self.name, operation):
            raw = body["order"]
            if not isinstance(raw, Mapping):
                raise TypeError("order is not an object")
            return raw

    async def fetch_order(self, external_id: str) -> Order:
        """getOrder; NotFoundError if Amazon has no such order."""
        raw = await self._raw_order(external_id, "fetch_order")
        try:
            order = mapper.order_from_api(raw)
        except MALFORMED as err:
            raise SkipRecordError(
                f"order is malformed: {malformed_reason(err)}",
                channel=self.name,
                operation="fetch_order",
            ) from err
        self.confirmations.check([order])
        return order

    # Stock out -------------------------------------------------------------------------------

    async def push_stock(self, targets: Sequence[StockTarget]) -> Sequence[StockPushResult]:
        """Merchant-fulfilled quantities: one patch per listing, or one feed above the threshold."""
        if len(targets) > const.FEED_MAX_MESSAGES:
            raise PermanentError(
                f"batch of {len(targets)} exceeds a feed's {const.FEED_MAX_MESSAGES} messages",
                channel=self.name,
                operation=const.CREATE_FEED,
            )
        # The latest target per listing wins; each position still gets its result.
        latest = {target.listing_ref: target for target in targets}
        distinct = list(latest.values())
        if len(distinct) > self.settings.feed_threshold:
            results = await self._feed_and_patch(distinct)
        else:
            results = await self._patch_all(distinct)
        by_ref = {result.listing_ref: result for result in results}
        return [by_ref[target.listing_ref] for target in targets]

    async def _feed_and_patch(self, targets: Sequence[StockTarget]) -> list[StockPushResult]:
        """One feed, and beside it a patch for each urgent target (a listing's last units):
        Amazon takes minutes to process a feed, and a buyer of a listing still shown in stock
        meanwhile would be oversold. Many urgent ones (an import) go in the feed too."""
        urgent = [target for target in targets if target.urgent]
        if not urgent or len(urgent) > self.settings.feed_threshold:
            return await self.feeds.push(targets)
        rest = [target for target in targets if not target.urgent]
        # Both run to their end: a feed cut short after createFeed would still be applied.
        patched, fed = await asyncio.gather(
            self._patch_all(urgent), self.feeds.push(rest), return_exceptions=True
        )
        if isinstance(patched, BaseException):
            raise patched
        if isinstance(fed, BaseException):
            raise fed
        return [*patched, *fed]

    def stock_batch_size(self, due: int) -> int:
        """Targets to take in one push when `due` wait (sync/push_policy.StockClaimSizing).

        Above the feed threshold, everything (one feed). Below it, each listing is one patch at
        patchListingsItem's 5/s: take only what the bucket sends at once. Targets claimed
        further ahead would be sent seconds later with the figure of their claim, then sent
        again with the newer one; left pending, each takes every newer figure and goes once.
        """
        if due > self.settings.feed_threshold:
            return const.FEED_MAX_MESSAGES
        return const.PATCH_CLAIM

    def stock_push_parts(self, targets: Sequence[StockTarget]) -> list[list[int]]:
        """The parts of a batch to push on its own (sync/push_policy.StockPushParts): the
        urgent targets apart from the rest, so each urgent listing is free for its next push
        once its patch lands, not once the feed is processed or the other patches, which give
        way to urgent ones at the rate limit, got their turn. Many urgent ones (an import)
        above the feed threshold go in the feed with the rest."""
        whole = list(range(len(targets)))
        urgent = [i for i in whole if targets[i].urgent]
        if not urgent or len(urgent) == len(whole) or len(urgent) > self.settings.feed_threshold:
            return [whole]
        return [urgent, [i for i in whole if not targets[i].urgent]]

    def stock_push_is_slow(self, targets: Sequence[StockTarget]) -> bool:
        """True when `targets` go as a feed (sync/push_policy.SlowStockPushes): Amazon takes
        minutes to process one, and a patch to a listing's last units may go beside it."""
        return len({target.listing_ref for target in targets}) > self.settings.feed_threshold

    async def _patch_all(self, targets: Sequence[StockTarget]) -> list[StockPushResult]:
        slots = asyncio.Semaphore(const.PATCH_CONCURRENCY)
        refused: list[AuthError] = []

        async def one(target: StockTarget) -> StockPushResult:
            async with slots:
                if refused:  # credentials refused: the rest would only be refused too
                    return StockPushResult(target.listing_ref, PushOutcome.RETRY, error="auth")
                try:
                    return await self._patch(target)
                except AuthError as err:
                    refused.append(err)
                    raise

        results = await asyncio.gather(*(one(t) for t in targets), return_exceptions=True)
        if refused:
            raise refused[0]
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [r for r in results if isinstance(r, StockPushResult)]

    async def _patch(self, target: StockTarget) -> StockPushResult:
        body = payloads.patch_body(target.quantity)
        try:
            answer = await self.client.call(
                const.PATCH_LISTING,
                lambda apis: apis.listings.patch_listings_item(
                    self.settings.seller_id,
                    target.listing_ref,
                    body=body,
                    marketplaceIds=",".join(self.settings.marketplace_ids),
                ),
                # Every other patch leaves the bucket tokens for an urgent one to go at once.
                reserve=0.0 if target.urgent else const.URGENT_PATCH_RESERVE,
            )
        except (PermanentError, NotFoundError) as err:
            reason = err.reason if isinstance(err, PermanentError) else err.args[0]
            return StockPushResult(target.listing_ref, PushOutcome.REJECTED, error=reason)
        except RetryableError as err:
            return StockPushResult(target.listing_ref, PushOutcome.RETRY, error=str(err))
        return payloads.patch_result(target.listing_ref, answer)

    async def read_stock(self, listing_refs: Sequence[str]) -> Mapping[str, int]:
        """The merchant-fulfilled quantity of each listing (FBA or unknown ones left out)."""
        slots = asyncio.Semaphore(const.PATCH_CONCURRENCY)

        async def one(sku: str) -> tuple[str, int | None]:
            async with slots:
                try:
                    item = await self.client.call(
                        const.GET_LISTING,
                        lambda apis: apis.listings.get_listings_item(
                            self.settings.seller_id,
                            sku,
                            marketplaceIds=",".join(self.settings.marketplace_ids),
                            includedData="fulfillmentAvailability",
                        ),
                    )
                except NotFoundError:
                    return sku, None
            return sku, mapper.merchant_quantity(item)

        found = await asyncio.gather(*(one(sku) for sku in dict.fromkeys(listing_refs)))
        return {sku: quantity for sku, quantity in found if quantity is not None}

    async def list_listings(self) -> Sequence[ChannelListing]:
        """Every merchant-fulfilled listing of the seller (searchListingsItems, 20 a page)."""
        return [listing async for page in self.listing_pages() for listing in page]

    async def listing_pages(self) -> AsyncIterator[Sequence[ChannelListing]]:
        """The seller's merchant-fulfilled listings, one searchListingsItems page at a time."""
        token: str | None = None
        while True:
            body = await self._listings_page(token)
            with answer_shape(self.name, const.SEARCH_LISTINGS):
                page = [
                    listing
                    for item in body["items"]
                    if (listing := mapper.listing_from_item(item)) is not None
                ]
                pagination = body.get("pagination") or {}
                token = mapper.text(pagination.get("nextToken"))
            yield page
            if token is None:
                return

    async def _listings_page(self, token: str | None) -> dict[str, Any]:
        params: dict[str, str | int] = {
            "marketplaceIds": ",".join(self.settings.marketplace_ids),
            "includedData": "summaries,fulfillmentAvailability",
            "pageSize": 20,
        }
        if token:
            params["pageToken"] = token
        return await self.client.call(
            const.SEARCH_LISTINGS,
            lambda apis: apis.listings.search_listings_items(self.settings.seller_id, **params),
        )

    # Status out ------------------------------------------------------------------------------

    async def _marketplace_of(self, order_id: str) -> str:
        if len(self.settings.marketplace_ids) == 1:
            return self.settings.marketplace_ids[0]
        raw = await self._raw_order(order_id, const.CONFIRM_SHIPMENT)
        channel = raw.get("salesChannel")
        marketplace = channel.get("marketplaceId") if isinstance(channel, Mapping) else None
        return str(marketplace) if marketplace else self.settings.marketplace_ids[0]

    async def push_fulfillment(self, request: FulfillmentRequest) -> str:
        """confirmShipment (v0) with carrier, tracking, ship date and items; answers the package
        reference. Amazon answers 204 before the buyer sees it: the next reads check."""
        marketplace = await self._marketplace_of(request.order_external_id)
        try:
            body = payloads.confirm_shipment_body(request, marketplace, self.settings.carrier_codes)
        except payloads.UnshippableError as err:
            raise PermanentError(
                str(err), channel=self.name, operation=const.CONFIRM_SHIPMENT
            ) from err
        await self.client.call(
            const.CONFIRM_SHIPMENT,
            lambda apis: apis.orders_v0.confirm_shipment(request.order_external_id, **body),
            is_resendable=False,
        )
        reference = str(body["packageDetail"]["packageReferenceId"])
        self.confirmations.remember(request, reference)
        return reference

    async def find_fulfillment(self, request: FulfillmentRequest) -> str | None:
        """The package already on the order for this shipment (ours by reference, or the same
        tracking number and units), else None."""
        raw = await self._raw_order(request.order_external_id, "find_fulfillment")
        try:
            order = mapper.order_from_api(raw)
        except MALFORMED as err:
            raise SkipRecordError(
                f"order is malformed: {malformed_reason(err)}",
                channel=self.name,
                operation="find_fulfillment",
            ) from err
        return payloads_match(order, request)

    async def cancel_order(self, request: CancelRequest) -> None:
        """Not offered: the SP-API has no seller cancellation of an order in 2026-01-01 or v0."""
        raise PermanentError(
            "Amazon orders are cancelled in Seller Central (the SP-API has no cancel call)",
            channel=self.name,
            operation="cancel_order",
        )

    def unseen_shipments(self) -> Sequence[UnseenShipment]:
        """Shipments confirmed (204) that Amazon's order still does not show: for status."""
        return self.confirmations.unseen()

    async def read_back_shipments(self) -> Sequence[UnseenShipment]:
        """getOrder for each order whose confirmation is due a check (searchOrders would not
        return an order a dropped confirmation left unchanged); answer what is still unseen."""
        for order_id in self.confirmations.due(const.READ_BACK_MAX):
            try:
                raw = await self._raw_order(order_id, "read_back_shipments")
            except NotFoundError:
                self.confirmations.forget(order_id)
                continue
            try:
                order = mapper.order_from_api(raw)
            except MALFORMED as err:
                log.warning(
                    "channel %s: order %s read back malformed: %s",
                    self.name,
                    order_id[:40],
                    malformed_reason(err),
                )
                self.confirmations.forget(order_id)
                continue
            self.confirmations.check([order])
        return self.confirmations.unseen()

    async def aclose(self) -> None:
        """Release connections."""
        await self.client.aclose()


def payloads_match(order: Order, request: FulfillmentRequest) -> str | None:
    """The reference of the order's package that is this shipment, if any."""
    reference = payloads.package_reference(request.key)
    wanted = {line.external_line_id: line.quantity for line in request.lines if line.quantity}
    tracking = (request.tracking_number or "").strip().casefold()
    for shipment in order.shipments:
        if shipment.external_id == reference:
            return shipment.external_id
        units = {line.external_line_id: line.quantity for line in shipment.lines}
        same_tracking = (shipment.tracking_number or "").strip().casefold() == tracking
        if tracking and same_tracking and units == wanted:
            return shipment.external_id
    return None
