"""Channel files, ``channels/NAME.toml``: the settings every channel shares and one model per kind.

``CHANNEL_KINDS`` is the one place kinds are listed: the loader picks the model by ``kind`` from it,
and a new marketplace is added by writing its model and registering it there.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    HttpUrl,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from config._base import MODEL_CONFIG
from config.secrets import Secret
from config.settings import ScheduleSettings

CHANNEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_CHANNEL_NAME = re.compile(CHANNEL_NAME_PATTERN)
_SHOPIFY_SHOP = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")
_SHOPIFY_LOCATION_GID = "gid://shopify/Location/"
SCHEDULE_DEFAULTS_CONTEXT_KEY = "schedule_defaults"


def _check_location_gid(gid: str) -> str:
    if not gid.startswith(_SHOPIFY_LOCATION_GID):
        raise PydanticCustomError(
            "shopify_location", "must be a location GID like gid://shopify/Location/123"
        )
    return gid


ShopifyLocationGid = Annotated[str, AfterValidator(_check_location_gid)]


class StockRules(BaseModel):
    """How much of the available stock a channel is shown."""

    model_config = MODEL_CONFIG

    buffer: int = Field(default=0, ge=0, description="Units held back from this channel.")
    percent: int = Field(
        default=100, ge=1, le=100, description="Share of the available stock shown, in percent."
    )
    max_shown: int | None = Field(
        default=None, ge=0, description="Never show more than this many units; unset = no cap."
    )
    zero_at_or_below: int = Field(
        default=0, ge=0, description="Show 0 when the computed quantity is at or below this."
    )


class PushSettings(BaseModel):
    """How stock changes coalesce into calls to the channel: freshness against calls.

    Unset keys keep the engine's defaults for the channel's batch size (a change waits at most
    1 s for company on a batching channel, not at all where each call takes one listing; a
    confirmation alone at most 10 s).
    """

    model_config = MODEL_CONFIG

    max_linger_s: float | None = Field(
        default=None,
        ge=0,
        le=3600,
        description="Longest a change waits for company while changes keep coming, seconds.",
    )
    pause_s: float | None = Field(
        default=None,
        ge=0,
        le=3600,
        description="Changes further apart than this are not a stream: a lone one goes at once.",
    )
    hold_full: bool = Field(
        default=False,
        description=(
            "Fewest calls: full batches wait too, until changes stop for pause_s (or "
            "max_linger_s passes), so each listing goes about once per burst; the channel is "
            "as stale as the burst is long."
        ),
    )
    confirm_hold_s: float | None = Field(
        default=None,
        ge=0,
        le=3600,
        description=(
            "Longest a push that only repeats what the channel should show already (after "
            "its own sale) waits for a change to ride with, seconds; 0 = it goes at once."
        ),
    )


class ChannelSchedule(BaseModel):
    """Per-channel periods; missing ones come from the main file's ``[schedules]`` defaults."""

    model_config = MODEL_CONFIG

    poll_interval_s: float = Field(gt=0, description="Order poll period, seconds.")
    reconcile_interval_s: float = Field(gt=0, description="Full stock reconcile period, seconds.")

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        context = info.context if isinstance(info.context, dict) else {}
        defaults = context.get(SCHEDULE_DEFAULTS_CONTEXT_KEY)
        if not isinstance(defaults, ScheduleSettings):
            defaults = ScheduleSettings()
        filled = dict(data)
        filled.setdefault("poll_interval_s", defaults.default_poll_interval_s)
        filled.setdefault("reconcile_interval_s", defaults.default_reconcile_interval_s)
        return filled


class ChannelConfig(BaseModel):
    """What every channel file holds, whatever its kind."""

    model_config = MODEL_CONFIG

    kind: str = Field(description="Which marketplace: a key of CHANNEL_KINDS.")
    name: str = Field(
        description="Channel name used in URLs, logs and the store; defaults to the file name."
    )
    enabled: bool = Field(
        default=True, description="A disabled channel is neither polled nor pushed."
    )
    locations: list[str] = Field(
        default_factory=lambda: ["default"],
        min_length=1,
        description="Stock locations whose available quantities feed this channel.",
    )
    stock: StockRules = Field(default_factory=StockRules, description="Stock shown to the channel.")
    schedule: ChannelSchedule = Field(description="Poll and reconcile periods.")
    push: PushSettings = Field(
        default_factory=PushSettings, description="How stock changes coalesce into calls."
    )

    @model_validator(mode="before")
    @classmethod
    def _schedule_table(cls, data: Any) -> Any:
        # Validate an absent [schedule] too, so its defaults come from the main file's context.
        if isinstance(data, dict) and "schedule" not in data:
            return {**data, "schedule": {}}
        return data

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not _CHANNEL_NAME.match(name):
            raise PydanticCustomError(
                "channel_name",
                "channel name must be 1-63 lowercase letters, digits, '-' or '_', "
                "starting with a letter or digit (it defaults to the file name)",
            )
        return name

    @field_validator("locations")
    @classmethod
    def _check_locations(cls, locations: list[str]) -> list[str]:
        if any(not location.strip() for location in locations):
            raise PydanticCustomError("location", "location names cannot be empty")
        if len(set(locations)) != len(locations):
            raise PydanticCustomError("location", "a location is listed twice")
        return locations


