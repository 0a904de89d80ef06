"""Fault knobs of a sandbox store, as `POST /_sandbox/faults` sets them (a POST replaces them all;
`{}` switches every fault off).

API calls: per operation (the request's first root field, e.g. `orders`,
`inventorySetQuantities`), a rate of 5xx answers, of HTTP 429 with Retry-After, of timeouts (the
answer held past the client's timeout; by default after the call was applied), of THROTTLED
answers, and added latency; `next` queues exact faults for an operation's next calls. A call's
fault is drawn when it arrives, from the store's seeded generator, so a seeded run repeats.

Webhooks: a drop rate (never sent), a duplicate rate (sent twice, the copy with its own
X-Shopify-Webhook-Id and the same X-Shopify-Event-Id), a delay, a random jitter (which reorders
deliveries), the retry schedule of failed deliveries and the delivery timeout.
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
        "shop",
        "currentAppInstallation",
        "orders",
        "order",
        "productVariants",
        "productVariant",
        "inventoryItems",
        "inventoryItem",
        "inventoryLevel",
        "locations",
        "location",
        "fulfillmentOrder",
        "fulfillment",
        "webhookSubscriptions",
        "webhookSubscription",
        "node",
        "nodes",
        "job",
        "inventorySetQuantities",
        "fulfillmentCreate",
        "orderCancel",
        "webhookSubscriptionCreate",
        "webhookSubscriptionDelete",
    }
)
"""The operations the sandbox serves, as counted by `/_sandbox/calls` and keyed in faults."""

_STRICT = ConfigDict(extra="forbid", frozen=True)
Rate = float


class Fault(enum.StrEnum):
    """What one API call suffers."""

    NONE = "none"
    SERVER_ERROR = "5xx"  # an error status, nothing applied
    TOO_MANY = "429"  # HTTP 429 with Retry-After, nothing applied
    THROTTLED = "throttled"  # HTTP 200 with a THROTTLED error, nothing applied
    TIMEOUT = "timeout"  # answer held past the client's timeout


class OperationFaults(BaseModel):
    """Probabilities (each in [0, 1]) and the added latency of one operation's calls."""

    model_config = _STRICT

    error_rate: Rate = Field(default=0.0, ge=0.0, le=1.0, description="5xx answers.")
    too_many_rate: Rate = Field(default=0.0, ge=0.0, le=1.0, description="HTTP 429 answers.")
    throttled_rate: Rate = Field(default=0.0, ge=0.0, le=1.0, description="THROTTLED answers.")
    timeout_rate: Rate = Field(default=0.0, ge=0.0, le=1.0, description="Answers held.")
    latency_ms: float = Field(default=0.0, ge=0.0, le=60_000.0)


class WebhookKnobs(BaseModel):
    """How deliveries misbehave."""

    model_config = _STRICT

    drop_rate: Rate = Field(default=0.0, ge=0.0, le=1.0, description="Never sent.")
    duplicate_rate: Rate = Field(default=0.0, ge=0.0, le=1.0, description="Sent twice.")
    delay_s: float = Field(default=0.0, ge=0.0, le=3600.0, description="Before each delivery.")
    jitter_s: float = Field(
        default=0.0, ge=0.0, le=3600.0, description="Random extra delay; reorders deliveries."
    )
    retry_delays_s: list[float] = Field(
        default_factory=lambda: [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
        max_length=20,
        description="Waits before each retry of a failed delivery (Shopify: 8 over 4 hours).",
    )
    timeout_s: float = Field(default=5.0, gt=0.0, le=60.0, description="A delivery's deadline.")
    remove_failing_subscriptions: bool = Field(
        default=True,
        description="Delete a subscription whose delivery exhausted its retries, as Shopify does.",
    )


class FaultSettings(BaseModel):
    """Every knob of one store."""

    model_config = _STRICT

    seed: int | None = Field(default=None, description="Reseed the store's random draws.")
    default: OperationFaults = Field(default_factory=OperationFaults)
    operations: dict[str, OperationFaults] = Field(
        default_factory=dict, description="Per operation, replacing `default` for it."
    )
    next: dict[str, list[Literal["5xx", "429", "throttled", "timeout"]]] = Field(
        default_factory=dict, description="Faults for the next calls of an operation, in order."
    )
    error_status: Literal[500, 502, 503, 504] = 503
    retry_after_s: float = Field(default=1.0, ge=0.0, le=3600.0)
    timeout_delay_s: float = Field(default=30.0, gt=0.0, le=300.0)
    timeout_applies: bool = Field(
        default=True, description="A timed-out call was applied before its answer was held."
    )
    webhooks: WebhookKnobs = Field(default_factory=WebhookKnobs)

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
class StoreFaults:
    """The live knobs of one store, with the queues of `next` faults being consumed."""

    settings: FaultSettings
    queued: dict[str, deque[Fault]]

    @classmethod
    def from_settings(cls, settings: FaultSettings) -> StoreFaults:
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
            (rates.throttled_rate, Fault.THROTTLED),
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
