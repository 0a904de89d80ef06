"""A sandbox Shopify store on loopback: the Admin GraphQL API (validated against the official
schema when ../shared/specs has it), cost-based throttling, signed webhooks with fault knobs,
and the `/_sandbox/` control API. `create_app(ShopOptions(...))` builds one store's ASGI app
and `serve` runs it on a loopback socket (several stores can share an event loop); `python -m
sandbox.shopify` does both from the command line (see cli.py).
"""

from sandbox.shopify.app import DEFAULT_SCOPES, ShopifySandbox, ShopOptions, create_app
from sandbox.shopify.cli import options_from_args, parse_product, seed_products
from sandbox.shopify.faults import OPERATIONS, FaultSettings, OperationFaults, WebhookKnobs
from sandbox.shopify.schema import load_admin_schema
from sandbox.shopify.serve import LoopbackOnlyError, base_url, bind_loopback, serve
from sandbox.shopify.webhooks import TOPIC_ENUMS, sign

__all__ = [
    "DEFAULT_SCOPES",
    "OPERATIONS",
    "TOPIC_ENUMS",
    "FaultSettings",
    "LoopbackOnlyError",
    "OperationFaults",
    "ShopOptions",
    "ShopifySandbox",
    "WebhookKnobs",
    "base_url",
    "bind_loopback",
    "create_app",
    "load_admin_schema",
    "options_from_args",
    "parse_product",
    "seed_products",
    "serve",
    "sign",
]