class ShopifyChannel(ChannelConfig):
    """A Shopify store reached through the Admin GraphQL API."""

    kind: Literal["shopify"] = Field(description="Always 'shopify'.")
    shop: str = Field(description="The store's permanent domain, NAME.myshopify.com.")
    access_token: Secret = Field(description="Admin API access token (a secret reference).")
    client_id: str | None = Field(
        default=None,
        min_length=1,
        description="The app's client id (API key); needed only by `channel-sync shopify connect`.",
    )
    webhook_secrets: list[Secret] = Field(
        min_length=1,
        max_length=2,
        description="App client secret that signs webhooks; list the old one too during a "
        "rotation (Shopify may sign with it for up to an hour).",
    )
    api_base_url: HttpUrl | None = Field(
        default=None,
        description="Override of https://SHOP, under which /admin/api/VERSION/graphql.json "
        "is called (the loopback sandbox).",
    )
    location_ids: dict[str, ShopifyLocationGid] = Field(
        default_factory=dict,
        description="Our location name -> Shopify location GID (gid://shopify/Location/N).",
    )
    notify_customer: bool = Field(
        default=True,
        description="Let Shopify e-mail the buyer when we push a shipment or a cancellation.",
    )
    webhook_url: HttpUrl | None = Field(
        default=None,
        description="Public URL of /webhooks/NAME as Shopify calls it; the daemon subscribes it "
        "to the order, fulfilment and inventory topics at start. Unset = polling only.",
    )

    @field_validator("shop", mode="before")
    @classmethod
    def _check_shop(cls, shop: object) -> object:
        if not isinstance(shop, str):
            return shop
        shop = shop.strip().lower()
        if not _SHOPIFY_SHOP.match(shop):
            raise PydanticCustomError(
                "shopify_shop", "must be the store's NAME.myshopify.com domain, without https://"
            )
        return shop


class AmazonChannel(ChannelConfig):
    """An Amazon seller account reached through the Selling Partner API."""

    kind: Literal["amazon"] = Field(description="Always 'amazon'.")
    seller_id: str = Field(min_length=1, description="Merchant token (seller id).")
    region: Literal["na", "eu", "fe"] = Field(description="SP-API region: na, eu or fe.")
    marketplace_ids: list[str] = Field(
        min_length=1, description="Marketplaces sold on, e.g. ATVPDKIKX0DER (US)."
    )
    lwa_client_id: str = Field(min_length=1, description="Login with Amazon client id.")
    lwa_client_secret: Secret = Field(description="Login with Amazon client secret.")
    refresh_token: Secret = Field(description="The seller's LWA refresh token.")
    sqs_queue_url: str | None = Field(
        default=None,
        min_length=1,
        description="SQS queue receiving notifications; unset = poll only.",
    )
    api_base_url: HttpUrl | None = Field(
        default=None, description="Override of https://sellingpartnerapi-REGION.amazon.com."
    )
    lwa_token_url: HttpUrl | None = Field(
        default=None, description="Override of https://api.amazon.com/auth/o2/token."
    )
    sqs_endpoint_url: HttpUrl | None = Field(
        default=None, description="Override of the SQS endpoint."
    )
    # Amazon connector (issue 6) ----------------------------------------------------------------
    aws_access_key_id: str | None = Field(
        default=None,
        min_length=1,
        description="AWS access key id allowed to read and delete on the SQS queue; "
        "unset = the AWS default chain (environment, profile, instance role).",
    )
    aws_secret_access_key: Secret | None = Field(
        default=None, description="Its secret access key (a secret reference)."
    )
    stock_feed_threshold: int = Field(
        default=50,
        ge=1,
        le=25_000,
        description="A stock push of more listings than this goes as one JSON_LISTINGS_FEED "
        "instead of one patchListingsItem call each.",
    )
    carrier_codes: dict[str, Annotated[str, Field(min_length=1)]] = Field(
        default_factory=dict,
        description="Our carrier name -> Amazon carrierCode, added to the built-in table; "
        'unknown carriers go as "Other" with their name.',
    )
    shipment_visible_grace_s: float = Field(
        default=600.0,
        gt=0,
        le=86_400,
        description="A confirmed shipment Amazon's order still does not show this long after "
        "confirmShipment is alerted in the status, the log and the metrics.",
    )

    @model_validator(mode="after")
    def _aws_key_pair(self) -> AmazonChannel:
        if (self.aws_access_key_id is None) != (self.aws_secret_access_key is None):
            raise PydanticCustomError(
                "aws_keys", "set both aws_access_key_id and aws_secret_access_key, or neither"
            )
        return self


