"""A sandbox eBay seller account on loopback: the OAuth token endpoint, the Sell Fulfillment and
Inventory APIs, the Trading API (XML), the Notification API's public keys, signed push
notifications with fault knobs, per-API daily quotas and per-listing revision limits, and the
`/_sandbox/` control API. `create_app(EbayOptions(...))` builds one account's ASGI app and
`serve` runs it on a loopback socket; `python -m sandbox.ebay` does both from the command line
(see cli.py).
"""

from sandbox.ebay.app import EbayOptions, EbaySandbox, create_app
from sandbox.ebay.cli import options_from_args, parse_listing, ready_payload
from sandbox.ebay.faults import OPERATIONS, FaultSettings, NotificationKnobs, OperationFaults
from sandbox.ebay.model import World
from sandbox.ebay.notifications import TOPICS, challenge_response
from sandbox.ebay.serve import LoopbackOnlyError, base_url, bind_loopback, serve
from sandbox.ebay.signing import compact, public_key_text
from sandbox.ebay.store import NewListing

__all__ = [
    "OPERATIONS",
    "TOPICS",
    "EbayOptions",
    "EbaySandbox",
    "FaultSettings",
    "LoopbackOnlyError",
    "NewListing",
    "NotificationKnobs",
    "OperationFaults",
    "World",
    "base_url",
    "bind_loopback",
    "challenge_response",
    "compact",
    "create_app",
    "options_from_args",
    "parse_listing",
    "public_key_text",
    "ready_payload",
    "serve",
]
