"""A sandbox Amazon seller account on loopback: Login with Amazon, the Orders API (2026-01-01
searchOrders and getOrder; v0 getOrders, getOrderItems, confirmShipment), Listings Items
(patch and get), the Feeds flow with presigned transfers and processing reports, the Reports API
for the all-orders-by-last-update flat file, per-operation token buckets at Amazon's rates,
ORDER_CHANGE notifications to an SQS queue, and the `/_sandbox/` control API. Requests and
answers follow Amazon's own models when ../shared/specs has them, and the models' static examples
are served for the requests they describe.

`create_app(AmazonOptions(...))` builds one account's ASGI app; `serve` runs it on a loopback
socket; `python -m sandbox.amazon` does both from the command line (see cli.py).
"""

from sandbox.amazon.app import AmazonOptions, AmazonSandbox, create_app
from sandbox.amazon.cli import parse_listing, seed_listings
from sandbox.amazon.faults import (
    OPERATIONS,
    FaultSettings,
    FeedKnobs,
    NotificationKnobs,
    OperationFaults,
    PlanOverride,
    ReportKnobs,
)
from sandbox.amazon.notifications import MemorySink, NotificationSink, order_change
from sandbox.amazon.serve import LoopbackOnlyError, base_url, bind_loopback, serve
from sandbox.amazon.specs import AmazonSpecs, load_specs
from sandbox.amazon.sqs import SqsSink, create_queue, start_moto
from sandbox.amazon.throttle import USAGE_PLANS, UsagePlan

__all__ = [
    "OPERATIONS",
    "USAGE_PLANS",
    "AmazonOptions",
    "AmazonSandbox",
    "AmazonSpecs",
    "FaultSettings",
    "FeedKnobs",
    "LoopbackOnlyError",
    "MemorySink",
    "NotificationKnobs",
    "NotificationSink",
    "OperationFaults",
    "PlanOverride",
    "ReportKnobs",
    "SqsSink",
    "UsagePlan",
    "base_url",
    "bind_loopback",
    "create_app",
    "create_queue",
    "load_specs",
    "order_change",
    "parse_listing",
    "seed_listings",
    "serve",
    "start_moto",
]
