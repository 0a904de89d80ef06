"""What the Selling Partner API documents, in one place: hosts, versions, limits, statuses, codes.

Every number here comes from CHANNELS.md (Amazon) or, where it is silent, from Amazon's own
models in ../shared/specs (each such line says so). Nothing else in the package hard-codes one.
"""

from __future__ import annotations

from datetime import timedelta

from connectors.base import OrderStatus

# Hosts -----------------------------------------------------------------------------------------

REGION_HOSTS: dict[str, str] = {
    "na": "https://sellingpartnerapi-na.amazon.com",
    "eu": "https://sellingpartnerapi-eu.amazon.com",
    "fe": "https://sellingpartnerapi-fe.amazon.com",
}
LWA_TOKEN_URL = "https://api.amazon.com/auth/o2/token"  # noqa: S105 (an address, not a secret)

SQS_REGIONS: dict[str, str] = {"na": "us-east-1", "eu": "eu-west-1", "fe": "us-west-2"}
"""AWS region of the SQS client when the queue URL does not name one (a loopback server)."""

# Paths and versions ----------------------------------------------------------------------------

ORDERS_PATH = "/orders/2026-01-01/orders"
ORDER_PATH = "/orders/2026-01-01/orders/{}"
FEEDS_PATH = "/feeds/2021-06-30/feeds"
FEED_DOCUMENTS_PATH = "/feeds/2021-06-30/documents"
FEED_DOCUMENT_PATH = "/feeds/2021-06-30/documents/{}"
REPORTS_PATH = "/reports/2021-06-30/reports"
REPORT_DOCUMENT_PATH = "/reports/2021-06-30/documents/{}"

# Operation names: the keys of RATE_LIMITS, the `operation` of every error and log line.
SEARCH_ORDERS = "searchOrders"
GET_ORDER = "getOrder"
GET_ORDERS_V0 = "getOrders"
GET_ORDER_ITEMS_V0 = "getOrderItems"
CONFIRM_SHIPMENT = "confirmShipment"
PATCH_LISTING = "patchListingsItem"
GET_LISTING = "getListingsItem"
SEARCH_LISTINGS = "searchListingsItems"
CREATE_FEED_DOCUMENT = "createFeedDocument"
CREATE_FEED = "createFeed"
GET_FEED = "getFeed"
GET_FEED_DOCUMENT = "getFeedDocument"
UPLOAD_FEED_DOCUMENT = "uploadFeedDocument"  # PUT to S3's presigned URL: not an SP-API call
DOWNLOAD_FEED_DOCUMENT = "downloadFeedDocument"  # GET of the report from S3
CREATE_REPORT = "createReport"
GET_REPORT = "getReport"
GET_REPORT_DOCUMENT = "getReportDocument"
DOWNLOAD_REPORT_DOCUMENT = "downloadReportDocument"  # GET of a report document from S3
LWA_TOKEN = "lwaToken"  # noqa: S105 (an operation name)

# Rate limits -----------------------------------------------------------------------------------

RATE_LIMITS: dict[str, tuple[float, float]] = {
    SEARCH_ORDERS: (0.0056, 20),
    GET_ORDER: (0.5, 30),
    GET_ORDERS_V0: (0.0167, 20),
    GET_ORDER_ITEMS_V0: (0.5, 30),
    CONFIRM_SHIPMENT: (2.0, 10),
    PATCH_LISTING: (5.0, 5),
    CREATE_FEED_DOCUMENT: (0.5, 15),
    CREATE_FEED: (0.0083, 15),
    GET_FEED: (2.0, 15),
    GET_FEED_DOCUMENT: (0.0222, 10),
    # Not in CHANNELS.md: the usage plans in reports_2021-06-30.json.
    CREATE_REPORT: (0.0167, 15),
    GET_REPORT: (2.0, 15),
    GET_REPORT_DOCUMENT: (0.0167, 15),
    # Not in CHANNELS.md: the usage plans in listingsItems_2021-08-01.json.
    GET_LISTING: (5.0, 10),
    SEARCH_LISTINGS: (5.0, 5),
    # Login with Amazon publishes no plan; a token lasts an hour, so a few calls an hour is all
    # a healthy channel makes. A slow bucket keeps a broken one from hammering it.
    LWA_TOKEN: (0.2, 3),
}
"""(requests per second, burst) per operation; our buckets are keyed per seller and operation."""

PACED_LIMITS: dict[str, tuple[float, float]] = {
    operation: (rate, max(1.0, burst - 1)) for operation, (rate, burst) in RATE_LIMITS.items()
}
"""What our buckets allow: Amazon's rate, one token of burst kept in hand. Calls paced exactly at
the bucket's rate leave Amazon's bucket empty, and two requests that leave 1/rate apart can arrive
closer (concurrent connections, scheduling): the kept token absorbs that jitter instead of a 429
(the e2e test saw one in forty patches without it). It also covers a bucket not full at start."""

# Retries and time limits -----------------------------------------------------------------------

