"""Shopify through the Admin GraphQL API (`kind = "shopify"`).

client.py speaks GraphQL (pacing by query cost), mapper.py and payloads.py translate, webhooks.py
verifies deliveries, connector.py wires them into the Connector protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.shopify.connector import ShopifyConnector, ShopifySettings
from connectors.shopify.webhooks import WebhookDelivery, WebhookVerificationError, verify_webhook

if TYPE_CHECKING:
    from config.channels import ShopifyChannel


def build_connector(channel: ShopifyChannel) -> ShopifyConnector:
    """The connector for a validated `kind = "shopify"` channel file."""
    base_url = str(channel.api_base_url) if channel.api_base_url else f"https://{channel.shop}"
    return ShopifyConnector(
        channel.name,
        ShopifySettings(
            base_url=base_url,
            access_token=channel.access_token.reveal(),
            location_ids=tuple(
                dict.fromkeys(
                    channel.location_ids[name]
                    for name in channel.locations
                    if name in channel.location_ids
                )
            ),
            notify_customer=channel.notify_customer,
            webhook_url=str(channel.webhook_url) if channel.webhook_url else None,
        ),
    )


__all__ = [
    "ShopifyConnector",
    "ShopifySettings",
    "WebhookDelivery",
    "WebhookVerificationError",
    "build_connector",
    "verify_webhook",
]
