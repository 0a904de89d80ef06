"""The eBay connector: the Connector protocol over the Sell REST APIs and the Trading API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from connectors.base import (
    CancelRequest,
    Capabilities,
    ChannelListing,
    FulfillmentRequest,
    Order,
    OrderPage,
    OrderVersion,
    OrderVersionPage,
    StockPushResult,
    StockTarget,
)
from connectors.budgets import BudgetUse
from connectors.ebay import const, mapper
from connectors.ebay.auth import OAuthApp, TokenSource, app_token_form, user_token_form
from connectors.ebay.client import EbayRestClient, answer_shape, json_body
from connectors.ebay.listings import ListingReader
from connectors.ebay.orders import OrderReader, ebay_time
from connectors.ebay.quota import ApiQuotaStatus, QuotaBook, RevisionBook, RevisionStatus
from connectors.ebay.stock import StockPusher
from connectors.ebay.trading import AdapterFactory, TradingClient, TradingSettings
from connectors.ebay.webhooks import (
    Notification,
    NotificationVerifier,
    PublicKeyCache,
    challenge_response,
)
from connectors.errors import PermanentError
from connectors.http import MASK, make_client

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass(frozen=True)
class EbaySettings:
    """What the connector needs of a `kind = "ebay"` channel file."""

    client_id: str
    client_secret: str
    refresh_token: str
    marketplace_id: str = "EBAY_US"
    verification_token: str | None = None
    notification_endpoint_url: str | None = None
    stock_api: str = const.STOCK_API_TRADING  # the world of listing refs that do not say
    api_base_url: str = const.API_BASE_URL
    trading_api_url: str = const.TRADING_URL
    identity_url: str = const.IDENTITY_URL
    daily_quotas: Mapping[str, int] = field(default_factory=dict)
    order_overlap_s: float = const.ORDER_OVERLAP_S
    max_in_flight: int = 1

    def __repr__(self) -> str:
        return (
            f"EbaySettings(client_id={self.client_id!r}, client_secret={MASK!r}, "
            f"refresh_token={MASK!r}, marketplace_id={self.marketplace_id!r}, "
            f"stock_api={self.stock_api!r}, ...)"
        )


@dataclass(frozen=True)
class EbayStatus:
    """What the daemon shows of an eBay channel: quota use per API, listings near eBay's daily
    revision limit."""

    quotas: tuple[ApiQuotaStatus, ...]
    revisions: RevisionStatus
    # Trading listings without out-of-stock control, as of the last listing read: at 0 they end
    # instead of staying listed (turn the control on in Seller Hub's selling preferences).
    ending_at_zero: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for /api/status."""
        return {
            "quotas": [quota.to_json() for quota in self.quotas],
            "revisions": self.revisions.to_json(),
            "listings_ending_at_zero": list(self.ending_at_zero),
        }


def carrier_code(carrier: str | None) -> str | None:
    """eBay's code for a carrier name as sellers type it (anything unknown is sent as typed)."""
    if carrier is None or not carrier.strip():
        return None
    return const.CARRIER_CODES.get(" ".join(carrier.lower().split()), carrier.strip())


