"""Per-day limits: each API's call quota for the application, and each listing's revisions.

Both count per UTC calendar day of the sandbox's clock and start again at midnight. A call past
an API's quota is refused (REST: HTTP 429; Trading: error 518) and not applied; a revision past
a listing's daily maximum is refused for that listing alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta

from sandbox.ebay.const import DAILY_REVISIONS_PER_LISTING, DEFAULT_DAILY_QUOTAS

OPERATION_APIS = {
    "getOrders": "fulfillment",
    "getOrder": "fulfillment",
    "createShippingFulfillment": "fulfillment",
    "getShippingFulfillments": "fulfillment",
    "getShippingFulfillment": "fulfillment",
    "bulkUpdatePriceQuantity": "inventory",
    "getInventoryItems": "inventory",
    "bulkGetInventoryItem": "inventory",
    "getOffers": "inventory",
    "getPublicKey": "notification",
    "ReviseInventoryStatus": "trading",
    "GetOrders": "trading",
    "CompleteSale": "trading",
    "GetItem": "trading",
    "GetMyeBaySelling": "trading",
}
"""Which API's daily quota an operation draws on (the token and analytics calls draw on none)."""


class DailyLimits:
    """Calls per API and revisions per listing, today."""

    def __init__(
        self,
        now: Callable[[], datetime],
        *,
        quotas: Mapping[str, int] = DEFAULT_DAILY_QUOTAS,
        revisions_per_listing: int = DAILY_REVISIONS_PER_LISTING,
    ) -> None:
        self._now = now
        self.quotas = dict(quotas)
        self.revisions_per_listing = revisions_per_listing
        self._day = self._today()
        self.used: Counter[str] = Counter()
        self.revisions: Counter[str] = Counter()

    def _today(self) -> date:
        return self._now().astimezone(UTC).date()

    def _roll(self) -> None:
        today = self._today()
        if today != self._day:
            self._day = today
            self.used.clear()
            self.revisions.clear()

    def reset_at(self) -> datetime:
        """When today's counts start again (the next UTC midnight)."""
        self._roll()
        return datetime.combine(self._day + timedelta(days=1), time(0), tzinfo=UTC)

    # ---- API calls --------------------------------------------------------------------------

    def take_call(self, api: str) -> bool:
        """Count one call against `api`'s quota; False (and not counted) when it is used up."""
        self._roll()
        limit = self.quotas.get(api)
        if limit is not None and self.used[api] >= limit:
            return False
        self.used[api] += 1
        return True

    def remaining(self, api: str) -> int | None:
        """Calls `api` has left today (None: no quota)."""
        self._roll()
        limit = self.quotas.get(api)
        return None if limit is None else max(limit - self.used[api], 0)

    # ---- listing revisions ------------------------------------------------------------------

    def revisions_left(self, item_id: str) -> int:
        """Revisions the listing has left today."""
        self._roll()
        return max(self.revisions_per_listing - self.revisions[item_id], 0)

    def count_revision(self, item_id: str) -> None:
        """One more revision of the listing today."""
        self._roll()
        self.revisions[item_id] += 1

    # ---- shown and set by the control API ---------------------------------------------------

    def describe(self) -> dict[str, object]:
        """Quotas, use and revisions, for `/_sandbox/quotas`."""
        self._roll()
        return {
            "day": self._day.isoformat(),
            "reset_at": self.reset_at().isoformat().replace("+00:00", "Z"),
            "apis": {
                api: {"limit": limit, "used": self.used[api], "remaining": self.remaining(api)}
                for api, limit in sorted(self.quotas.items())
            },
            "revisions_per_listing": self.revisions_per_listing,
            "revisions": dict(sorted(self.revisions.items())),
        }

    def configure(
        self,
        *,
        quotas: Mapping[str, int] | None = None,
        used: Mapping[str, int] | None = None,
        revisions_per_listing: int | None = None,
        revisions: Mapping[str, int] | None = None,
    ) -> None:
        """Change limits or today's counts (a test's way to stand near a limit)."""
        self._roll()
        if quotas is not None:
            self.quotas.update(quotas)
        for api, count in (used or {}).items():
            self.used[api] = count
        if revisions_per_listing is not None:
            self.revisions_per_listing = revisions_per_listing
        for item_id, count in (revisions or {}).items():
            self.revisions[item_id] = count
