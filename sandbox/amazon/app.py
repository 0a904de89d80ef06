"""One sandbox Amazon seller account and its ASGI app: LWA at `/auth/o2/token`, the SP-API
operations (routes below), the presigned feed transfers under `/_feeds/` and report downloads under
`/_reports/`, and the control API under `/_sandbox/`.

`create_app(AmazonOptions(...))` builds it; the `AmazonSandbox` behind it is `app.state.sandbox`
(tests reach the store, the buckets and the notifier there). The notifier runs on the event loop
that serves the app; `aclose()` (or the app's shutdown) stops it.
"""

from __future__ import annotations

import contextlib
import random
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Route

from sandbox.amazon.api import Handler, operation_route
from sandbox.amazon.auth import Credentials, TokenIssuer, auth_routes
from sandbox.amazon.control import control_routes
from sandbox.amazon.faults import AccountFaults, FaultSettings
from sandbox.amazon.feeds_api import (
    FeedDesk,
    create_feed,
    create_feed_document,
    get_feed,
    get_feed_document,
    transfer_routes,
)
from sandbox.amazon.listings_api import (
    get_listings_item,
    patch_listings_item,
    search_listings_items,
)
from sandbox.amazon.model import Clock, SystemClock
from sandbox.amazon.notifications import NotificationSink, Notifier
from sandbox.amazon.orders_api import (
    confirm_shipment,
    get_order,
    get_order_items_v0,
    get_orders_v0,
    search_orders,
)
from sandbox.amazon.reports_api import (
    ReportDesk,
    create_report,
    get_report,
    get_report_document,
    report_transfer_routes,
)
from sandbox.amazon.specs import AmazonSpecs, load_specs
from sandbox.amazon.store import SellerStore
from sandbox.amazon.throttle import Throttle

OPERATIONS: tuple[tuple[str, str, str, Handler], ...] = (
    ("/orders/2026-01-01/orders", "GET", "searchOrders", search_orders),
    ("/orders/2026-01-01/orders/{orderId}", "GET", "getOrder", get_order),
    ("/orders/v0/orders", "GET", "getOrders", get_orders_v0),
    ("/orders/v0/orders/{orderId}/orderItems", "GET", "getOrderItems", get_order_items_v0),
    (
        "/orders/v0/orders/{orderId}/shipmentConfirmation",
        "POST",
        "confirmShipment",
        confirm_shipment,
    ),
    (
        "/listings/2021-08-01/items/{sellerId}/{sku}",
        "PATCH",
        "patchListingsItem",
        patch_listings_item,
    ),
    ("/listings/2021-08-01/items/{sellerId}/{sku}", "GET", "getListingsItem", get_listings_item),
    ("/listings/2021-08-01/items/{sellerId}", "GET", "searchListingsItems", search_listings_items),
    ("/feeds/2021-06-30/documents", "POST", "createFeedDocument", create_feed_document),
    ("/feeds/2021-06-30/feeds", "POST", "createFeed", create_feed),
    ("/feeds/2021-06-30/feeds/{feedId}", "GET", "getFeed", get_feed),
    ("/feeds/2021-06-30/documents/{feedDocumentId}", "GET", "getFeedDocument", get_feed_document),
    ("/reports/2021-06-30/reports", "POST", "createReport", create_report),
    ("/reports/2021-06-30/reports/{reportId}", "GET", "getReport", get_report),
    (
        "/reports/2021-06-30/documents/{reportDocumentId}",
        "GET",
        "getReportDocument",
        get_report_document,
    ),
)
"""(path, method, operation, handler) of every SP-API operation served."""


