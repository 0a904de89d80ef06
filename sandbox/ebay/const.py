"""eBay's numbers as the sandbox applies them, in one place (CHANNELS.md, eBay).

Error ids and codes marked *(unsure)* are the sandbox's own where eBay's exact number was not in
our sources; connectors must classify by HTTP status, `category` and `Ack`, never by these.
"""

from __future__ import annotations

from types import MappingProxyType

# ---- OAuth ----------------------------------------------------------------------------------
API_SCOPE = "https://api.ebay.com/oauth/api_scope"
"""The base scope an application (client-credentials) token carries."""
SELL_SCOPES = (
    "https://api.ebay.com/oauth/api_scope/sell.fulfillment",
    "https://api.ebay.com/oauth/api_scope/sell.inventory",
    "https://api.ebay.com/oauth/api_scope/commerce.notification.subscription",
)
"""What the seller's consent grants the application, and so what its user tokens carry."""
FULFILLMENT_SCOPE = SELL_SCOPES[0]
INVENTORY_SCOPE = SELL_SCOPES[1]
ACCESS_TOKEN_TTL_S = 7200
"""An access token lasts about 2 hours."""
REFRESH_TOKEN_TTL_S = 47_304_000
"""A refresh token lasts about 18 months."""
AUTH_CODE_TTL_S = 299

# ---- Fulfillment API ------------------------------------------------------------------------
ORDERS_DEFAULT_LIMIT = 50
ORDERS_MAX_LIMIT = 200
ORDER_IDS_MAX = 50
ORDERS_DEFAULT_WINDOW_DAYS = 90
"""Without a filter getOrders answers the orders created in the last 90 days."""

# ---- Inventory API --------------------------------------------------------------------------
BULK_UPDATE_MAX = 25
"""bulkUpdatePriceQuantity requests per call: documented as 25 and also as "one SKU per call"
(unsure); the sandbox takes 25 unless started with another maximum."""
INVENTORY_ITEMS_MAX_LIMIT = 200
BULK_GET_MAX = 25
"""bulkGetInventoryItem requests per call."""

# ---- Trading API ----------------------------------------------------------------------------
TRADING_NAMESPACE = "urn:ebay:apis:eBLBaseComponents"
TRADING_VERSION = "1423"
TRADING_BUILD = "E1423_CORE_APISELLING_SANDBOX"
REVISE_INVENTORY_MAX = 4
"""InventoryStatus containers per ReviseInventoryStatus call."""
TRADING_ORDERS_MAX_PER_PAGE = 100
TRADING_ORDERS_MAX_AGE_DAYS = 90
MY_EBAY_MAX_PER_PAGE = 200
TRADING_BODY_MAX_BYTES = 1_000_000

# ---- Limits per day -------------------------------------------------------------------------
DAILY_REVISIONS_PER_LISTING = 250
"""A listing can be revised at most 250 times a day."""
DEFAULT_DAILY_QUOTAS = MappingProxyType(
    {"fulfillment": 100_000, "inventory": 2_000_000, "notification": 10_000, "trading": 5_000}
)
"""Per-API calls a day, eBay's defaults before an application growth check. The day is the UTC
calendar day here (eBay's reset hour was not in our sources: unsure)."""

# ---- REST error ids -------------------------------------------------------------------------
ERR_INVALID_TOKEN = 1001  # OAuth: "Invalid access token"
ERR_INSUFFICIENT_PERMISSIONS = 1100  # "Access denied": wrong token type or scope
ERR_TOO_MANY_REQUESTS = 2001  # ACCESS: "Too many requests"
ERR_INTERNAL = 2003  # ACCESS/APPLICATION: internal error
ERR_INVALID_FILTER = 30700  # (unsure)
ERR_INVALID_PARAMETER = 30800  # (unsure)
ERR_ORDER_NOT_FOUND = 32100
ERR_INVALID_FULFILLMENT = 32400  # (unsure)
ERR_FULFILLMENT_NOT_FOUND = 32500  # (unsure)
ERR_INVENTORY_NOT_FOUND = 25702  # (unsure)
ERR_INVENTORY_INVALID = 25709  # (unsure)
ERR_REVISION_LIMIT_REST = 25760  # (unsure)
ERR_PUBLIC_KEY_NOT_FOUND = 195004  # (unsure)

# ---- Trading error codes --------------------------------------------------------------------
CODE_UNSUPPORTED_CALL = 2  # "Unsupported API call"
CODE_ITEM_NOT_FOUND = 17  # "Item cannot be accessed"
CODE_USAGE_LIMIT = 518  # "Call usage limit has been reached"
CODE_AUTH_TOKEN_INVALID = 931  # Auth'n'auth token invalid (the sandbox issues none)
CODE_INTERNAL = 10007  # "Internal error to the application"
CODE_INVALID_IAF_TOKEN = 21916984  # (unsure)
CODE_REDUNDANT_REVISION = 21917091  # warning: same price and quantity as now
CODE_BAD_REQUEST = 10009  # (unsure) a malformed or missing field
CODE_TOO_MANY_STATUSES = 21919142  # (unsure) more than four InventoryStatus
CODE_INVENTORY_LISTING = 21919474  # (unsure) an Inventory-API listing revised through Trading
CODE_REVISION_LIMIT = 21919186  # (unsure) the listing's daily revisions are used up
CODE_LISTING_ENDED = 291  # "Auction ended": the listing is no longer active
CODE_ORDER_NOT_FOUND = 20822  # (unsure) CompleteSale on an unknown order
