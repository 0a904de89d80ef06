"""Which connector speaks for which channel kind: the one place daemon.py looks them up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connectors.amazon import build_connector as build_amazon
from connectors.base import Connector
from connectors.ebay import build_connector as build_ebay
from connectors.reference import build_connector as build_reference
from connectors.shopify import build_connector as build_shopify

ConnectorFactory = Callable[[Any], Connector]
"""Builds a connector from a channel's validated config (its kind's model from config/)."""

# Filled in as each marketplace's connector lands (Shopify, Amazon, eBay).
CONNECTORS: dict[str, ConnectorFactory] = {
    "reference": build_reference,  # the loopback sandbox marketplace, for tests and the demo
    "shopify": build_shopify,
    "amazon": build_amazon,
    "ebay": build_ebay,
}


def connector_for(kind: str) -> ConnectorFactory | None:
    """The factory for a channel kind, or None when this version has no connector for it."""
    return CONNECTORS.get(kind)


# Webhook receivers (issue 5): kinds whose channels deliver to `POST /webhooks/{channel}`. ----

from connectors.ebay.webhook_handler import build_webhook_handler as build_ebay_webhooks  # noqa: E402
from connectors.shopify.webhook_handler import build_webhook_handler as build_shopify_webhooks  # noqa: E402
from connectors.webhook_handler import WebhookHandler  # noqa: E402

WebhookHandlerFactory = Callable[[Any, Any], WebhookHandler]
"""Builds a channel's webhook handler from its validated config and its connector (eBay's
handler shares the connector's public-key cache)."""

WEBHOOK_HANDLERS: dict[str, WebhookHandlerFactory] = {
    "shopify": lambda channel, _connector: build_shopify_webhooks(channel),
    "ebay": build_ebay_webhooks,
}


def webhook_handler_for(kind: str) -> WebhookHandlerFactory | None:
    """The webhook handler factory for a channel kind, or None when it receives no webhooks."""
    return WEBHOOK_HANDLERS.get(kind)


# Notice queues (issue 6): kinds whose channels deliver notifications through a queue we read. --

from connectors.amazon import build_notice_queue as build_amazon_notices  # noqa: E402
from connectors.notice_queue import NoticeQueue  # noqa: E402

NoticeQueueFactory = Callable[[Any], NoticeQueue | None]
"""Builds a channel's notice queue from its validated config; None when it has none configured."""

NOTICE_QUEUES: dict[str, NoticeQueueFactory] = {
    "amazon": build_amazon_notices,
}


def notice_queue_for(kind: str) -> NoticeQueueFactory | None:
    """The notice queue factory for a channel kind, or None when it has no queue."""
    return NOTICE_QUEUES.get(kind)
