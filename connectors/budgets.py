"""What a connector that meters a channel's daily budgets on our side gives the daemon.

Some channels meter by the day: eBay counts calls per API against the account's quota and
revisions per listing against its 250. The counts are the channel's, so a restart must not give
them back and several instances must share them. The connector keeps the counts it decides with
in memory; the daemon (sync/budgets.py) takes what was used since it last asked, stores it, and
seeds the connector with the totals every instance has stored for the day. Connectors never
touch the store: usage crosses as the values below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol, runtime_checkable

SCOPE_API = "api"  # calls of one API family against the account's daily quota
SCOPE_LISTING = "listing"  # revisions of one listing against the channel's daily limit


@dataclass(frozen=True)
class BudgetUse:
    """Use of one daily budget on the channel's day `day` (which ends at `resets_at`).

    From `take_budget_use`, `used` is what was used since the last take; given to
    `seed_budget_use`, it is the total stored by every instance for that day."""

    scope: str  # SCOPE_API or SCOPE_LISTING
    key: str  # the API family, or the listing as the channel counts its revisions
    day: date
    used: int
    limit: int
    resets_at: datetime
    is_exhausted: bool = False  # the channel said this budget is spent for the day

    def __post_init__(self) -> None:
        if self.used < 0 or self.limit < 1:
            raise ValueError(f"budget {self.scope}:{self.key}: used >= 0 and limit >= 1")
        if self.resets_at.tzinfo is None:
            raise ValueError("resets_at must be timezone-aware")


@runtime_checkable
class MetersDailyBudgets(Protocol):
    """A connector whose daily budgets outlive the process and are shared by instances."""

    def take_budget_use(self) -> Sequence[BudgetUse]:
        """Use since the last take (budgets with none are left out, unless not yet announced
        today); what was taken is not given again."""

    def seed_budget_use(self, totals: Sequence[BudgetUse]) -> None:
        """Totals stored for the day: counts become these plus what was used since the take."""
