"""The outbox's sold-out and scarce lanes: a push that takes a listing to 0, then one that takes
it down to its last units, is claimed before the channel's older pushes, so a rate-limited
channel working through a queue of changes stops selling the last unit first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import Capabilities, StockTarget
from sync.db import Database
from sync.models import (
    LANE_CONFIRM,
    LANE_NORMAL,
    LANE_SCARCE,
    LANE_SOLD_OUT,
    Channel,
    JobKind,
    Listing,
    OutboxJob,
    Sku,
    StockLevel,
    utcnow,
)
from sync.outbox import RetrySchedule, claim, count_due
from sync.push_store import Claimant, record_and_claim
from sync.reservations import StockRules
from sync.stock_push import SCARCE_UNITS, ChannelStockPlan, plan_targets, prepare_batch

# sku: (on hand now, what the channel was last told)
LISTINGS = {
    "PLENTY": (40, 41),  # a sale, many left
    "LAST": (1, 2),  # a sale, one left
    "GONE": (0, 1),  # sold out
    "RESTOCKED": (2, 0),  # up, to few: nothing to oversell
    "EDGE": (SCARCE_UNITS, SCARCE_UNITS + 5),
    "NEW": (1, None),  # never told anything
    "OWN": (20, 20),  # the channel's own sale lowered the belief: to be confirmed
    "OWN-LAST": (2, 2),  # the same, down to its last units
}


def _store(database: Database) -> int:
    with database.session() as session:
        channel = Channel(name="amazon", kind="memory")
        session.add(channel)
        session.add_all(Sku(sku=sku) for sku in LISTINGS)
        session.add_all(
            StockLevel(sku=sku, location="default", on_hand=on_hand)
            for sku, (on_hand, _) in LISTINGS.items()
        )
        session.flush()
        session.add_all(
            Listing(
                channel_id=channel.id,
                sku=sku,
                external_ref=sku,
                is_dirty=True,
                last_pushed_quantity=told,
            )
            for sku, (_, told) in LISTINGS.items()
        )
        return channel.id


def _confirm(database: Database, *skus: str) -> None:
    with database.session() as session:
        session.execute(
            Listing.__table__.update().where(Listing.sku.in_(skus)).values(verify_belief=True)
        )


def _plan(database: Database, channel_id: int) -> None:
    plans = {channel_id: ChannelStockPlan(channel_id, StockRules(), ("default",))}
    database.transact(lambda s: plan_targets(s, plans))


def _claim(session: Session, channel_id: int, *, limit: int) -> list[OutboxJob]:
    return claim(
        session,
        channel_id=channel_id,
        kinds=(JobKind.STOCK,),
        limit=limit,
        owner="test",
        lease=timedelta(seconds=60),
        now=utcnow() + timedelta(seconds=1),
    )


def _claimed(database: Database, channel_id: int, *, limit: int) -> list[str]:
    """The listings a claim of `limit` stock jobs takes, in the order it takes them."""
    with database.session() as session:
        return [job.payload["listing_ref"] for job in _claim(session, channel_id, limit=limit)]


def _lanes(database: Database) -> dict[str, int]:
    with database.read_session() as session:
        jobs = session.scalars(select(OutboxJob)).all()
        return {job.payload["listing_ref"]: job.lane for job in jobs}


def test_a_push_down_to_the_last_units_goes_in_the_scarce_lane(database: Database) -> None:
    channel_id = _store(database)
    _confirm(database, "OWN", "OWN-LAST")
    _plan(database, channel_id)
    assert _lanes(database) == {
        "PLENTY": LANE_NORMAL,
        "LAST": LANE_SCARCE,
        "GONE": LANE_SOLD_OUT,
        "RESTOCKED": LANE_NORMAL,
        "EDGE": LANE_SCARCE,
        "NEW": LANE_NORMAL,
        "OWN": LANE_CONFIRM,  # nothing changed: it only confirms, after the rest
        "OWN-LAST": LANE_NORMAL,  # its last units are not left unconfirmed behind a queue
    }


def test_the_scarce_lane_is_claimed_before_older_pushes_and_a_restock_leaves_it(
    database: Database,
) -> None:
    channel_id = _store(database)
    _plan(database, channel_id)
    # PLENTY and LAST are restocked by 30 before their pushes went: both jobs are replaced,
    # keep their places, and are in the normal lane.
    with database.session() as session:
        session.execute(
            StockLevel.__table__.update()
            .where(StockLevel.sku.in_(["PLENTY", "LAST"]))
            .values(on_hand=StockLevel.on_hand + 30)
        )
        session.execute(
            Listing.__table__.update()
            .where(Listing.sku.in_(["PLENTY", "LAST"]))
            .values(is_dirty=True)
        )
    _plan(database, channel_id)
    assert _lanes(database)["LAST"] == LANE_NORMAL  # 31 units: no longer in a hurry

    first = _claimed(database, channel_id, limit=2)
    # The sold-out push first, then the scarce one, then the rest (PLENTY was planned first).
    assert first == ["GONE", "EDGE"]


def test_confirmations_are_claimed_last_and_never_make_a_batch_full(database: Database) -> None:
    channel_id = _store(database)
    _confirm(database, "OWN")
    _plan(database, channel_id)
    with database.read_session() as session:
        # Every listing but OWN-LAST (unchanged, nothing to confirm) has a job, and all but
        # OWN's are in lanes before the confirmations.
        due = count_due(session, channel_id, JobKind.STOCK, 100)
        assert (due.total, due.before(LANE_CONFIRM)) == (7, 6)
        # Counted in claim order: a limit keeps the first lanes' figures exact.
        assert count_due(session, channel_id, JobKind.STOCK, 6).before(LANE_CONFIRM) == 6
    assert _claimed(database, channel_id, limit=100)[-1] == "OWN"


def test_a_push_in_the_sold_out_or_scarce_lane_reaches_the_connector_as_urgent(
    database: Database,
) -> None:
    """So a channel with a slow bulk path (Amazon's feeds) can send those by its fastest one."""
    channel_id = _store(database)
    _plan(database, channel_id)
    with database.session() as session:
        batch = prepare_batch(
            session, _claim(session, channel_id, limit=100), compare_and_swap=False
        )
        urgent = {target.listing_ref for target in batch.targets if target.urgent}
    assert urgent == {"LAST", "GONE", "EDGE"}


def _claimant(channel_id: int, size: int, *, in_flight: int, **options: Any) -> Claimant:
    """A drain's claimant for a channel of `size` targets a call, `in_flight` calls at once."""
    return Claimant(
        channel_id,
        Capabilities(max_stock_batch=size, max_in_flight=in_flight),
        False,
        "test",
        timedelta(seconds=60),
        RetrySchedule(),
        **options,
    )


def _claimed_for_the_extra_slot(
    database: Database,
    channel_id: int,
    *,
    size: int,
    batch_size: Callable[[int], int] | None = None,
) -> list[str]:
    """What the pusher sends beside a channel's busy call slots: the listings of its batch."""
    claimant = _claimant(channel_id, size, in_flight=1, batch_size=batch_size)
    with database.session() as session:
        step = record_and_claim(session, claimant, [], free=1, urgent_only=True)
    assert len(step.batches) <= 1
    return [target.listing_ref for batch in step.batches for target in batch.targets]


def test_the_extra_slot_takes_a_batch_only_while_a_push_to_last_units_is_due(
    database: Database,
) -> None:
    channel_id = _store(database)
    _plan(database, channel_id)
    # The last units first, then company up to the batch size: a call's room is not wasted.
    assert _claimed_for_the_extra_slot(database, channel_id, size=4) == [
        "GONE",
        "LAST",
        "EDGE",
        "PLENTY",
    ]
    # Only ordinary changes are left (RESTOCKED, NEW): they wait for one of the channel's slots.
    assert _claimed_for_the_extra_slot(database, channel_id, size=4) == []
    assert sorted(_claimed(database, channel_id, limit=100)) == ["NEW", "RESTOCKED"]


def test_a_channel_of_a_call_per_listing_sends_the_last_units_alone_in_the_extra_slot(
    database: Database,
) -> None:
    """Amazon: each listing is a patch of its own, so company would keep the slot busy."""
    channel_id = _store(database)
    _plan(database, channel_id)
    assert _claimed_for_the_extra_slot(
        database, channel_id, size=25_000, batch_size=lambda _due: 2
    ) == ["GONE", "LAST"]
    assert _claimed_for_the_extra_slot(
        database, channel_id, size=25_000, batch_size=lambda _due: 2
    ) == ["EDGE"]
    assert (
        _claimed_for_the_extra_slot(database, channel_id, size=25_000, batch_size=lambda _due: 2)
        == []
    )


def _step_refs(database: Database, claimant: Claimant) -> tuple[list[list[str]], float | None]:
    """The listings of each batch one drain step claims, and how long it holds the rest."""
    with database.session() as session:
        step = record_and_claim(session, claimant, [], free=claimant.capabilities.max_in_flight)
    return [[t.listing_ref for t in batch.targets] for batch in step.batches], step.hold_s


def _holding(channel_id: int, size: int, *, hold_s: float = 60.0) -> Claimant:
    return _claimant(channel_id, size, in_flight=8, confirm_hold_s=hold_s)


def test_a_confirmation_rides_in_a_batch_a_change_sends(database: Database) -> None:
    channel_id = _store(database)
    _confirm(database, "OWN")
    _plan(database, channel_id)
    batches, hold = _step_refs(database, _holding(channel_id, 250))
    assert len(batches) == 1 and batches[0][-1] == "OWN" and hold is None


def _patching(channel_id: int) -> Claimant:
    """Amazon's shape: a feed's worth at most, but a few patches (one call each) a claim."""
    return _claimant(channel_id, 25_000, in_flight=8, batch_size=lambda _due: 2, confirm_hold_s=60)


@pytest.mark.parametrize("shape", ["one listing a call", "patches sized by the backlog"])
def test_a_confirmation_takes_no_call_of_its_own_while_it_is_held(
    database: Database, shape: str
) -> None:
    """Each listing a call (Amazon's patches): the confirmation would take a call and its
    rate-limit token from the next change; it waits, then goes once its hold is over."""
    channel_id = _store(database)
    _confirm(database, "OWN")
    _plan(database, channel_id)
    claimant = _holding(channel_id, 1) if shape == "one listing a call" else _patching(channel_id)
    batches, hold = _step_refs(database, claimant)
    claimed = [ref for batch in batches for ref in batch]
    assert len(claimed) == 6 and "OWN" not in claimed and hold is None
    # Only the confirmation is due now: nothing is claimed, and the step says how long.
    batches, hold = _step_refs(database, claimant)
    assert batches == [] and hold is not None and 50.0 < hold <= 60.0
    # Its hold over (a drain told so, or a caller waiting for idle: hold 0), it goes.
    with database.session() as session:
        session.execute(
            OutboxJob.__table__.update().values(created_at=utcnow() - timedelta(seconds=61))
        )
    assert _step_refs(database, claimant) == ([["OWN"]], None)


def test_a_connector_parting_a_batch_gets_each_part_as_a_push_of_its_own(
    database: Database,
) -> None:
    channel_id = _store(database)
    _plan(database, channel_id)

    def urgent_apart(targets: Sequence[StockTarget]) -> list[list[int]]:
        urgent = [i for i, target in enumerate(targets) if target.urgent]
        return [urgent, [i for i in range(len(targets)) if i not in urgent]]

    claimant = replace(_holding(channel_id, 250, hold_s=0.0), parts=urgent_apart)
    batches, _ = _step_refs(database, claimant)
    assert [sorted(refs) for refs in batches] == [
        ["EDGE", "GONE", "LAST"],
        ["NEW", "PLENTY", "RESTOCKED"],
    ]


def test_parts_that_lose_or_repeat_a_target_are_refused(database: Database) -> None:
    channel_id = _store(database)
    _plan(database, channel_id)
    claimant = replace(_holding(channel_id, 250), parts=lambda targets: [[0], [0]])
    with pytest.raises(ValueError, match="must place every target once"):
        _step_refs(database, claimant)
