"""One sandbox eBay seller account and its ASGI app: the identity service, the Sell Fulfillment
and Inventory APIs, the Trading API, getPublicKey and getRateLimits, and the control API under
`/_sandbox/`, all on one loopback address (eBay's hosts collapsed into one).

`create_app(EbayOptions(...))` builds it; the `EbaySandbox` behind it is `app.state.sandbox`
(tests reach the store, the limits, the keys and the notification dispatcher there). The
dispatcher runs on the event loop that serves the app; `aclose()` (or the app's shutdown) stops
it.
"""

from __future__ import annotations

import contextlib
import random
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import httpx
from starlette.applications import Starlette
from starlette.requests import Request

from sandbox.ebay.auth import TokenRegistry, auth_routes
from sandbox.ebay.commerce import commerce_routes
from sandbox.ebay.const import ACCESS_TOKEN_TTL_S, BULK_UPDATE_MAX, DAILY_REVISIONS_PER_LISTING
from sandbox.ebay.const import DEFAULT_DAILY_QUOTAS as DEFAULT_QUOTAS
from sandbox.ebay.control import control_routes
from sandbox.ebay.faults import AccountFaults, FaultSettings
from sandbox.ebay.fulfillment import fulfillment_routes
from sandbox.ebay.inventory import inventory_routes
from sandbox.ebay.model import Clock, SystemClock
from sandbox.ebay.notifications import Endpoint, NotificationDispatcher
from sandbox.ebay.oauth import ru_name_routes
from sandbox.ebay.quotas import DailyLimits
from sandbox.ebay.signing import SigningKeys
from sandbox.ebay.store import EbayStore
from sandbox.ebay.trading import trading_routes


@dataclass(frozen=True)
class EbayOptions:
    """How to build one sandbox account."""

    seller: str = "sandbox_seller"
    marketplace_id: str = "EBAY_US"
    currency: str = "USD"
    locale: str = "en_US"
    client_id: str | None = None
    """The application's client id; made up when None (read `sandbox.tokens.client_id`)."""
    client_secret: str | None = None
    refresh_token: str | None = None
    """The seller's refresh token (a consent given already); made up when None."""
    ru_name: str = "http://127.0.0.1/ebay-consent"
    """Where `/oauth2/authorize` sends the seller back (eBay's RuName stands for a URL)."""
    access_token_ttl_s: int = ACCESS_TOKEN_TTL_S
    bulk_update_max: int = BULK_UPDATE_MAX
    quotas: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_QUOTAS))
    revisions_per_listing: int = DAILY_REVISIONS_PER_LISTING
    notify_url: str | None = None
    """A notification endpoint from the start (checked by challenge before the first push)."""
    verification_token: str | None = None
    seed: int = 0
    faults: FaultSettings = field(default_factory=FaultSettings)


class EbaySandbox:
    """Everything one sandbox account holds: data, tokens, limits, faults, counters, pushes."""

    def __init__(
        self,
        options: EbayOptions,
        *,
        clock: Clock | None = None,
        notify_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.options = options
        self.clock = clock or SystemClock()
        self.store = EbayStore(
            seller=options.seller,
            marketplace_id=options.marketplace_id,
            currency=options.currency,
            clock=self.clock,
            rng=random.Random(options.seed),
        )
        self.tokens = TokenRegistry(
            client_id=options.client_id or f"Sandbox-chsync-SBX-{secrets.token_hex(5)}",
            client_secret=options.client_secret or f"SBX-{secrets.token_hex(16)}",
            ru_name=options.ru_name,
            clock=self.clock,
            access_ttl_s=options.access_token_ttl_s,
        )
        self.refresh_token = self.tokens.add_grant(options.refresh_token).refresh_token
        self.limits = DailyLimits(
            self.clock.now,
            quotas=options.quotas,
            revisions_per_listing=options.revisions_per_listing,
        )
        self.fault_rng = random.Random(options.seed + 1)
        self.faults = AccountFaults.from_settings(options.faults)
        self.calls: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        self.faulted: Counter[str] = Counter()
        self.unauthorized: Counter[str] = Counter()
        self.keys = SigningKeys()
        self.notifier = NotificationDispatcher(
            self.keys,
            knobs=lambda: self.faults.settings.notifications,
            rng=random.Random(options.seed + 2),
            clock=self.clock,
            transport=notify_transport,
        )
        self.store.listeners.append(self.notifier.on_change)
        if options.notify_url and options.verification_token:
            self.notifier.endpoint = Endpoint(options.notify_url, options.verification_token)

    def base_url(self, request: Request) -> str:
        """`http://host:port` as the caller reached the sandbox."""
        return str(request.base_url).rstrip("/")

    def set_faults(self, settings: FaultSettings) -> None:
        """Replace every knob (reseeding the draws when the settings carry a seed)."""
        if settings.seed is not None:
            self.fault_rng.seed(settings.seed + 1)
            self.notifier.rng.seed(settings.seed + 2)
        self.faults = AccountFaults.from_settings(settings)

    async def aclose(self) -> None:
        """Stop the notification dispatcher."""
        await self.notifier.aclose()


def create_app(
    options: EbayOptions,
    *,
    clock: Clock | None = None,
    notify_transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The ASGI app of one sandbox account."""
    sandbox = EbaySandbox(options, clock=clock, notify_transport=notify_transport)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sandbox.notifier.start()
        yield
        await sandbox.aclose()

    routes = [
        *auth_routes(),
        *fulfillment_routes(),
        *inventory_routes(),
        *trading_routes(),
        *commerce_routes(),
        *control_routes(),
        *ru_name_routes(),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sandbox = sandbox
    return app
