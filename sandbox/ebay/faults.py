"""Fault knobs of a sandbox eBay account, as `POST /_sandbox/faults` sets them (a POST replaces
them all; `{}` switches every fault off).

API calls: per operation (eBay's names: `getOrders`, `createShippingFulfillment`,
`bulkUpdatePriceQuantity`, `bulkGetInventoryItem`, `getPublicKey`, `token` for the OAuth endpoint, and the Trading call
names such as `ReviseInventoryStatus` and `GetOrders`), a rate of 5xx answers, of HTTP 429 (for
Trading: error 518), of timeouts (the answer held past the client's timeout; by default after
the call was applied), and added latency; `next` queues exact faults for an operation's next
calls. A call's fault is drawn when it arrives, from the account's seeded generator, so a
seeded run repeats.

Notifications: a drop rate (never sent), a duplicate rate (sent twice with the same
notificationId), a bad-signature rate (signed with a key eBay never published), a delay, a
random jitter (which reorders deliveries), the retry schedule of failed deliveries, the
delivery timeout and the body's layout.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

OPERATIONS = frozenset(
    {
        "token",
        "getOrders",
        "getOrder",
        "createShippingFulfillment",
        "getShippingFulfillments",
        "getShippingFulfillment",
        "bulkUpdatePriceQuantity",
        "getInventoryItems",
        "bulkGetInventoryItem",
        "getOffers",
        "getPublicKey",
        "getRateLimits",
        "ReviseInventoryStatus",
        "GetOrders",
        "CompleteSale",
        "GetItem",
        "GetMyeBaySelling",
    }
)
"""The operations the sandbox serves, as counted by `/_sandbox/calls` and keyed in faults."""

_STRICT = ConfigDict(extra="forbid", frozen=True)


class Fault(enum.StrEnum):
    """What one API call suffers."""

    NONE = "none"
    SERVER_ERROR = "5xx"  # an error status, nothing applied
    TOO_MANY = "429"  # throttled, nothing applied
    TIMEOUT = "timeout"  # answer held past the client's timeout


class OperationFaults(BaseModel):
    """Probabilities (each in [0, 1]) and the added latency of one operation's calls."""

    model_config = _STRICT

    error_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="5xx answers.")
    too_many_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Throttled answers.")
    timeout_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Answers held.")
    latency_ms: float = Field(default=0.0, ge=0.0, le=60_000.0)


class NotificationKnobs(BaseModel):
    """How notification deliveries misbehave."""

    model_config = _STRICT

    drop_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Never sent.")
    duplicate_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Sent twice.")
    bad_signature_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Signed with an unpublished key."
    )
    delay_s: float = Field(default=0.0, ge=0.0, le=3600.0, description="Before each delivery.")
    jitter_s: float = Field(
        default=0.0, ge=0.0, le=3600.0, description="Random extra delay; reorders deliveries."
    )
    retry_delays_s: list[float] = Field(
        default_factory=lambda: [1.0, 5.0, 30.0, 120.0],
        max_length=20,
        description="Waits before each retry of a failed delivery.",
    )
    timeout_s: float = Field(default=5.0, gt=0.0, le=60.0, description="A delivery's deadline.")
    body_format: Literal["pretty", "compact"] = Field(
        default="pretty",
        description=(
            "eBay signs the compact JSON but its SDKs verify over the re-serialised message, "
            "never the bytes received: 'pretty' sends an indented body, so that a receiver "
            "verifying the raw bytes fails here rather than in production."
        ),
    )


class FaultSettings(BaseModel):
    """Every knob of one account."""

    model_config = _STRICT

    seed: int | None = Field(default=None, description="Reseed the account's random draws.")
    default: OperationFaults = Field(default_factory=OperationFaults)
    operations: dict[str, OperationFaults] = Field(
        default_factory=dict, description="Per operation, replacing `default` for it."
    )
    next: dict[str, list[Literal["5xx", "429", "timeout"]]] = Field(
        default_factory=dict, description="Faults for the next calls of an operation, in order."
    )
    error_status: Literal[500, 502, 503, 504] = 500
    retry_after_s: float = Field(default=1.0, ge=0.0, le=3600.0)
    timeout_delay_s: float = Field(default=30.0, gt=0.0, le=300.0)
    timeout_applies: bool = Field(
        default=True, description="A timed-out call was applied before its answer was held."
    )
    notifications: NotificationKnobs = Field(default_factory=NotificationKnobs)

    @field_validator("operations", "next")
    @classmethod
    def _known_operations(cls, value: dict[str, object]) -> dict[str, object]:
        unknown = sorted(set(value) - OPERATIONS)
        if unknown:
            raise ValueError(
                f"unknown operation {', '.join(unknown)}; known: {', '.join(sorted(OPERATIONS))}"
            )
        return value


@dataclass
class AccountFaults:
    """The live knobs of one account, with the queues of `next` faults being consumed."""

    settings: FaultSettings
    queued: dict[str, deque[Fault]]

    @classmethod
    def from_settings(cls, settings: FaultSettings) -> AccountFaults:
        """Knobs as posted, with their `next` queues filled."""
        return cls(
            settings,
            {op: deque(Fault(name) for name in names) for op, names in settings.next.items()},
        )

    def rates_for(self, operation: str) -> OperationFaults:
        """The rates and latency that apply to `operation`."""
        return self.settings.operations.get(operation, self.settings.default)

    def plan(self, operation: str, rng: random.Random) -> Fault:
        """Decide one call's fault (draws only for the knobs that are on)."""
        queue = self.queued.get(operation)
        if queue:
            return queue.popleft()
        rates = self.rates_for(operation)
        for rate, fault in (
            (rates.too_many_rate, Fault.TOO_MANY),
            (rates.error_rate, Fault.SERVER_ERROR),
            (rates.timeout_rate, Fault.TIMEOUT),
        ):
            if rate and rng.random() < rate:
                return fault
        return Fault.NONE

    def describe(self) -> dict[str, object]:
        """The knobs as JSON, with what is left of the `next` queues."""
        shown = self.settings.model_dump(mode="json")
        shown["next"] = {op: [f.value for f in q] for op, q in self.queued.items() if q}
        return shown
