"""The cost bucket: Shopify's leaky bucket per app and store (CHANNELS.md, "Rate limits").

A query is charged its requested cost before it runs and refunded the difference once its actual
cost is known; a query whose requested cost exceeds what the bucket holds is refused THROTTLED,
and one costing more than the single-query maximum is refused MAX_COST_EXCEEDED whatever the
bucket holds. The bucket refills continuously at the restore rate, up to its maximum (about 20x
the restore rate: Standard 100/s holds 2000).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

DEFAULT_RESTORE_RATE = 100.0
"""Points per second, the Standard plan's."""

BUCKET_SIZE_FACTOR = 20
"""The bucket holds this many seconds of restore."""

MAX_QUERY_COST = 1000
"""No single query may cost more."""


class CostBucket:
    """One store's bucket, on a monotonic clock."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        restore_rate: float = DEFAULT_RESTORE_RATE,
        maximum: float | None = None,
    ) -> None:
        self._clock = clock
        self.restore_rate = restore_rate
        self.maximum = maximum if maximum is not None else restore_rate * BUCKET_SIZE_FACTOR
        self._available = self.maximum
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._available = min(
            self.maximum, self._available + (now - self._stamp) * self.restore_rate
        )
        self._stamp = now

    @property
    def available(self) -> float:
        """Points in the bucket now."""
        self._refill()
        return self._available

    def take(self, cost: int) -> bool:
        """Charge `cost` if the bucket holds it; whether it did."""
        self._refill()
        if cost > self._available:
            return False
        self._available -= cost
        return True

    def refund(self, points: float) -> None:
        """Give back what a query was charged and did not use."""
        self._refill()
        self._available = min(self.maximum, self._available + max(points, 0.0))

    def configure(
        self,
        *,
        restore_rate: float | None = None,
        maximum: float | None = None,
        available: float | None = None,
    ) -> None:
        """Change the plan's figures, or set what the bucket holds now (tests drain it)."""
        self._refill()
        if restore_rate is not None:
            self.restore_rate = restore_rate
        if maximum is not None:
            self.maximum = maximum
        if available is not None:
            self._available = available
        self._available = min(self._available, self.maximum)

    def status(self) -> dict[str, Any]:
        """`throttleStatus` as Shopify reports it."""
        return {
            "maximumAvailable": float(self.maximum),
            "currentlyAvailable": int(self.available),
            "restoreRate": float(self.restore_rate),
        }


def cost_extension(requested: int, actual: int | None, bucket: CostBucket) -> dict[str, Any]:
    """`extensions.cost` of a response."""
    return {
        "cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": bucket.status(),
        }
    }


def throttled_answer(requested: int, bucket: CostBucket) -> dict[str, Any]:
    """The body of a THROTTLED answer (HTTP 200)."""
    return {
        "errors": [
            {
                "message": "Throttled",
                "extensions": {
                    "code": "THROTTLED",
                    "documentation": "https://shopify.dev/api/usage/rate-limits",
                },
            }
        ],
        "extensions": cost_extension(requested, None, bucket),
    }


def too_costly_answer(requested: int, bucket: CostBucket) -> dict[str, Any]:
    """The body of an answer to a query above the single-query maximum (HTTP 200)."""
    return {
        "errors": [
            {
                "message": f"Query cost is {requested}, which exceeds the single query max cost "
                f"limit ({MAX_QUERY_COST}).\n\nSee https://shopify.dev/concepts/about-apis/"
                "rate-limits for more information on how the\ncost of a query is calculated.\n\n"
                "To query larger amounts of data with fewer limits, bulk operations should be "
                "used instead.\nSee https://shopify.dev/tutorials/perform-bulk-operations-with-"
                "admin-api for usage details.\n",
                "extensions": {
                    "code": "MAX_COST_EXCEEDED",
                    "cost": requested,
                    "maxCost": MAX_QUERY_COST,
                },
            }
        ],
        "extensions": cost_extension(requested, None, bucket),
    }