ATTEMPTS = 4
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 30.0
TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5.0
AUTH_FAILURE_HOLD_S = 300.0
"""After Login with Amazon refused the refresh token, calls fail at once for this long without
asking it again (check_connection always asks): a revoked token must not become a retry storm."""

TOKEN_CACHE_TTL_S = 3000
"""LWA access tokens live 3600 s; cached a little less so none is used as it expires."""
TOKEN_CACHE_SLACK = 10
"""Token cache entries beyond one per configured seller (grantless tokens, a re-authorised one)."""

# Orders ----------------------------------------------------------------------------------------

ORDERS_PAGE = 100  # searchOrders maxResultsPerPage: 1-100
ORDER_DATA_LAG = timedelta(minutes=3)
"""CHANNELS.md: order data lags about 2 minutes, so every search starts this much before the
engine's checkpoint (at least 2 minutes; the repeats are absorbed by idempotent ingest)."""
INCLUDED_DATA = ("BUYER", "RECIPIENT", "PROCEEDS", "CANCELLATION", "FULFILLMENT", "PACKAGES")
"""What the mapper reads besides the items: buyer e-mail, ship-to, money, cancellations, status
and fulfilment channel, parcels."""

FULFILLMENT_STATUSES: dict[str, OrderStatus] = {
    "PENDING_AVAILABILITY": OrderStatus.PENDING,  # a pre-order: the buyer committed
    "PENDING": OrderStatus.PENDING,  # no price yet; reserved anyway, the buyer committed
    "UNSHIPPED": OrderStatus.OPEN,
    "PARTIALLY_SHIPPED": OrderStatus.PARTIALLY_SHIPPED,
    "SHIPPED": OrderStatus.SHIPPED,
    "CANCELLED": OrderStatus.CANCELLED,
    # Multi-channel fulfilment orders Amazon cannot fulfil: nothing will ship, nothing is held.
    "UNFULFILLABLE": OrderStatus.CANCELLED,
}
"""Orders 2026-01-01 `fulfillment.fulfillmentStatus` -> canonical status."""

V0_ORDER_STATUSES: dict[str, OrderStatus] = {
    "PendingAvailability": OrderStatus.PENDING,
    "Pending": OrderStatus.PENDING,
    "Unshipped": OrderStatus.OPEN,
    "PartiallyShipped": OrderStatus.PARTIALLY_SHIPPED,
    "Shipped": OrderStatus.SHIPPED,
    "InvoiceUnconfirmed": OrderStatus.SHIPPED,  # shipped; the invoice is not confirmed yet
    "Canceled": OrderStatus.CANCELLED,
    "Unfulfillable": OrderStatus.CANCELLED,
}
"""Orders v0 `OrderStatus` (and ORDER_CHANGE summaries) -> canonical status."""

AMAZON_FULFILLED = frozenset({"AMAZON", "AFN"})
"""fulfilledBy (2026-01-01) / FulfillmentChannel (v0) values of orders Amazon ships from its own
stock (FBA): recorded, but they reserve nothing of ours."""

SHIPPED_PACKAGE_STATUSES = frozenset({"IN_TRANSIT", "SHIPPED", "DELIVERED"})
"""Package statuses that mean the parcel left (PENDING may still be cancelled)."""

MARKETPLACE_CURRENCIES: dict[str, str] = {
    "ATVPDKIKX0DER": "USD",  # US
    "A2EUQ1WTGCTBG2": "CAD",  # CA
    "A1AM78C64UM0Y8": "MXN",  # MX
    "A2Q3Y263D00KWC": "BRL",  # BR
    "A1F83G8C2ARO7P": "GBP",  # UK
    "A1PA6795UKMFR9": "EUR",  # DE
    "A13V1IB3VIYZZH": "EUR",  # FR
    "APJ6JRA9NG5V4": "EUR",  # IT
    "A1RKKUPIHCS9HS": "EUR",  # ES
    "A1805IZSGTT6HS": "EUR",  # NL
    "AMEN7PMS3EDWL": "EUR",  # BE
    "A28R8C7NBKEWEA": "EUR",  # IE
    "A2NODRKZP88ZB9": "SEK",  # SE
    "A1C3SOZRARQ6R3": "PLN",  # PL
    "A33AVAJ2PDY3EV": "TRY",  # TR
    "A2VIGQ35RCS4UG": "AED",  # AE
    "A17E79C6D8DWNP": "SAR",  # SA
    "ARBP9OOSHTCHU": "EGP",  # EG
    "A21TJRUUN4KGV": "INR",  # IN
    "AE08WJ6YKNBMC": "ZAR",  # ZA
    "A1VC38T7YXB528": "JPY",  # JP
    "A39IBJ37TRP1C6": "AUD",  # AU
    "A19VAU5U5O7RUS": "SGD",  # SG
}
"""The currency of an order that carries no money yet (Pending orders have no prices)."""

# Stock -----------------------------------------------------------------------------------------

