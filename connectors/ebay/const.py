"""What eBay documents, in one place: hosts, paths, scopes, limits, quotas, statuses, topics.

Sources: ../shared/CHANNELS.md (eBay), eBay's developer documentation. Limits change; every number
the connector relies on is here, never scattered. Facts marked (unsure) are where the sources
disagree or are silent: the code is built for both readings and says which one it saw.
"""

from __future__ import annotations

from connectors.base import OrderStatus

API_BASE_URL = "https://api.ebay.com"
IDENTITY_URL = "https://api.ebay.com/identity/v1/oauth2/token"
CONSENT_URL = "https://auth.ebay.com/oauth2/authorize"
TRADING_URL = "https://api.ebay.com/ws/api.dll"

# OAuth --------------------------------------------------------------------------------------

SCOPE_ROOT = "https://api.ebay.com/oauth/api_scope"
USER_SCOPES = (f"{SCOPE_ROOT}/sell.fulfillment", f"{SCOPE_ROOT}/sell.inventory")
"""Scopes the seller consents to and every refresh asks for (a refresh may ask only for scopes
the consent covered). The Trading API takes any user token of the authorization-code flow."""
APP_SCOPES = (SCOPE_ROOT,)
"""Client-credentials scope: enough for the Notification API's getPublicKey."""

# Renew a user or application token this long before eBay says it expires (it lasts ~2 hours),
# so that no call leaves with a token that dies on the way.
TOKEN_RENEW_MARGIN_S = 300.0
TOKEN_DEFAULT_LIFETIME_S = 7200.0  # when an answer leaves out expires_in

# REST paths ----------------------------------------------------------------------------------

ORDERS_PATH = "/sell/fulfillment/v1/order"
ORDER_PATH = "/sell/fulfillment/v1/order/{order_id}"
SHIPPING_FULFILLMENTS_PATH = "/sell/fulfillment/v1/order/{order_id}/shipping_fulfillment"
BULK_UPDATE_PATH = "/sell/inventory/v1/bulk_update_price_quantity"
INVENTORY_ITEMS_PATH = "/sell/inventory/v1/inventory_item"
BULK_GET_ITEMS_PATH = "/sell/inventory/v1/bulk_get_inventory_item"
OFFERS_PATH = "/sell/inventory/v1/offer"
PUBLIC_KEY_PATH = "/commerce/notification/v1/public_key/{kid}"

MARKETPLACE_HEADER = "X-EBAY-C-MARKETPLACE-ID"

ORDERS_PAGE = 200  # getOrders: limit defaults to 50, at most 200
ORDER_OVERLAP_S = 120.0  # re-read this much before the checkpoint: eBay's search lags its writes
INVENTORY_ITEMS_PAGE = 100  # getInventoryItems page size
BULK_GET_BATCH = 25  # bulkGetInventoryItem requests per call
LISTED_HELD = 2_000  # orders of the latest getOrders version pages held for the reads that follow
DETAIL_CONCURRENCY = 4  # shipping-fulfilment reads in flight at once during an order page

# Stock --------------------------------------------------------------------------------------

TRADING_BATCH = 4  # ReviseInventoryStatus: at most 4 InventoryStatus containers per call
# bulkUpdatePriceQuantity is documented both as "up to 25" and "only one SKU per call" (unsure):
# batches of 25 are sent, and a batch refused as a whole is sent again one entry per call.
INVENTORY_BATCH = 25
LISTING_REVISIONS_PER_DAY = 250  # eBay ends revisions of one listing for the day past this
# The last few revisions of a day are kept for showing 0: a sold-out listing must still stop
# selling, while a restock can wait for tomorrow.
ZERO_RESERVE = 10
# Past this many revisions of one listing in a day, its pushes are spaced out so that what is
# left lasts until the day ends (the engine coalesces the targets held back meanwhile).
REVISION_PACING_FROM = 125

STOCK_API_TRADING = "trading"
STOCK_API_INVENTORY = "inventory"

# Daily call quotas (defaults, check per account), by API family.
API_FULFILLMENT = "fulfillment"
API_INVENTORY = "inventory"
API_NOTIFICATION = "notification"
API_TRADING = "trading"
DEFAULT_DAILY_QUOTAS: dict[str, int] = {
    API_FULFILLMENT: 100_000,
    API_INVENTORY: 2_000_000,
    API_NOTIFICATION: 10_000,
    API_TRADING: 5_000,  # raised after eBay's application growth check
}
# Quotas reset at midnight Pacific time (unsure: eBay's analytics report a rolling `reset`
# instant per resource; the call-limit pages say daily). Day boundaries here use Pacific time.
QUOTA_TIME_ZONE = "America/Los_Angeles"
QUOTA_PACING_FROM = 0.5  # share of a day's quota after which calls are spread over what is left
QUOTA_RESERVE = 0.02  # share kept for status out (shipments) when the rest is spent
QUOTA_MAX_INLINE_WAIT_S = 5.0  # longer pacing waits go back to the caller as RateLimitedError

