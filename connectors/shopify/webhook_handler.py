"""Shopify's webhook handler for the daemon: verify with webhooks.py, map topics to actions.

Topics (REST names, as X-Shopify-Topic sends them): every `orders/*` carries the whole order and
is ingested as it is; `fulfillments/*` names its order, which is read again (the webhook's
fulfilment alone does not say what else changed on the order); `inventory_levels/update` is a
hint to check that listing; `app/uninstalled` means the token no longer works. The GDPR topics
hold nothing the store keeps and are acknowledged only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import InvalidOperation
from typing import TYPE_CHECKING, Any

from connectors.base import InvalidValueError
from connectors.shopify import mapper
from connectors.shopify.webhooks import WebhookVerificationError, verify_webhook
from connectors.webhook_handler import (
    FetchOrder,
    IgnoreDelivery,
    IngestOrder,
    MalformedDeliveryError,
    ReconcileListing,
    RevokeChannel,
    VerifiedDelivery,
    WebhookAction,
    WebhookRefusedError,
)

if TYPE_CHECKING:
    from config.channels import ShopifyChannel

_MALFORMED = (InvalidValueError, InvalidOperation, KeyError, TypeError, ValueError, IndexError)


class ShopifyWebhookHandler:
    """Verify deliveries signed with the app secret (the previous one too during a rotation)."""

    def __init__(self, secrets: Sequence[str], *, shop_domain: str | None = None) -> None:
        self._secrets = tuple(secrets)
        self._shop_domain = shop_domain

    def __repr__(self) -> str:
        return f"ShopifyWebhookHandler(shop_domain={self._shop_domain!r}, secrets='**********')"

    def verify(self, headers: Mapping[str, str], body: bytes) -> VerifiedDelivery:
        """Signature over the raw body, topic and delivery ids; refused with the reason."""
        try:
            delivery = verify_webhook(headers, body, self._secrets, shop_domain=self._shop_domain)
        except WebhookVerificationError as err:
            raise WebhookRefusedError(str(err)) from err
        return VerifiedDelivery(delivery.delivery_id, delivery.topic)

    def map(self, topic: str, body: bytes) -> WebhookAction:
        """The action a stored delivery of `topic` asks for."""
        if topic == "app/uninstalled":
            return RevokeChannel("the app was uninstalled from the shop")
        family = topic.partition("/")[0]
        if family not in ("orders", "fulfillments", "inventory_levels"):
            return IgnoreDelivery(f"topic {topic} is not acted on")
        payload = _json(body)
        try:
            if family == "orders":
                return IngestOrder(mapper.order_from_webhook(payload))
            if family == "fulfillments":
                return FetchOrder(mapper.order_gid_of_fulfillment(payload))
            if topic == "inventory_levels/update":
                available = payload.get("available")
                return ReconcileListing(
                    mapper.listing_ref_of_inventory_level(payload),
                    available if isinstance(available, int) and available >= 0 else None,
                )
        except _MALFORMED as err:
            raise MalformedDeliveryError(f"{topic}: {_reason(err)}") from err
        return IgnoreDelivery(f"topic {topic} is not acted on")


def _json(body: bytes) -> Mapping[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise MalformedDeliveryError("the body is not JSON") from err
    except RecursionError as err:  # signed, yet thousands of levels deep: no order of Shopify's
        raise MalformedDeliveryError("the body is nested too deeply") from err
    if not isinstance(payload, Mapping):
        raise MalformedDeliveryError("the body is not a JSON object")
    return payload


def _reason(err: Exception) -> str:
    # Our value types name the field and never echo buyer data; anything else is named by type.
    if isinstance(err, KeyError):
        return f"missing field {err.args[0]!r}"
    if isinstance(err, InvalidValueError):
        return str(err)
    if isinstance(err, InvalidOperation):
        return "an amount of money is not a number"
    return f"malformed payload ({type(err).__name__})"


def build_webhook_handler(channel: ShopifyChannel) -> ShopifyWebhookHandler:
    """The handler of a validated `kind = "shopify"` channel file."""
    return ShopifyWebhookHandler(
        [secret.reveal() for secret in channel.webhook_secrets], shop_domain=channel.shop
    )
