"""What the reference marketplace's API documents: paths, limits, statuses, and our pacing."""

from __future__ import annotations

from connectors.base import OrderStatus

API_PREFIX = "/v1"
MAX_PAGE_SIZE = 250
MAX_STOCK_READ = 100  # listing ids per GET /v1/stock
IDEMPOTENCY_HEADER = "Idempotency-Key"

STATUSES: dict[str, OrderStatus] = {
    "awaiting_payment": OrderStatus.PENDING,
    "unfulfilled": OrderStatus.OPEN,
    "partially_fulfilled": OrderStatus.PARTIALLY_SHIPPED,
    "fulfilled": OrderStatus.SHIPPED,
    "cancelled": OrderStatus.CANCELLED,
}
"""The marketplace's order status words, and ours."""

# One bucket per channel and operation. The reference marketplace publishes no quota (it
# throttles only when told to), so pace well above what a loopback run needs and let its 429s
# and Retry-After do the rest.
RATE_LIMIT = (50.0, 50.0)  # calls per second, burst

# In-connector retries of a failed call before the error goes back to the engine, which has its
# own (durable) retries: a few quick ones absorb a blip without delaying a whole batch.
ATTEMPTS = 3
BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 5.0
