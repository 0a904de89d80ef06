"""Fault knobs of a sandbox seller account, as `POST /_sandbox/faults` sets them (a POST replaces
them all; `{}` switches every fault off and restores Amazon's usage plans).

API calls, per operation (`searchOrders`, `patchListingsItem`...): a rate of 5xx answers, of forced
HTTP 429, of timeouts (the answer held past the client's timeout; by default after the call was
applied), of lost writes (confirmShipment answers 204 and patchListingsItem ACCEPTED, and nothing
changes: Amazon's 204 is no proof), and added latency; `next` queues exact faults for an
operation's next calls. Faults are drawn from the account's seeded generator, so a seeded run
repeats. Injected faults are counted as `faulted`, apart from calls refused for being over the
bucket (`throttled`).

Also: usage-plan overrides per operation (`rates`), the order data lag of searchOrders
(`search_lag_s`), SKUs whose listing updates Amazon refuses (`listing_errors`), how long an
ACCEPTED patch takes to apply, how feeds and reports are processed, and how ORDER_CHANGE
notifications misbehave (duplicates, drops, delay, jitter, and `hold` to release them later in
shuffled order).
"""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sandbox.amazon.throttle import USAGE_PLANS, UsagePlan

OPERATIONS = frozenset(USAGE_PLANS)
"""The operations the sandbox serves, as counted by `/_sandbox/calls` and keyed in faults."""

_STRICT = ConfigDict(extra="forbid", frozen=True)
Rate = float


class Fault(enum.StrEnum):
    """What one API call suffers."""

    NONE = "none"
    SERVER_ERROR = "5xx"  # an error status, nothing applied
    TOO_MANY = "429"  # HTTP 429 whatever the bucket holds, nothing applied
    TIMEOUT = "timeout"  # answer held past the client's timeout
    LOST = "lost"  # a write answered as successful and never applied


class OperationFaults(BaseModel):
    """Probabilities (each in [0, 1]) and the added latency of one operation's calls."""

    model_config = _STRICT

    error_rate: Rate = Field(default=0.0, ge=0.0, le=1.0, description="5xx answers.")
    too_many_rate: Rate = Field(default=0.0, ge=0.0, le=1.0, description="HTTP 429 answers.")
    timeout_rate: Rate = Field(default=0.0, ge=0.0, le=1.0, description="Answers held.")
    lost_rate: Rate = Field(default=0.0, ge=0.0, le=1.0, description="Writes never applied.")
    latency_ms: float = Field(default=0.0, ge=0.0, le=60_000.0)


class PlanOverride(BaseModel):
    """A usage plan replacing Amazon's for one operation."""

    model_config = _STRICT

    rate: float = Field(gt=0.0, le=100_000.0, description="Requests per second.")
    burst: int = Field(ge=1, le=1_000_000)


class FeedKnobs(BaseModel):
    """How feeds are processed."""

    model_config = _STRICT

    queue_s: float = Field(default=0.2, ge=0.0, le=3600.0, description="IN_QUEUE for this long.")
    processing_s: float = Field(
        default=0.5, ge=0.0, le=3600.0, description="Then IN_PROGRESS for this long."
    )
    gzip_reports: bool = Field(default=False, description="Processing reports GZIP-compressed.")
    next_outcomes: list[Literal["FATAL", "CANCELLED"]] = Field(
        default_factory=list, description="Outcomes forced on the next feeds created, in order."
    )
    upload_expiry_s: float = Field(
        default=300.0, gt=0.0, le=86_400.0, description="How long an upload URL is valid."
    )


class ReportKnobs(BaseModel):
    """How reports are produced (reports_api.py)."""

    model_config = _STRICT

    queue_s: float = Field(default=0.2, ge=0.0, le=3600.0, description="IN_QUEUE for this long.")
    processing_s: float = Field(
        default=0.5, ge=0.0, le=3600.0, description="Then IN_PROGRESS for this long."
    )
    gzip: bool = Field(default=False, description="Report documents GZIP-compressed.")
    next_outcomes: list[Literal["FATAL", "CANCELLED"]] = Field(
        default_factory=list, description="Outcomes forced on the next reports created, in order."
    )