PRODUCT_TYPE = "PRODUCT"  # CHANNELS.md: the generic type a fulfillment_availability patch takes
FULFILLMENT_AVAILABILITY_PATH = "/attributes/fulfillment_availability"
MERCHANT_CHANNEL_CODE = "DEFAULT"  # merchant-fulfilled stock; AMAZON_* is FBA, never ours to set
PATCH_CONCURRENCY = 5  # patches in flight at once; the bucket (5/s, burst 5) paces them anyway
PATCH_CLAIM = 5  # listings a patch-sized push takes: what the bucket (burst 5) sends at once
# Tokens of patchListingsItem's bucket a patch leaves to a push to a listing's last units
# (StockTarget.urgent), which then goes at once however long the queue of patches before it:
# at 5/s a burst of ordinary patches held it up to a second, the window of an oversell.
# Throughput is the same: the bucket still restores 5 a second, all of them spent.
URGENT_PATCH_RESERVE = 2.0
FEED_THRESHOLD = 50
"""Default: a push of more listings than this goes as one JSON_LISTINGS_FEED, not patches."""
FEED_MAX_MESSAGES = 25_000
FEED_TYPE = "JSON_LISTINGS_FEED"
FEED_VERSION = "2.0"
FEED_CONTENT_TYPE = "application/json; charset=UTF-8"
FEED_ISSUE_LOCALE = "en_US"
FEED_DONE = "DONE"
FEED_FAILED = frozenset({"FATAL", "CANCELLED"})
FEED_POLL_FIRST_S = 2.0
FEED_POLL_MAX_S = 30.0
FEED_DEADLINE_S = 3600.0
"""A feed not finished by then is given up on: its listings come back RETRY."""

# Order reports (the reconcile's list of what changed) -----------------------------------------

ORDER_REPORT_TYPE = "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL"
ORDER_REPORT_MAX_WINDOW = timedelta(days=30)
"""Amazon produces this report for at most 30 days of last updates."""
ORDER_REPORT_POLL_AFTER = timedelta(minutes=10)
"""With notifications, a poll that has not finished for this long lists its window from a report:
searchOrders' 100 orders every 3 minutes fall behind a seller taking more than one order every
2 seconds, while the notices have stored most of them already."""
ORDER_REPORTS_HELD = (
    4  # reports whose versions stay in memory: a poll's and a reconcile's, and spare
)
ORDER_REPORT_PAGE = 100  # versions per page handed to the reconcile, as searchOrders' pages
REPORT_REFUSAL_HOLD_S = 3600.0
"""After Amazon refused createReport (a role not granted), reports are not asked for this long."""
REPORT_DONE = "DONE"
REPORT_NO_DATA = "CANCELLED"  # Amazon cancels a report that found nothing to report
REPORT_FAILED = "FATAL"
REPORT_POLL_FIRST_S = 2.0
REPORT_POLL_MAX_S = 30.0
REPORT_DEADLINE_S = 1200.0
"""A report not produced by then fails the reconcile (RetryableError); the next one asks again."""

# Shipments -------------------------------------------------------------------------------------

OTHER_CARRIER = "Other"
CARRIER_CODES: dict[str, str] = {
    "usps": "USPS",
    "ups": "UPS",
    "upsmailinnovations": "UPS Mail Innovations",
    "fedex": "FedEx",
    "fedexsmartpost": "FedEx SmartPost",
    "dhl": "DHL",
    "dhlexpress": "DHL",
    "dhlecommerce": "DHL eCommerce",
    "ontrac": "OnTrac",
    "lasership": "Lasership",
    "amazonshipping": "Amazon Shipping",
    "canadapost": "Canada Post",
    "royalmail": "Royal Mail",
    "parcelforce": "Parcelforce",
    "dpd": "DPD",
    "evri": "Evri",
    "yodel": "Yodel",
    "gls": "GLS",
    "deutschepost": "Deutsche Post",
    "chronopost": "Chronopost",
    "laposte": "La Poste",
    "correos": "Correos",
    "posteitaliane": "Poste Italiane",
    "tnt": "TNT",
    "australiapost": "Australia Post",
    "indiapost": "India Post",
    "delhivery": "Delhivery",
}
"""Our carrier names (lower case, letters and digits only) -> Amazon's carrierCode values. Any
other carrier goes as "Other" with its name in carrierName: Amazon validates carrier codes, and a
wrong code leaves the order looking late to the buyer. Only codes seen in Amazon's carrier list
are here; a channel file maps its own names (`carrier_codes`) for the rest."""
CONFIRM_VISIBLE_GRACE = timedelta(minutes=10)
"""A confirmed shipment the order still does not show after this is alerted (once)."""
READ_BACK_MAX = 20
"""Orders re-read with getOrder per read-back round (its bucket: 0.5/s, burst 30)."""

# Notifications ---------------------------------------------------------------------------------

ORDER_CHANGE = "ORDER_CHANGE"
SQS_WAIT_S = 20  # long poll: the most SQS allows
SQS_MAX_MESSAGES = 10  # the most one ReceiveMessage returns
