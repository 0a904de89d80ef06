"""Per-operation token buckets at Amazon's published usage plans (CHANNELS.md, "Rate limits").

Each operation has a bucket holding `burst` tokens that refills at `rate` tokens per second; a
call takes one token or, when the bucket is empty, is refused with HTTP 429 and counted as a call
over the bucket. Amazon answers 429 without Retry-After; `x-amzn-RateLimit-Limit` carries the
rate applied (the sandbox sends it on every answer of a rate-limited operation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class UsagePlan:
    """An operation's rate (requests per second) and burst."""

    rate: float
    burst: int


USAGE_PLANS: Mapping[str, UsagePlan] = {
    "searchOrders": UsagePlan(0.0056, 20),
    "getOrder": UsagePlan(0.5, 30),
    "getOrders": UsagePlan(0.0167, 20),
    "getOrderItems": UsagePlan(0.5, 30),
    "confirmShipment": UsagePlan(2.0, 10),
    "patchListingsItem": UsagePlan(5.0, 5),
    "getListingsItem": UsagePlan(5.0, 10),
    "searchListingsItems": UsagePlan(5.0, 5),
    "createFeedDocument": UsagePlan(0.5, 15),
    "createFeed": UsagePlan(0.0083, 15),
    "getFeed": UsagePlan(2.0, 15),
    "getFeedDocument": UsagePlan(0.0222, 10),
    "createReport": UsagePlan(0.0167, 15),
    "getReport": UsagePlan(2.0, 15),
    "getReportDocument": UsagePlan(0.0167, 15),
}
"""The default usage plans of the operations the sandbox serves (getListingsItem,
searchListingsItems and the Reports API's from the models' own tables; the others from
CHANNELS.md)."""


def rate_header(plan: UsagePlan) -> str:
    """The `x-amzn-RateLimit-Limit` value of a plan."""
    return f"{plan.rate:g}"


class TokenBucket:
    """One operation's bucket, on a monotonic clock; starts full."""

    def __init__(self, clock: Callable[[], float], plan: UsagePlan) -> None:
        self._clock = clock
        self.plan = plan
        self._tokens = float(plan.burst)
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(
            float(self.plan.burst), self._tokens + (now - self._stamp) * self.plan.rate
        )
        self._stamp = now

    @property
    def tokens(self) -> float:
        """Tokens in the bucket now."""
        self._refill()
        return self._tokens

    def take(self) -> bool:
        """Take a token if there is one; whether it did."""
        self._refill()
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def replan(self, plan: UsagePlan) -> None:
        """Change the rate and burst, keeping what the bucket holds (capped at the new burst)."""
        self._refill()
        self.plan = plan
        self._tokens = min(self._tokens, float(plan.burst))


class Throttle:
    """The buckets of one seller account, one per operation."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.buckets = {op: TokenBucket(clock, plan) for op, plan in USAGE_PLANS.items()}

    def plan(self, operation: str) -> UsagePlan | None:
        """The usage plan in force for an operation; None when it is not rate-limited here."""
        bucket = self.buckets.get(operation)
        return bucket.plan if bucket else None

    def take(self, operation: str) -> bool:
        """Charge one call to the operation's bucket; False when it is empty."""
        bucket = self.buckets.get(operation)
        return bucket.take() if bucket else True

    def configure(self, plans: Mapping[str, UsagePlan], *, refill: bool = False) -> None:
        """Override some operations' plans (the others go back to Amazon's); `refill` fills every
        bucket."""
        for operation, default in USAGE_PLANS.items():
            bucket = self.buckets[operation]
            bucket.replan(plans.get(operation, default))
            if refill:
                self.buckets[operation] = TokenBucket(self._clock, bucket.plan)

    def status(self) -> dict[str, dict[str, float]]:
        """Each bucket's plan and tokens, for `/_sandbox/calls`."""
        return {
            op: {"rate": b.plan.rate, "burst": b.plan.burst, "tokens": round(b.tokens, 3)}
            for op, b in sorted(self.buckets.items())
        }
