"""The marketplaces `channel-sync sandbox` serves: each one's ASGI app seeded with the demo
catalogue, and what the ready file says about it once it listens.

Each marketplace package builds its own app (they share no code); this module only knows how to
call them. The ready-file entries carry secrets (tokens, client secrets): they go to a file only
the owner can read, never to the terminal.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette

from sandbox.amazon import AmazonOptions, AmazonSandbox, SqsSink, seed_listings
from sandbox.amazon import cli as amazon_cli
from sandbox.amazon import create_app as create_amazon_app
from sandbox.demo_catalogue import Catalogue
from sandbox.ebay import EbayOptions, EbaySandbox, NewListing, World
from sandbox.ebay import cli as ebay_cli
from sandbox.ebay import create_app as create_ebay_app
from sandbox.reference import cli as reference_cli
from sandbox.reference import create_app as create_reference_app
from sandbox.reference import parse_channel
from sandbox.shopify import ShopifySandbox, ShopOptions, seed_products
from sandbox.shopify import cli as shopify_cli
from sandbox.shopify import create_app as create_shopify_app
from sandbox.shopify.model import gid

REFERENCE_CHANNEL = "shop:cas:idempotent"
SQS_QUEUE = "channel-sync-amazon"


@dataclass(frozen=True)
class Sqs:
    """The loopback SQS server and queue Amazon's ORDER_CHANGE notifications go to."""

    endpoint_url: str
    queue_url: str


@dataclass
class Marketplace:
    """One served app: its kind, the app, and (once listening) its address."""

    kind: str
    app: Starlette
    url: str = ""

    def describe(self) -> dict[str, Any]:
        """The ready-file entry: addresses, account details and secrets."""
        return {"kind": self.kind, "sandbox_url": self.url, **_details(self)}

    def line(self) -> str:
        """One line for the terminal: where it is, no secret."""
        return f"{self.kind:<10} {self.url}  ({_summary(self)})"


def build_marketplaces(
    catalogue: Catalogue,
    *,
    shop: str,
    sqs: Sqs | None,
    ebay_notify_url: str | None,
    env: Mapping[str, str],
) -> dict[str, Marketplace]:
    """Shopify, Amazon, eBay and the reference channel, each listing the catalogue. Credentials
    come from the marketplaces' own variables ($SANDBOX_SHOPIFY_TOKEN, ...) in `env`, else are
    made up."""

    def given(name: str) -> str | None:
        return env.get(name) or None

    listed = catalogue.listed()
    shopify = create_shopify_app(
        ShopOptions(
            shop=shop,
            access_token=given(shopify_cli.TOKEN_ENV),
            api_secret=given(shopify_cli.SECRET_ENV),
        )
    )
    seed_products(shopify.state.sandbox, listed)
    amazon = create_amazon_app(
        AmazonOptions(
            client_id=given(amazon_cli.CLIENT_ID_ENV),
            client_secret=given(amazon_cli.CLIENT_SECRET_ENV),
            refresh_token=given(amazon_cli.REFRESH_TOKEN_ENV),
        ),
        sink=SqsSink(sqs.endpoint_url, sqs.queue_url) if sqs is not None else None,
    )
    seed_listings(amazon.state.sandbox, listed)
    amazon.state.sqs = sqs
    verification = secrets.token_urlsafe(32) if ebay_notify_url else None
    ebay = create_ebay_app(
        EbayOptions(
            client_id=given(ebay_cli.CLIENT_ID_ENV),
            client_secret=given(ebay_cli.CLIENT_SECRET_ENV),
            refresh_token=given(ebay_cli.REFRESH_TOKEN_ENV),
            notify_url=ebay_notify_url,
            verification_token=verification,
        )
    )
    ebay_sandbox: EbaySandbox = ebay.state.sandbox
    ebay_sandbox.store.add_listings(
        [
            NewListing(sku=sku, quantity=units, price=price, world=World.TRADING)
            for sku, units, price in listed
        ]
    )
    reference = create_reference_app(
        [parse_channel(REFERENCE_CHANNEL)], token=given(reference_cli.TOKEN_ENV)
    )
    return {
        "shopify": Marketplace("shopify", shopify),
        "amazon": Marketplace("amazon", amazon),
        "ebay": Marketplace("ebay", ebay),
        "reference": Marketplace("reference", reference),
    }


def _details(market: Marketplace) -> dict[str, Any]:
    state = market.app.state
    url = market.url
    if market.kind == "shopify":
        shop: ShopifySandbox = state.sandbox
        return {
            "api_base_url": url,
            "shop": shop.store.domain,
            "locations": {
                loc.name: gid("Location", loc.id) for loc in shop.store.locations.values()
            },
            "token": shop.access_token,
            "secret": shop.api_secret,
        }
    if market.kind == "amazon":
        amazon: AmazonSandbox = state.sandbox
        sqs: Sqs | None = state.sqs
        return {
            "api_base_url": url,
            "lwa_token_url": f"{url}/auth/o2/token",
            "seller_id": amazon.store.seller_id,
            "marketplace_ids": list(amazon.store.marketplace_ids),
            "client_id": amazon.credentials.client_id,
            "client_secret": amazon.credentials.client_secret,
            "refresh_token": amazon.credentials.refresh_token,
            "sqs_endpoint_url": sqs.endpoint_url if sqs else None,
            "sqs_queue_url": sqs.queue_url if sqs else None,
        }
    if market.kind == "ebay":
        ebay: EbaySandbox = state.sandbox
        endpoint = ebay.notifier.endpoint
        return {
            "api_base_url": url,
            "trading_url": f"{url}/ws/api.dll",
            "identity_url": f"{url}/identity/v1/oauth2/token",
            "seller": ebay.store.seller,
            "marketplace_id": ebay.store.marketplace_id,
            "client_id": ebay.tokens.client_id,
            "client_secret": ebay.tokens.client_secret,
            "refresh_token": ebay.refresh_token,
            "notify_url": endpoint.url if endpoint else None,
            "verification_token": endpoint.verification_token if endpoint else None,
        }
    return {"token": getattr(state, "token", None)}


def _summary(market: Marketplace) -> str:
    state = market.app.state
    control = f"control API {market.url}/_sandbox/"
    if market.kind == "shopify":
        return f"shop {state.sandbox.store.domain}; {control}"
    if market.kind == "amazon":
        sqs: Sqs | None = state.sqs
        where = f"SQS {sqs.endpoint_url}" if sqs else "no SQS: notifications only recorded"
        return f"seller {state.sandbox.store.seller_id}; {where}; {control}"
    if market.kind == "ebay":
        return f"seller {state.sandbox.store.seller}; {control}"
    return f"channel {parse_channel(REFERENCE_CHANNEL).name}"