@dataclass(frozen=True)
class AmazonOptions:
    """How to build one sandbox seller account."""

    seller_id: str = "A1SANDBOXSELLER"
    marketplace_ids: tuple[str, ...] = ("ATVPDKIKX0DER",)
    client_id: str | None = None
    """The LWA client id the token endpoint accepts; made up when None."""
    client_secret: str | None = None
    refresh_token: str | None = None
    application_id: str = "amzn1.sp.solution.sandbox-application"
    seed: int = 0
    validate: bool = True
    """Check requests against Amazon's models and serve their static examples, when
    ../shared/specs has them."""
    check_responses: bool = True
    """Check every answer against the models (a mismatch answers 500)."""
    specs_dir: Path | None = None
    faults: FaultSettings = field(default_factory=FaultSettings)


class AmazonSandbox:
    """Everything one sandbox account holds: data, feeds, reports, buckets, tokens, faults,
    counters, notifier."""

    def __init__(
        self,
        options: AmazonOptions,
        *,
        clock: Clock | None = None,
        sink: NotificationSink | None = None,
    ) -> None:
        self.options = options
        self.clock = clock or SystemClock()
        self.credentials = Credentials(
            client_id=options.client_id or f"amzn1.application-oa2-client.{secrets.token_hex(16)}",
            client_secret=options.client_secret or secrets.token_hex(32),
            refresh_token=options.refresh_token or f"Atzr|sandbox-{secrets.token_urlsafe(32)}",
        )
        self.issuer = TokenIssuer(self.credentials, self.clock.monotonic)
        self.store = SellerStore(
            options.seller_id,
            options.marketplace_ids,
            clock=self.clock,
            rng=random.Random(options.seed),
        )
        self.token_key = secrets.token_bytes(32)
        self.feeds = FeedDesk(self.clock, secrets.token_bytes(32))
        self.reports = ReportDesk(self.clock, secrets.token_bytes(32))
        self.throttle = Throttle(self.clock.monotonic)
        self.fault_rng = random.Random(options.seed + 1)
        self.faults = AccountFaults.from_settings(options.faults)
        self.throttle.configure(options.faults.usage_plans())
        self.calls: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        self.faulted: Counter[str] = Counter()
        self.unauthorized: Counter[str] = Counter()
        self.examples_served: Counter[str] = Counter()
        self.transfers: Counter[str] = Counter()
        self.specs: AmazonSpecs | None = load_specs(options.specs_dir) if options.validate else None
        self.notifier = Notifier(
            self.store,
            knobs=lambda: self.faults.settings.notifications,
            rng=random.Random(options.seed + 2),
            clock=self.clock,
            sink=sink,
            application_id=options.application_id,
        )

    def set_faults(self, settings: FaultSettings) -> None:
        """Replace every knob (reseeding the draws when the settings carry a seed)."""
        if settings.seed is not None:
            self.fault_rng.seed(settings.seed + 1)
            self.notifier.rng.seed(settings.seed + 2)
        self.faults = AccountFaults.from_settings(settings)
        self.throttle.configure(settings.usage_plans(), refill=settings.refill)

    def settle(self) -> None:
        """Apply what is due: patches accepted earlier, feeds and reports whose processing time
        came."""
        self.store.settle()
        self.feeds.advance_all(self)
        self.reports.advance_all(self)

    async def aclose(self) -> None:
        """Stop the notifier."""
        await self.notifier.aclose()


def api_routes() -> list[Route]:
    """Every SP-API operation's route."""
    return [
        operation_route(path, method, name, handler) for path, method, name, handler in OPERATIONS
    ]


def create_app(
    options: AmazonOptions,
    *,
    clock: Clock | None = None,
    sink: NotificationSink | None = None,
) -> Starlette:
    """The ASGI app of one sandbox seller account."""
    sandbox = AmazonSandbox(options, clock=clock, sink=sink)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sandbox.notifier.start()
        yield
        await sandbox.aclose()

    app = Starlette(
        routes=[
            *auth_routes(),
            *api_routes(),
            *transfer_routes(),
            *report_transfer_routes(),
            *control_routes(),
        ],
        lifespan=lifespan,
    )
    app.state.sandbox = sandbox
    return app