class NotificationKnobs(BaseModel):
    """How ORDER_CHANGE notifications reach the queue."""

    model_config = _STRICT

    duplicate_rate: Rate = Field(default=0.0, ge=0.0, le=1.0, description="Sent twice.")
    drop_rate: Rate = Field(default=0.0, ge=0.0, le=1.0, description="Never sent.")
    delay_s: float = Field(default=0.0, ge=0.0, le=3600.0, description="Before each send.")
    jitter_s: float = Field(
        default=0.0, ge=0.0, le=3600.0, description="Random extra delay; reorders sends."
    )
    hold: bool = Field(
        default=False,
        description="Keep notifications until POST /_sandbox/notifications/release sends them, "
        "shuffled.",
    )


class FaultSettings(BaseModel):
    """Every knob of one seller account."""

    model_config = _STRICT

    seed: int | None = Field(default=None, description="Reseed the account's random draws.")
    default: OperationFaults = Field(default_factory=OperationFaults)
    operations: dict[str, OperationFaults] = Field(
        default_factory=dict, description="Per operation, replacing `default` for it."
    )
    next: dict[str, list[Literal["5xx", "429", "timeout", "lost"]]] = Field(
        default_factory=dict, description="Faults for the next calls of an operation, in order."
    )
    error_status: Literal[500, 503] = 503
    timeout_delay_s: float = Field(default=30.0, gt=0.0, le=300.0)
    timeout_applies: bool = Field(
        default=True, description="A timed-out call was applied before its answer was held."
    )
    rates: dict[str, PlanOverride] = Field(
        default_factory=dict, description="Usage plans replacing Amazon's, per operation."
    )
    refill: bool = Field(default=False, description="Fill every bucket now.")
    search_lag_s: float = Field(
        default=0.0,
        ge=0.0,
        le=3600.0,
        description="searchOrders does not see orders updated less than this long ago.",
    )
    listing_errors: dict[str, str] = Field(
        default_factory=dict, description="SKU -> the message Amazon refuses its updates with."
    )
    patch_apply_delay_s: float = Field(
        default=0.0, ge=0.0, le=3600.0, description="An ACCEPTED patch applies this much later."
    )
    feeds: FeedKnobs = Field(default_factory=FeedKnobs)
    reports: ReportKnobs = Field(default_factory=ReportKnobs)
    notifications: NotificationKnobs = Field(default_factory=NotificationKnobs)

    @field_validator("operations", "next", "rates")
    @classmethod
    def _known_operations(cls, value: dict[str, object]) -> dict[str, object]:
        unknown = sorted(set(value) - OPERATIONS)
        if unknown:
            raise ValueError(
                f"unknown operation {', '.join(unknown)}; known: {', '.join(sorted(OPERATIONS))}"
            )
        return value

    def usage_plans(self) -> dict[str, UsagePlan]:
        """The plan overrides as usage plans."""
        return {op: UsagePlan(p.rate, p.burst) for op, p in self.rates.items()}


@dataclass
class AccountFaults:
    """The live knobs of one account, with the queues of `next` faults being consumed."""

    settings: FaultSettings
    queued: dict[str, deque[Fault]]
    feed_outcomes: deque[str]
    report_outcomes: deque[str]

    @classmethod
    def from_settings(cls, settings: FaultSettings) -> AccountFaults:
        """Knobs as posted, with their queues filled."""
        return cls(
            settings,
            {op: deque(Fault(name) for name in names) for op, names in settings.next.items()},
            deque(settings.feeds.next_outcomes),
            deque(settings.reports.next_outcomes),
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
            (rates.lost_rate, Fault.LOST),
        ):
            if rate and rng.random() < rate:
                return fault
        return Fault.NONE

    def describe(self) -> dict[str, object]:
        """The knobs as JSON, with what is left of the queues."""
        shown = self.settings.model_dump(mode="json")
        shown["next"] = {op: [f.value for f in q] for op, q in self.queued.items() if q}
        shown["feeds"]["next_outcomes"] = list(self.feed_outcomes)
        shown["reports"]["next_outcomes"] = list(self.report_outcomes)
        return shown
