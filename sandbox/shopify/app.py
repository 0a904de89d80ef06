"""One sandbox Shopify store and its ASGI app: the Admin GraphQL API under
`/admin/api/{version}/graphql.json` and the control API under `/_sandbox/`.

`create_app(ShopOptions(...))` builds it; the `ShopifySandbox` behind it is `app.state.sandbox`
(tests reach the store, the bucket and the webhook dispatcher there). The webhook dispatcher
runs on the event loop that serves the app; `aclose()` (or the app's shutdown) stops it.
"""

from __future__ import annotations

import contextlib
import random
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from graphql import GraphQLSchema
from starlette.applications import Starlette

from sandbox.shopify.api import api_routes
from sandbox.shopify.control import control_routes
from sandbox.shopify.faults import FaultSettings, StoreFaults
from sandbox.shopify.model import Clock, SystemClock
from sandbox.shopify.mutations import IdempotencyLedger
from sandbox.shopify.oauth import AppInstalls, oauth_routes
from sandbox.shopify.payloads import PayloadRenderer
from sandbox.shopify.schema import load_admin_schema
from sandbox.shopify.store import ShopStore
from sandbox.shopify.throttle import DEFAULT_RESTORE_RATE, CostBucket
from sandbox.shopify.webhooks import WebhookDispatcher

DEFAULT_SCOPES = (
    "read_orders",
    "write_orders",
    "read_products",
    "read_inventory",
    "write_inventory",
    "read_locations",
    "read_merchant_managed_fulfillment_orders",
    "write_merchant_managed_fulfillment_orders",
)
"""What the sandbox's app installation is granted."""


@dataclass(frozen=True)
class ShopOptions:
    """How to build one sandbox store."""

    shop: str = "sandbox"
    """The NAME of NAME.myshopify.com."""
    access_token: str | None = None
    """The Admin API token the API accepts; random when None (read `sandbox.access_token`)."""
    api_secret: str | None = None
    """The app's client secret that signs webhooks; random when None."""
    api_key: str | None = None
    """The app's client id, for the OAuth install (`sandbox/shopify/oauth.py`); random when None."""
    currency: str = "USD"
    locations: tuple[str, ...] = ("Main warehouse",)
    restore_rate: float = DEFAULT_RESTORE_RATE
    bucket_size: float | None = None
    """Points the bucket holds; 20x the restore rate when None."""
    seed: int = 0
    utc_offset_minutes: int = -300
    """The shop's time zone, as webhook bodies show times (Shopify's samples use -05:00)."""
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    validate: bool = True
    """Validate requests against the Admin schema when ../shared/specs has it."""
    specs_dir: Path | None = None
    faults: FaultSettings = field(default_factory=FaultSettings)


class ShopifySandbox:
    """Everything one sandbox store holds: data, cost bucket, faults, counters, webhooks."""

    def __init__(
        self,
        options: ShopOptions,
        *,
        clock: Clock | None = None,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.options = options
        self.clock = clock or SystemClock()
        self.access_token = options.access_token or f"shpat_{secrets.token_hex(16)}"
        self.api_secret = options.api_secret or secrets.token_hex(16)
        self.oauth = AppInstalls.create(options.api_key, options.scopes)
        self.store = ShopStore(
            options.shop,
            currency=options.currency,
            clock=self.clock,
            rng=random.Random(options.seed),
            locations=options.locations,
        )
        self.bucket = CostBucket(
            self.clock.monotonic, restore_rate=options.restore_rate, maximum=options.bucket_size
        )
        self.fault_rng = random.Random(options.seed + 1)
        self.faults = StoreFaults.from_settings(options.faults)
        self.ledger = IdempotencyLedger()
        self.calls: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        self.faulted: Counter[str] = Counter()
        self.schema: GraphQLSchema | None = (
            load_admin_schema(options.specs_dir) if options.validate else None
        )
        self.renderer = PayloadRenderer(self.store, utc_offset_minutes=options.utc_offset_minutes)
        self.webhooks = WebhookDispatcher(
            self.store,
            self.renderer,
            secret=self.api_secret,
            knobs=lambda: self.faults.settings.webhooks,
            rng=random.Random(options.seed + 2),
            clock=self.clock,
            transport=webhook_transport,
        )

    def set_faults(self, settings: FaultSettings) -> None:
        """Replace every knob (reseeding the draws when the settings carry a seed)."""
        if settings.seed is not None:
            self.fault_rng.seed(settings.seed + 1)
            self.webhooks.rng.seed(settings.seed + 2)
        self.faults = StoreFaults.from_settings(settings)

    async def aclose(self) -> None:
        """Stop the webhook dispatcher."""
        await self.webhooks.aclose()


def create_app(
    options: ShopOptions,
    *,
    clock: Clock | None = None,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The ASGI app of one sandbox store."""
    sandbox = ShopifySandbox(options, clock=clock, webhook_transport=webhook_transport)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sandbox.webhooks.start()
        yield
        await sandbox.aclose()

    app = Starlette(routes=[*api_routes(), *oauth_routes(), *control_routes()], lifespan=lifespan)
    app.state.sandbox = sandbox
    return app