class EbayConnector:
    """One eBay seller account."""

    def __init__(
        self,
        name: str,
        settings: EbaySettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        trading_adapter: AdapterFactory | None = None,
        attempts: int = const.ATTEMPTS,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if settings.stock_api not in (const.STOCK_API_TRADING, const.STOCK_API_INVENTORY):
            raise ValueError(f"stock_api must be trading or inventory, not {settings.stock_api!r}")
        self.name = name
        self.settings = settings
        self.capabilities = Capabilities(
            max_stock_batch=const.TRADING_BATCH
            if settings.stock_api == const.STOCK_API_TRADING
            else const.INVENTORY_BATCH,
            max_in_flight=max(1, settings.max_in_flight),
            supports_compare_and_swap=False,
            supports_webhooks=True,  # Notification API pushes (hints: polling stays on)
            idempotent_fulfillment=False,  # createShippingFulfillment: read before re-sending
        )
        self._http = make_client(
            base_url=settings.api_base_url.rstrip("/"),
            channel=name,
            timeout=httpx.Timeout(const.TIMEOUT_S, connect=const.CONNECT_TIMEOUT_S),
            transport=transport,
        )
        app = OAuthApp(settings.client_id, settings.client_secret, settings.identity_url)
        token_options: dict[str, Any] = {"channel": name, "clock": clock, "sleep": sleep}
        self.user_tokens = TokenSource(
            self._http,
            app,
            user_token_form(settings.refresh_token),
            operation="refreshUserToken",
            attempts=attempts,
            **token_options,
        )
        self.app_tokens = TokenSource(
            self._http,
            app,
            app_token_form(),
            operation="applicationToken",
            attempts=attempts,
            **token_options,
        )
        self.quotas = QuotaBook({**const.DEFAULT_DAILY_QUOTAS, **settings.daily_quotas}, now=now)
        self.rest = EbayRestClient(
            channel=name,
            http=self._http,
            user_tokens=self.user_tokens,
            app_tokens=self.app_tokens,
            quotas=self.quotas,
            marketplace_id=settings.marketplace_id,
            attempts=attempts,
            sleep=sleep,
            clock=clock,
        )
        self.trading = TradingClient(
            channel=name,
            settings=TradingSettings(
                url=settings.trading_api_url,
                app_id=settings.client_id,
                site_id=const.SITE_IDS.get(settings.marketplace_id, 0),
            ),
            tokens=self.user_tokens,
            quotas=self.quotas,
            adapter_factory=trading_adapter,
            attempts=attempts,
            sleep=sleep,
            clock=clock,
        )
        self._orders = OrderReader(self.rest, overlap_s=settings.order_overlap_s)
        self._stock = StockPusher(
            channel=name,
            rest=self.rest,
            trading=self.trading,
            revisions=RevisionBook(now=now),
            default_world=settings.stock_api,
        )
        self._listings = ListingReader(
            rest=self.rest,
            trading=self.trading,
            marketplace_id=settings.marketplace_id,
            default_world=settings.stock_api,
        )
        self.public_keys = PublicKeyCache(self._fetch_public_key, clock=clock)
        self._verifier = NotificationVerifier(self.public_keys)

    async def check_connection(self) -> None:
        """Prove the refresh token works and the Fulfillment API answers; AuthError if not."""
        await self.rest.get_json(
            const.ORDERS_PATH, api=const.API_FULFILLMENT, operation="getOrders", params={"limit": 1}
        )

    # Orders in -------------------------------------------------------------------------------

    async def fetch_orders(self, updated_since: datetime, cursor: str | None) -> OrderPage:
        """Orders modified at or after `updated_since` (less an overlap), 200 a page."""
        return await self._orders.page(updated_since, cursor)

    async def fetch_order_versions(
        self, updated_since: datetime, cursor: str | None
    ) -> OrderVersionPage:
        """`fetch_orders`' pages as versions, no parcels read: the poller reads in full only
        the orders the store lacks at that version."""
        return await self._orders.versions(updated_since, cursor)

    async def fetch_listed_order(self, version: OrderVersion) -> Order:
        """An order `fetch_order_versions` listed, from its page, with its parcels."""
        return await self._orders.listed(version)

    async def fetch_order(self, external_id: str) -> Order:
        """One order by its eBay order id, with its parcels; NotFoundError if there is none."""
        return await self._orders.order(external_id)

    # Stock out -------------------------------------------------------------------------------

    async def push_stock(self, targets: Sequence[StockTarget]) -> Sequence[StockPushResult]:
        """Set quantities, each through its listing's world (see stock.py)."""
        return await self._stock.push(targets)

    async def read_stock(self, listing_refs: Sequence[str]) -> Mapping[str, int]:
        """What eBay shows now for these listings (unknown ones left out)."""
        return await self._listings.quantities(listing_refs)

    async def list_listings(self) -> Sequence[ChannelListing]:
        """Every listing in both worlds; each says its world in `extra["stock_api"]`."""
        return await self._listings.all()

    async def listing_pages(self) -> AsyncIterator[Sequence[ChannelListing]]:
        """The same listings, one API page at a time (see ListingReader.pages)."""
        async for page in self._listings.pages():
            yield page

    # Status out ------------------------------------------------------------------------------

    async def push_fulfillment(self, request: FulfillmentRequest) -> str:
        """createShippingFulfillment for one package; answers eBay's fulfillment id. Not
        idempotent on eBay: an unclear outcome is not resent here (see find_fulfillment)."""
        order_id = request.order_external_id
        lines = {line.external_line_id: line.quantity for line in request.lines}
        if not lines:
            raw = await self._orders.raw_order(order_id, is_priority=True)
            with answer_shape(self.name, "getOrder"):
                lines = {
                    str(item["lineItemId"]): int(item["quantity"])
                    for item in raw["lineItems"]
                    if item.get("lineItemFulfillmentStatus") != const.LINE_FULFILLED
                }
            if not lines:
                raise PermanentError(
                    "every line of the order is already shipped on eBay",
                    channel=self.name,
                    operation="createShippingFulfillment",
                )
        body: dict[str, Any] = {
            "lineItems": [{"lineItemId": k, "quantity": n} for k, n in lines.items()],
            "shippedDate": ebay_time(request.shipped_at),
        }
        code = carrier_code(request.carrier)
        if code is not None:
            body["shippingCarrierCode"] = code
        if request.tracking_number:
            body["trackingNumber"] = request.tracking_number.strip()
        response = await self.rest.call(
            "POST",
            const.SHIPPING_FULFILLMENTS_PATH.format(order_id=order_id),
            api=const.API_FULFILLMENT,
            operation="createShippingFulfillment",
            is_resendable=False,
            is_priority=True,
            body=body,
        )
        location = str(response.headers.get("Location", "")).rstrip("/")
        if location:
            return location.rsplit("/", 1)[-1]
        answer = json_body(response, channel=self.name, operation="createShippingFulfillment")
        if isinstance(answer.get("fulfillmentId"), str):
            return str(answer["fulfillmentId"])
        # Created (201), but eBay did not say its id: read it back. Failing that, eBay's ids are
        # the tracking number in its own examples; a made-up id still records the package as
        # sent, which is what matters, since sending it again would make a second one.
        found = await self.find_fulfillment(request)
        return found or (request.tracking_number or f"{order_id}:{request.key}").strip()

    async def find_fulfillment(self, request: FulfillmentRequest) -> str | None:
        """The package already on the order with this tracking number and these units."""
        fulfillments = await self._orders.fulfillments(request.order_external_id, is_priority=True)
        with answer_shape(self.name, "getShippingFulfillments"):
            units = {line.external_line_id: line.quantity for line in request.lines}
            return mapper.matching_fulfillment(fulfillments, request.tracking_number, units)

    async def cancel_order(self, request: CancelRequest) -> None:
        """Not offered: eBay cancels through its Post-Order API, which this connector does not
        speak; the seller cancels in Seller Hub and the next poll brings the cancellation in."""
        raise PermanentError(
            "cancel this order in Seller Hub: the eBay connector does not cancel orders",
            channel=self.name,
            operation="cancel_order",
        )

    # Notifications ---------------------------------------------------------------------------

    def challenge_response(self, challenge_code: str) -> str:
        """The answer to eBay's endpoint check (GET /webhooks/NAME?challenge_code=...)."""
        token = self.settings.verification_token
        url = self.settings.notification_endpoint_url
        if not token or not url:
            raise PermanentError(
                "verification_token and notification_endpoint_url must both be set",
                channel=self.name,
                operation="challenge",
            )
        return challenge_response(challenge_code, token, url)

    async def verify_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """The notification once its X-EBAY-SIGNATURE checks (NotificationVerificationError:
        answer 412, keep nothing; RetryableError: the key could not be fetched, answer 5xx)."""
        return await self._verifier.verify(headers, body)

    async def _fetch_public_key(self, kid: str) -> Mapping[str, Any]:
        return await self.rest.get_json(
            const.PUBLIC_KEY_PATH.format(kid=kid),
            api=const.API_NOTIFICATION,
            operation="getPublicKey",
            use_app_token=True,
            is_priority=True,
        )

    # Running it ------------------------------------------------------------------------------

    def status(self) -> EbayStatus:
        """Quota use per API, listings near the revision limit or ending at 0: /api/status."""
        return EbayStatus(
            tuple(self.quotas.status()),
            self._stock.revisions.status(),
            self._listings.ending_at_zero,
        )

    def take_budget_use(self) -> list[BudgetUse]:
        """Calls per API and revisions per listing since the last take (connectors/budgets.py)."""
        return [*self.quotas.take_use(), *self._stock.revisions.take_use()]

    def seed_budget_use(self, totals: Sequence[BudgetUse]) -> None:
        """Today's totals of every instance, as the daemon stored them."""
        self.quotas.seed(totals)
        self._stock.revisions.seed(totals)

    @property
    def revisions(self) -> RevisionBook:
        """Revisions per listing today (snapshot/restore them over a restart)."""
        return self._stock.revisions

    async def aclose(self) -> None:
        """Release connections."""
        await self._http.aclose()
