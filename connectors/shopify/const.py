"""What the Shopify Admin GraphQL API documents, in one place: version, limits, statuses, documents.

Every GraphQL document the connector can send is an `Operation` constant below, so a test can
collect them all from this module and validate them against the Admin schema. Requested costs
follow Shopify's published rules (an object 1, a connection 2 + first x its node, a mutation 10)
and stay under the 1000-point single-query limit with room to spare; `cost` is our estimate,
used for pacing until Shopify has told us the real requested cost of that operation.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.base import OrderStatus

API_VERSION = "2026-04"
"""Pinned: `changeFromQuantity` and `@idempotent` are mandatory on inventory mutations from here."""

GRAPHQL_PATH = f"/admin/api/{API_VERSION}/graphql.json"
TOKEN_HEADER = "X-Shopify-Access-Token"  # noqa: S105 (a header name, not a secret)

MAX_BATCH = 250  # array inputs (inventorySetQuantities quantities) and connection pages
ORDERS_PAGE = 250  # order ids per poll page; each order's details come by its own query
# Variants per listing page. Each costs 4 points (variant, inventory item, level, quantity), so a
# page costs 2 + 4 x first: 250 would cost 1002, over MAX_QUERY_COST; 249 (998) would leave no
# margin should Shopify count one field differently. The page size does not change how long a
# full read takes on a throttled shop: that is 4 points per variant over the restore rate
# (100,000 variants at the Standard plan's 100 points/s: about 4,000 s). Fewer, larger pages
# only save round trips.
VARIANTS_PAGE = 200
READ_STOCK_BATCH = 100  # inventory items per stock read
DETAIL_CONCURRENCY = 4  # order detail queries in flight at once during a poll page
MAX_QUERY_COST = 1000  # Shopify refuses a query whose requested cost exceeds this

# Before the first answer tells us the shop's live figures: the smallest published bucket
# (1000 points restoring 50/s), so the first calls can never overdraw a real shop.
INITIAL_BUCKET = 1000.0
INITIAL_RESTORE_RATE = 50.0

# Points a background read leaves in the cost bucket: ten stock pushes (10 points each) go at
# once while a reconcile reads listing pages of 802 points. Without it a push waited behind a
# page for its 802 points to restore (8 s at the Standard plan's 100 points/s).
BACKGROUND_RESERVE = 100.0

# In-connector retries before the error goes back to the engine's own durable retries.
ATTEMPTS = 4
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 10.0
TIMEOUT_S = 30.0  # read/write; connecting and waiting for a pooled connection fail faster
CONNECT_TIMEOUT_S = 5.0

STOCK_NAME = "available"
STOCK_REASON = "correction"
NOTIFY_CUSTOMER_DEFAULT = True

# Top-level GraphQL error codes (errors[].extensions.code).
THROTTLED = "THROTTLED"
ACCESS_DENIED = "ACCESS_DENIED"
INTERNAL_ERROR = "INTERNAL_SERVER_ERROR"
STALE = "CHANGE_FROM_QUANTITY_STALE"  # inventorySetQuantities userErrors code since 2026-04

WEBHOOK_TOPICS = (
    "ORDERS_CREATE",
    "ORDERS_UPDATED",
    "ORDERS_CANCELLED",
    "FULFILLMENTS_CREATE",
    "INVENTORY_LEVELS_UPDATE",
    "APP_UNINSTALLED",
)
"""Subscriptions the connector makes sure exist (the GDPR topics live in the app's own config)."""

# OAuth install (`channel-sync shopify connect`) -------------------------------------------------

OAUTH_SCOPES = (
    "read_orders",
    "write_orders",  # orderCancel
    "read_products",  # variants by SKU
    "read_inventory",
    "write_inventory",  # inventorySetQuantities
    "read_locations",
    "read_fulfillments",  # the fulfillments/create topic (unsure: older docs say orders)
    "read_merchant_managed_fulfillment_orders",
    "write_merchant_managed_fulfillment_orders",  # fulfillmentCreate
)
"""Access scopes the install asks for: what the operations below and WEBHOOK_TOPICS need.
(`read_all_orders`, for orders older than 60 days, needs Shopify's approval: not asked.)"""
OAUTH_AUTHORIZE_PATH = "/admin/oauth/authorize"
OAUTH_TOKEN_PATH = "/admin/oauth/access_token"  # noqa: S105 (a path, not a secret)

FINANCIAL_STATUSES: dict[str, OrderStatus] = {"PENDING": OrderStatus.PENDING}
"""displayFinancialStatus (upper case; webhooks send it lower case) -> status before shipping;
any other value (paid, authorized, refunded...) is an open order."""

FULFILLMENT_STATUSES: dict[str, OrderStatus] = {
    "FULFILLED": OrderStatus.SHIPPED,
    "PARTIALLY_FULFILLED": OrderStatus.PARTIALLY_SHIPPED,
    "PARTIAL": OrderStatus.PARTIALLY_SHIPPED,  # the webhooks' REST word
}
"""displayFulfillmentStatus (or the webhooks' fulfillment_status, upper-cased) -> status."""

SHIPPED_FULFILLMENT_STATUSES = frozenset({"SUCCESS"})
"""Fulfilment statuses that mean the parcel left. PENDING/OPEN wait on a fulfilment service and
may still fail; a shipment recorded here is never undone, so only SUCCESS counts."""

OPEN_FULFILLMENT_ORDER_STATUSES = frozenset({"OPEN", "IN_PROGRESS"})
"""Fulfilment orders fulfillmentCreate accepts."""

CANCEL_REASONS: dict[str, str] = {
    "customer": "CUSTOMER",
    "declined": "DECLINED",
    "fraud": "FRAUD",
    "inventory": "INVENTORY",
    "oversold": "INVENTORY",
    "out_of_stock": "INVENTORY",
    "staff": "STAFF",
}
"""Our cancel reason codes -> OrderCancelReason; anything else is OTHER."""


@dataclass(frozen=True)
class Operation:
    """One GraphQL document the connector sends, named as Shopify logs it."""

    name: str
    document: str
    cost: int  # our estimate of Shopify's requested cost, for pacing before it tells us
    is_mutation: bool = False
    # Background reads (a reconcile's listing pages, a poll's order pages) leave the cost
    # bucket `BACKGROUND_RESERVE` points and never make a stock push wait behind them.
    is_background: bool = False


_LINE = """
fragment LineParts on LineItem {
  id
  sku
  quantity
  currentQuantity
  originalUnitPriceSet { shopMoney { amount currencyCode } }
  variant { id inventoryItem { id } }
}
"""

_FULFILLMENT = """
fragment FulfillmentParts on Fulfillment {
  id
  status
  createdAt
  trackingInfo(first: 1) { company number url }
  fulfillmentLineItems(first: 25) {
    pageInfo { hasNextPage endCursor }
    nodes { quantity lineItem { id } }
  }
}
"""

_ORDER = (
    """
fragment OrderParts on Order {
  id
  name
  createdAt
  updatedAt
  cancelledAt
  displayFinancialStatus
  displayFulfillmentStatus
  currencyCode
  currentTotalPriceSet { shopMoney { amount currencyCode } }
  shippingAddress { name address1 address2 city provinceCode zip countryCodeV2 phone }
  lineItems(first: 50) {
    pageInfo { hasNextPage endCursor }
    nodes { ...LineParts }
  }
  fulfillmentsCount { count }
  fulfillments(first: 10) { ...FulfillmentParts }
}
"""
    + _LINE
    + _FULFILLMENT
)

SHOP = Operation(
    "ChannelSyncShop",
    "query ChannelSyncShop { shop { name myshopifyDomain currencyCode } }",
    cost=1,
)

ORDER_IDS = Operation(
    "ChannelSyncOrderIds",
    """
query ChannelSyncOrderIds($first: Int!, $after: String, $query: String!) {
  orders(first: $first, after: $after, sortKey: UPDATED_AT, query: $query) {
    pageInfo { hasNextPage endCursor }
    nodes { id updatedAt cancelledAt }
  }
}
""",
    cost=252,
    is_background=True,
)

ORDER = Operation(
    "ChannelSyncOrder",
    "query ChannelSyncOrder($id: ID!) { order(id: $id) { ...OrderParts } }" + _ORDER,
    cost=797,
)

ORDER_LINES = Operation(
    "ChannelSyncOrderLines",
    """
query ChannelSyncOrderLines($id: ID!, $after: String) {
  order(id: $id) {
    lineItems(first: 100, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { ...LineParts }
    }
  }
}
"""
    + _LINE,
    cost=503,
)

ORDER_FULFILLMENT_IDS = Operation(
    "ChannelSyncOrderFulfillmentIds",
    """
query ChannelSyncOrderFulfillmentIds($id: ID!) {
  order(id: $id) { fulfillments(first: 250) { id } }
}
""",
    cost=251,
)

FULFILLMENT = Operation(
    "ChannelSyncFulfillment",
    """
query ChannelSyncFulfillment($id: ID!, $after: String) {
  fulfillment(id: $id) {
    id
    status
    createdAt
    trackingInfo(first: 1) { company number url }
    fulfillmentLineItems(first: 200, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { quantity lineItem { id } }
    }
  }
}
""",
    cost=404,
)

VARIANTS = Operation(
    "ChannelSyncVariants",
    """
query ChannelSyncVariants($first: Int!, $after: String, $locationId: ID!) {
  productVariants(first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id
      sku
      inventoryItem {
        id
        tracked
        inventoryLevel(locationId: $locationId) {
          quantities(names: ["available"]) { name quantity }
        }
      }
    }
  }
}
""",
    cost=802,
    is_background=True,
)

STOCK = Operation(
    "ChannelSyncStock",
    """
query ChannelSyncStock($ids: [ID!]!, $locationId: ID!) {
  nodes(ids: $ids) {
    ... on InventoryItem {
      id
      inventoryLevel(locationId: $locationId) {
        quantities(names: ["available"]) { name quantity }
      }
    }
  }
}
""",
    cost=300,
    is_background=True,
)

SET_STOCK = Operation(
    "ChannelSyncSetStock",
    """
mutation ChannelSyncSetStock($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id }
    userErrors { code field message }
  }
}
""",
    cost=10,
    is_mutation=True,
)

FULFILLMENT_ORDERS = Operation(
    "ChannelSyncFulfillmentOrders",
    """
query ChannelSyncFulfillmentOrders($id: ID!) {
  order(id: $id) {
    id
    fulfillmentOrders(first: 5) {
      nodes {
        id
        status
        assignedLocation { location { id } }
        lineItems(first: 50) {
          pageInfo { hasNextPage }
          nodes { id remainingQuantity lineItem { id } }
        }
      }
    }
  }
}
""",
    cost=528,
)

FULFILLMENT_CREATE = Operation(
    "ChannelSyncFulfillmentCreate",
    """
mutation ChannelSyncFulfillmentCreate($fulfillment: FulfillmentInput!) {
  fulfillmentCreate(fulfillment: $fulfillment) {
    fulfillment { id status }
    userErrors { field message }
  }
}
""",
    cost=10,
    is_mutation=True,
)

# `refund` is what 2025-01 has; later versions add a refund-method input (CHANNELS.md: unsure
# whether 2026-04 still takes `refund`); the schema test is what tells.
ORDER_CANCEL = Operation(
    "ChannelSyncOrderCancel",
    """
mutation ChannelSyncOrderCancel(
  $orderId: ID!, $reason: OrderCancelReason!, $notifyCustomer: Boolean, $staffNote: String
) {
  orderCancel(
    orderId: $orderId
    reason: $reason
    refund: true
    restock: true
    notifyCustomer: $notifyCustomer
    staffNote: $staffNote
  ) {
    job { id }
    orderCancelUserErrors { code field message }
  }
}
""",
    cost=10,
    is_mutation=True,
)

WEBHOOKS = Operation(
    "ChannelSyncWebhooks",
    """
query ChannelSyncWebhooks($after: String) {
  webhookSubscriptions(first: 100, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes { id topic uri }
  }
}
""",
    cost=102,
)

WEBHOOK_CREATE = Operation(
    "ChannelSyncWebhookCreate",
    """
mutation ChannelSyncWebhookCreate(
  $topic: WebhookSubscriptionTopic!, $subscription: WebhookSubscriptionInput!
) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $subscription) {
    webhookSubscription { id topic uri }
    userErrors { field message }
  }
}
""",
    cost=10,
    is_mutation=True,
)