class EbayChannel(ChannelConfig):
    """An eBay seller account reached through the REST APIs and the Trading API."""

    kind: Literal["ebay"] = Field(description="Always 'ebay'.")
    client_id: str = Field(min_length=1, description="Application client id (App ID).")
    client_secret: Secret = Field(description="Application client secret (Cert ID).")
    refresh_token: Secret = Field(description="The seller's OAuth refresh token.")
    ru_name: str | None = Field(
        default=None,
        min_length=1,
        description="The application's RuName (eBay's redirect URL name); needed only by "
        "`channel-sync ebay connect`.",
    )
    marketplace_id: str = Field(
        default="EBAY_US", pattern=r"^EBAY_[A-Z0-9_]+$", description="e.g. EBAY_US, EBAY_GB."
    )
    verification_token: Secret = Field(
        description="Token answering eBay's notification endpoint challenge."
    )
    notification_endpoint_url: HttpUrl | None = Field(
        default=None, description="Public URL of /webhooks/NAME as eBay calls it."
    )
    stock_api: Literal["trading", "inventory"] = Field(
        default="trading",
        description="trading = ReviseInventoryStatus (Seller Hub listings); "
        "inventory = bulk_update_price_quantity (Inventory API listings).",
    )
    api_base_url: HttpUrl | None = Field(
        default=None, description="Override of https://api.ebay.com."
    )
    trading_api_url: HttpUrl | None = Field(
        default=None, description="Override of https://api.ebay.com/ws/api.dll."
    )
    identity_url: HttpUrl | None = Field(
        default=None, description="Override of https://api.ebay.com/identity/v1/oauth2/token."
    )
    daily_call_limits: dict[
        Literal["fulfillment", "inventory", "notification", "trading"], Annotated[int, Field(ge=1)]
    ] = Field(
        default_factory=dict,
        description="The account's daily call quota per API where eBay raised it (defaults: "
        "fulfillment 100000, inventory 2000000, notification 10000, trading 5000).",
    )


class ReferenceChannel(ChannelConfig):
    """The reference marketplace (sandbox/reference) over HTTP: a test and demo channel only.

    It stands in for a marketplace in end-to-end tests and `channel-sync demo`, pointed at a
    loopback sandbox (`python -m sandbox.reference`); it is never a real shop.
    """

    kind: Literal["reference"] = Field(description="Always 'reference'.")
    base_url: HttpUrl = Field(
        description="The channel's root on a reference sandbox, e.g. http://127.0.0.1:9004/shop-a "
        "(meant for loopback: this kind exists for tests and the demo)."
    )
    token: Secret = Field(description="Bearer token the sandbox accepts (a secret reference).")
    max_stock_batch: int = Field(
        default=50, ge=1, le=250, description="Most listings per stock call (the sandbox's batch)."
    )
    max_in_flight: int = Field(default=4, ge=1, le=64, description="Most calls at once.")
    compare_and_swap: bool = Field(
        default=False, description="Send stock with the expected current figure (sandbox `:cas`)."
    )
    idempotent_fulfillment: bool = Field(
        default=False,
        description="The sandbox dedupes fulfilments on our key (sandbox `:idempotent`).",
    )
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="Per-call timeout, seconds.")
    page_size: int = Field(default=50, ge=1, le=250, description="Orders and listings per page.")


CHANNEL_KINDS: dict[str, type[ChannelConfig]] = {
    "shopify": ShopifyChannel,
    "amazon": AmazonChannel,
    "ebay": EbayChannel,
    "reference": ReferenceChannel,
}
