"""Which connector speaks for which channel kind: the one place daemon.py looks them up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connectors.base import Connector
from connectors.reference import build_connector as build_reference
from connectors.shopify import build_connector as build_shopify

ConnectorFactory = Callable[[Any], Connector]
"""Builds a connector from a channel's validated config (its kind's model from config/)."""

# Filled in as each marketplace's connector lands (Shopify, Amazon, eBay).
CONNECTORS: dict[str, ConnectorFactory] = {
    "reference": build_reference,  # the loopback sandbox marketplace, for tests and the demo
    "shopify": build_shopify,
}


def connector_for(kind: str) -> ConnectorFactory | None:
    """The factory for a channel kind, or None when this version has no connector for it."""
    return CONNECTORS.get(kind)
