"""The Shopify connector: the Connector protocol over the Admin GraphQL API."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import httpx

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
    NotFoundError,
    PermanentError,
    SkipRecordError,
)
from connectors.shopify import const, mapper, payloads
from connectors.shopify.client import (
    Clock,
    ShopifyClient,
    Sleep,
    answer_shape,
    raise_for_user_errors,
)
from connectors.shopify.orders import MALFORMED, OrderReader, malformed_reason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShopifySettings:
    """What the connector needs of a `kind = "shopify"` channel file."""

    base_url: str  # https://SHOP, or a loopback sandbox
    access_token: str
    location_ids: tuple[str, ...] = ()  # Shopify location GIDs of the channel's locations
    notify_customer: bool = const.NOTIFY_CUSTOMER_DEFAULT
    webhook_url: str | None = None  # where Shopify delivers this channel's webhooks
    max_in_flight: int = 2

    def __repr__(self) -> str:
        return f"ShopifySettings(base_url={self.base_url!r}, access_token='**********', ...)"


class ShopifyConnector:
    """One Shopify store, spoken to over the Admin GraphQL API."""

    def __init__(
        self,
        name: str,
        settings: ShopifySettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        attempts: int = const.ATTEMPTS,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.settings = settings
        self.capabilities = Capabilities(
            max_stock_batch=const.MAX_BATCH,
            max_in_flight=max(1, settings.max_in_flight),
            supports_compare_and_swap=True,
            supports_webhooks=True,
            # CHANNELS.md: Shopify honours @idempotent on inventory mutations and refundCreate,
            # not on fulfillmentCreate, so a resent shipment is checked for first.
            idempotent_fulfillment=False,
        )
        self.client = ShopifyClient(
            channel=name,
            base_url=settings.base_url,
            token=settings.access_token,
            transport=transport,
            attempts=attempts,
            sleep=sleep,
            clock=clock,
        )
        self._orders = OrderReader(self.client)

    def _order_gid(self, external_id: str, operation: str) -> str:
        try:
            return mapper.gid("Order", external_id)
        except InvalidValueError as err:
            raise NotFoundError(
                "not a Shopify order id", channel=self.name, operation=operation
            ) from err

    async def check_connection(self) -> None:
        """Prove the token works (the shop query); AuthError when it does not."""
        data = await self.client.execute(const.SHOP)
        if not isinstance(data.get("shop"), Mapping):
            raise PermanentError("the shop query answered no shop", channel=self.name)

    # Orders in -------------------------------------------------------------------------------

    async def fetch_orders(self, updated_since: datetime, cursor: str | None) -> OrderPage:
        """Orders updated at or after `updated_since`, oldest first (see orders.py)."""
        return await self._orders.page(updated_since, cursor)

    async def fetch_order_versions(
        self, updated_since: datetime, cursor: str | None
    ) -> OrderVersionPage:
        """Ids and `updatedAt` of the orders updated at or after `updated_since`, oldest first:
        the poller reads in full only those the store lacks at that version."""
        return await self._orders.versions(updated_since, cursor)

    async def fetch_order(self, external_id: str) -> Order:
        """One order by its GID (or number); NotFoundError if the shop has none."""
        node = await self._orders.node(self._order_gid(external_id, "fetch_order"))
        if node is None:
            raise NotFoundError("no such order", channel=self.name, operation="fetch_order")
        try:
            return mapper.order_from_graphql(node)
        except MALFORMED as err:
            raise SkipRecordError(
                f"order is malformed: {malformed_reason(err)}",
                channel=self.name,
                operation="fetch_order",
            ) from err

    # Stock out -------------------------------------------------------------------------------

    async def push_stock(self, targets: Sequence[StockTarget]) -> Sequence[StockPushResult]:
        """Set "available" with compare-and-swap, up to 250 entries per call.

        A stale entry comes back CONFLICT with what Shopify holds now (the engine subtracts the
        sales it has not seen yet). Shopify applies a call all or nothing (so we read its docs;
        unsure), so the rest of the batch is sent again at once rather than left a retry away;
        should a shop have applied them after all, the second call finds them stale at exactly
        their target, and they count as applied.
        """
        if len(targets) > const.MAX_BATCH:
            raise PermanentError(
                f"batch of {len(targets)} exceeds {const.MAX_BATCH}",
                channel=self.name,
                operation=const.SET_STOCK.name,
            )
        results: dict[int, StockPushResult] = {}
        pending: list[int] = []
        for index, target in enumerate(targets):
            try:
                mapper.split_listing_ref(target.listing_ref)
            except InvalidValueError as err:
                results[index] = StockPushResult(
                    target.listing_ref, PushOutcome.REJECTED, error=str(err)
                )
            else:
                pending.append(index)
        stale: dict[int, int] = {}  # target index -> the round that found it stale
        for round_number in range(2):
            if not pending:
                break
            answer = await self._set_stock([targets[i] for i in pending])
            if answer.unattributed:
                reason = "; ".join(answer.unattributed)[:300]
                raise PermanentError(
                    reason, reason=reason, channel=self.name, operation=const.SET_STOCK.name
                )
            if answer.is_clean:
                for i in pending:
                    results[i] = StockPushResult(targets[i].listing_ref, PushOutcome.APPLIED)
                pending = []
                break
            for position, message in answer.rejected.items():
                i = pending[position]
                results[i] = StockPushResult(
                    targets[i].listing_ref, PushOutcome.REJECTED, error=message
                )
            stale.update({pending[position]: round_number for position in answer.stale})
            pending = [
                i
                for position, i in enumerate(pending)
                if position not in answer.stale and position not in answer.rejected
            ]
        for i in pending:  # refused twice for others' sake: the engine tries them again
            results[i] = StockPushResult(
                targets[i].listing_ref, PushOutcome.RETRY, error="not applied with its batch"
            )
        if stale:
            shown = await self.read_stock([targets[i].listing_ref for i in sorted(stale)])
            for i in sorted(stale):
                ref = targets[i].listing_ref
                actual = shown.get(ref)
                if actual is None:
                    results[i] = StockPushResult(ref, PushOutcome.RETRY, error="stale, unreadable")
                elif stale[i] > 0 and actual == targets[i].quantity:
                    results[i] = StockPushResult(ref, PushOutcome.APPLIED)
                else:
                    results[i] = StockPushResult(ref, PushOutcome.CONFLICT, actual=actual)
        return [results[i] for i in range(len(targets))]

    async def _set_stock(self, targets: Sequence[StockTarget]) -> payloads.SetAnswer:
        # One key per call: a resend after an unclear outcome replays the first answer.
        variables = {"input": payloads.set_quantities_input(targets), "key": str(uuid.uuid4())}
        data = await self.client.execute(const.SET_STOCK, variables, is_resendable=True)
        with answer_shape(self.name, const.SET_STOCK.name, is_write=True):
            payload = data["inventorySetQuantities"]
            if not isinstance(payload, Mapping):
                raise TypeError("no inventorySetQuantities payload")
            return payloads.read_set_answer(payload, len(targets))

    async def read_stock(self, listing_refs: Sequence[str]) -> Mapping[str, int]:
        """What Shopify shows as "available" for these listings (unknown ones left out)."""
        by_location: dict[str, list[str]] = {}
        for ref in dict.fromkeys(listing_refs):
            try:
                item, location = mapper.split_listing_ref(ref)
            except InvalidValueError:
                continue
            by_location.setdefault(location, []).append(item)
        shown: dict[str, int] = {}
        for location, items in by_location.items():
            for start in range(0, len(items), const.READ_STOCK_BATCH):
                chunk = items[start : start + const.READ_STOCK_BATCH]
                data = await self.client.execute(
                    const.STOCK, {"ids": chunk, "locationId": location}
                )
                with answer_shape(self.name, const.STOCK.name):
                    shown.update(payloads.stock_from_items(data["nodes"], location))
        return shown

    async def list_listings(self) -> Sequence[ChannelListing]:
        """Every tracked variant's inventory item at the channel's Shopify location."""
        return [listing async for page in self.listing_pages() for listing in page]

    async def listing_pages(self) -> AsyncIterator[Sequence[ChannelListing]]:
        """The tracked variants' inventory items at the channel's location, a page at a time."""
        locations = tuple(dict.fromkeys(self.settings.location_ids))
        if not locations:
            raise PermanentError(
                "no Shopify location mapped: set location_ids for the channel's locations",
                channel=self.name,
                operation=const.VARIANTS.name,
            )
        if len(locations) > 1:
            # The engine computes one quantity per SKU and channel: telling it to two Shopify
            # locations would show the stock twice over.
            raise PermanentError(
                "the channel's locations map to more than one Shopify location; map them to one",
                channel=self.name,
                operation=const.VARIANTS.name,
            )
        (location,) = locations
        after: str | None = None
        while True:
            data = await self.client.execute(
                const.VARIANTS,
                {"first": const.VARIANTS_PAGE, "after": after, "locationId": location},
            )
            with answer_shape(self.name, const.VARIANTS.name):
                connection = data["productVariants"]
                page = [
                    listing
                    for node in connection["nodes"]
                    if (listing := payloads.listing_from_variant(node, location)) is not None
                ]
                has_next = bool(connection["pageInfo"]["hasNextPage"])
                after = str(connection["pageInfo"]["endCursor"]) if has_next else None
            yield page
            if after is None:
                return

    # Status out ------------------------------------------------------------------------------

    async def push_fulfillment(self, request: FulfillmentRequest) -> str:
        """fulfillmentCreate on the order's open fulfilment orders, with tracking; answers the
        fulfilment GID. Not idempotent on Shopify: an unclear outcome is not resent here."""
        order_id = self._order_gid(request.order_external_id, const.FULFILLMENT_CREATE.name)
        data = await self.client.execute(const.FULFILLMENT_ORDERS, {"id": order_id})
        with answer_shape(self.name, const.FULFILLMENT_ORDERS.name):
            order = data["order"]
            if order is None:
                raise NotFoundError(
                    "no such order", channel=self.name, operation=const.FULFILLMENT_CREATE.name
                )
            try:
                fulfillment = payloads.fulfillment_input(
                    order, request, notify_customer=self.settings.notify_customer
                )
            except payloads.UnfulfillableError as err:
                raise PermanentError(
                    str(err), channel=self.name, operation=const.FULFILLMENT_CREATE.name
                ) from err
        data = await self.client.execute(const.FULFILLMENT_CREATE, {"fulfillment": fulfillment})
        payload = data.get("fulfillmentCreate")
        raise_for_user_errors(payload, channel=self.name, operation=const.FULFILLMENT_CREATE.name)
        with answer_shape(self.name, const.FULFILLMENT_CREATE.name, is_write=True):
            return str(payload["fulfillment"]["id"])  # type: ignore[index]

    async def find_fulfillment(self, request: FulfillmentRequest) -> str | None:
        """The fulfilment already on the order with this tracking number and these units."""
        node = await self._orders.node(
            self._order_gid(request.order_external_id, "find_fulfillment")
        )
        if node is None:
            raise NotFoundError("no such order", channel=self.name, operation="find_fulfillment")
        with answer_shape(self.name, "find_fulfillment"):
            return mapper.matching_fulfillment(
                node, request.tracking_number, payloads.shipment_units(request.lines)
            )

    async def cancel_order(self, request: CancelRequest) -> None:
        """orderCancel (refund and restock), run by Shopify as a job; whole orders only."""
        if request.lines:
            raise PermanentError(
                "Shopify's orderCancel cancels whole orders; cancel these lines in Shopify "
                "(refund with restock)",
                channel=self.name,
                operation=const.ORDER_CANCEL.name,
            )
        data = await self.client.execute(
            const.ORDER_CANCEL,
            {
                "orderId": self._order_gid(request.order_external_id, const.ORDER_CANCEL.name),
                "reason": const.CANCEL_REASONS.get(request.reason, "OTHER"),
                "notifyCustomer": self.settings.notify_customer,
                "staffNote": f"channel-sync {request.key}"[:255],
            },
        )
        raise_for_user_errors(
            data.get("orderCancel"),
            channel=self.name,
            operation=const.ORDER_CANCEL.name,
            key="orderCancelUserErrors",
        )

    # Webhooks --------------------------------------------------------------------------------

    async def ensure_webhooks(self) -> list[str]:
        """Subscribe `webhook_url` to every topic the daemon handles, creating only the missing
        subscriptions; answers the topics created (none when no webhook URL is configured)."""
        url = self.settings.webhook_url
        if not url:
            return []
        present: set[str] = set()
        after: str | None = None
        while True:
            data = await self.client.execute(const.WEBHOOKS, {"after": after})
            with answer_shape(self.name, const.WEBHOOKS.name):
                connection = data["webhookSubscriptions"]
                present.update(
                    str(node["topic"]) for node in connection["nodes"] if node.get("uri") == url
                )
                if not connection["pageInfo"]["hasNextPage"]:
                    break
                after = str(connection["pageInfo"]["endCursor"])
        created = []
        for topic in const.WEBHOOK_TOPICS:
            if topic in present:
                continue
            data = await self.client.execute(
                const.WEBHOOK_CREATE,
                {"topic": topic, "subscription": {"uri": url, "format": "JSON"}},
            )
            raise_for_user_errors(
                data.get("webhookSubscriptionCreate"),
                channel=self.name,
                operation=const.WEBHOOK_CREATE.name,
            )
            created.append(topic)
        if created:
            log.info("channel %s: subscribed to %s", self.name, ", ".join(created))
        return created

    async def aclose(self) -> None:
        """Release connections."""
        await self.client.aclose()