# Client-side pacing per operation (eBay meters REST by the day; these only keep bursts polite).
# Trading allows 6000 calls per 15 s per seller. At 10/s, a getOrder per order notification
# queued eBay's orders at 16 orders/s (bench/e2e.py at 50/s: ingest p50 0.8 s, p99 1.7 s);
# the daily quotas are kept by QUOTA_PACING_FROM, not by this.
REST_RATE = (25.0, 50.0)  # (per second, burst)
TRADING_RATE = (50.0, 50.0)

# In-connector retries before the error goes back to the engine's own durable retries.
ATTEMPTS = 4
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 10.0
TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5.0

# Trading API (XML) ---------------------------------------------------------------------------

TRADING_NS = "urn:ebay:apis:eBLBaseComponents"
TRADING_COMPATIBILITY = "1423"
TRADING_LISTINGS_PAGE = 200  # GetMyeBaySelling EntriesPerPage maximum
# Error codes (ErrorCode) by what to do next; the rest are the request's own fault. 931/932 are
# the documented invalid/expired token codes; the IAF (OAuth) ones are as seen reported (unsure).
TRADING_AUTH_ERRORS = frozenset({"931", "932", "16110", "21916984", "21917053"})
TRADING_QUOTA_ERRORS = frozenset({"518"})  # "call usage limit has been reached"
TRADING_RETRY_ERRORS = frozenset({"10007", "16100"})  # internal error / try again later
TRADING_REDUNDANT = "21917091"  # warning: price and quantity already as requested

# site ids of the Trading API by REST marketplace id (unknown ones fall back to 0, the US site:
# ReviseInventoryStatus and GetMyeBaySelling act on the seller's listings on every site).
SITE_IDS: dict[str, int] = {
    "EBAY_US": 0,
    "EBAY_CA": 2,
    "EBAY_GB": 3,
    "EBAY_AU": 15,
    "EBAY_AT": 16,
    "EBAY_BE": 23,
    "EBAY_FR": 71,
    "EBAY_DE": 77,
    "EBAY_MOTORS_US": 100,
    "EBAY_IT": 101,
    "EBAY_NL": 146,
    "EBAY_ES": 186,
    "EBAY_CH": 193,
    "EBAY_HK": 201,
    "EBAY_IN": 203,
    "EBAY_IE": 205,
    "EBAY_MY": 207,
    "EBAY_PH": 211,
    "EBAY_PL": 212,
    "EBAY_SG": 216,
}

# Orders --------------------------------------------------------------------------------------

FULFILLMENT_STATUSES: dict[str, OrderStatus] = {
    "FULFILLED": OrderStatus.SHIPPED,
    "IN_PROGRESS": OrderStatus.PARTIALLY_SHIPPED,
}
"""orderFulfillmentStatus -> status (NOT_STARTED: open, or pending until paid)."""
UNPAID_PAYMENT_STATUSES = frozenset({"PENDING", "FAILED"})
"""orderPaymentStatus values of an order eBay has not been paid for yet."""
REFUNDED_PAYMENT_STATUS = "FULLY_REFUNDED"  # nothing shipped and all refunded: cancelled
CANCELLED_STATE = "CANCELED"  # cancelStatus.cancelState once the cancellation went through
LINE_FULFILLED = "FULFILLED"  # lineItemFulfillmentStatus of a line whose units all left

# Carrier names sellers type -> eBay's shipping carrier codes (GeteBayDetails ShippingCarrier
# values); anything else is sent as typed (unsure: the REST docs list no enumeration).
CARRIER_CODES: dict[str, str] = {
    "usps": "USPS",
    "ups": "UPS",
    "fedex": "FedEx",
    "dhl": "DHL",
    "royal mail": "RoyalMail",
    "royalmail": "RoyalMail",
    "deutsche post": "DeutschePost",
    "hermes": "Hermes",
    "evri": "Hermes",
    "canada post": "CanadaPost",
    "australia post": "AustraliaPost",
}

# Notifications -------------------------------------------------------------------------------

TOPIC_ACCOUNT_DELETION = "MARKETPLACE_ACCOUNT_DELETION"
TOPIC_ORDER_CONFIRMATION = "ORDER_CONFIRMATION"
TOPIC_ITEM_MARKED_SHIPPED = "ITEM_MARKED_SHIPPED"
TOPIC_AUTHORIZATION_REVOCATION = "AUTHORIZATION_REVOCATION"
ORDER_HINT_TOPICS = frozenset({TOPIC_ORDER_CONFIRMATION, TOPIC_ITEM_MARKED_SHIPPED})
SIGNATURE_HEADER = "x-ebay-signature"
PUBLIC_KEY_TTL_S = 3600.0  # eBay: cache the public key about an hour
UNKNOWN_KEY_TTL_S = 300.0  # an unknown kid is not asked for again for a while
