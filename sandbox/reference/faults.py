"""Fault knobs of one reference channel, as `POST /{channel}/_sandbox/faults` sets them.

A call's fault is decided when it arrives, before its latency, so the seeded draws follow the
order the calls were made: a queued fault from `next` first, then a throttle, a failure before
applying, or a failure after applying (the answer lost). Draws happen only for knobs that are on,
so a run's sequence depends on its settings alone.
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
        "get_account",
        "list_orders",
        "get_order",
        "set_stock",
        "set_listing_stock",
        "get_stock",
        "list_listings",
        "create_fulfillment",
        "list_fulfillments",
        "cancel_order",
    }
)
"""The marketplace API's operations, as counted in `/_sandbox/calls` and keyed in faults."""

_STRICT = ConfigDict(extra="forbid", frozen=True)


class Fault(enum.StrEnum):
    """What one call suffers."""

    NONE = "none"
    THROTTLE = "throttle"  # 429 with Retry-After, nothing applied
    FAIL_BEFORE = "fail_before"  # 503, nothing applied
    FAIL_AFTER = "fail_after"  # applied, then the answer is lost


class OperationFaults(BaseModel):
    """Probabilities (each in [0, 1]) and the added latency of one operation's calls."""

    model_config = _STRICT

    fail_before_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    fail_after_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    throttle_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    latency_ms: float = Field(default=0.0, ge=0.0, le=60_000.0)


def _check_operations(keys: set[str]) -> None:
    unknown = sorted(keys - OPERATIONS)
    if unknown:
        raise ValueError(
            f"unknown operation {', '.join(unknown)}; known: {', '.join(sorted(OPERATIONS))}"
        )


class FaultSettings(BaseModel):
    """Every knob of one channel; a POST replaces them all (`{}` switches every fault off)."""

    model_config = _STRICT

    seed: int | None = Field(default=None, description="Reseed the channel's random draws.")
    default: OperationFaults = Field(default_factory=OperationFaults)
    operations: dict[str, OperationFaults] = Field(
        default_factory=dict, description="Per operation, replacing `default` for it."
    )
    next: dict[str, list[Literal["throttle", "fail_before", "fail_after"]]] = Field(
        default_factory=dict, description="Faults for the next calls of an operation, in order."
    )
    lost_answer: Literal["reset", "timeout"] = Field(
        default="reset",
        description="reset: close the connection unanswered; timeout: answer after "
        "timeout_delay_s, past the client's timeout.",
    )
    timeout_delay_s: float = Field(default=5.0, gt=0.0, le=300.0)
    retry_after_s: float = Field(default=1.0, ge=0.0, le=3600.0)
    auth_broken: bool = False
    refuse: dict[str, str] = Field(
        default_factory=dict,
        description="Order id -> reason: fulfilments and cancels of it get 422 with the reason.",
    )
    max_in_flight: int | None = Field(default=None, ge=1)

    @field_validator("operations", "next")
    @classmethod
    def _known_operations(cls, value: dict[str, object]) -> dict[str, object]:
        _check_operations(set(value))
        return value


@dataclass
class ChannelFaults:
    """The live knobs of one channel, with the queue of `next` faults being consumed."""

    settings: FaultSettings
    queued: dict[str, deque[Fault]]

    @classmethod
    def from_settings(cls, settings: FaultSettings) -> ChannelFaults:
        """Knobs as posted, with their `next` queues filled."""
        return cls(
            settings,
            {op: deque(Fault(name) for name in names) for op, names in settings.next.items()},
        )

    def rates_for(self, operation: str) -> OperationFaults:
        """The rates and latency that apply to `operation`."""
        return self.settings.operations.get(operation, self.settings.default)

    def plan(self, operation: str, rng: random.Random) -> Fault:
        """Decide one call's fault."""
        queue = self.queued.get(operation)
        if queue:
            return queue.popleft()
        rates = self.rates_for(operation)
        if rates.throttle_rate and rng.random() < rates.throttle_rate:
            return Fault.THROTTLE
        if rates.fail_before_rate and rng.random() < rates.fail_before_rate:
            return Fault.FAIL_BEFORE
        if rates.fail_after_rate and rng.random() < rates.fail_after_rate:
            return Fault.FAIL_AFTER
        return Fault.NONE

    def describe(self) -> dict[str, object]:
        """The knobs as JSON, with what is left of the `next` queues."""
        shown = self.settings.model_dump(mode="json")
        shown["next"] = {op: [f.value for f in q] for op, q in self.queued.items() if q}
        return shown
