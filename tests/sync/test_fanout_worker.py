"""The fan-out worker against reference channels: exactly once under faults, leases, refusals."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import timedelta

from sqlalchemy import select

from connectors.errors import RetryableError, UncertainOutcomeError
from sync.db import Database
from sync.fanout import Units, cancel_here, record_shipment
from sync.fanout_worker import SHIPMENT_REQUEST_KEY, cancel_request, fulfillment_request
from sync.metrics import Metrics
from sync.models import JobKind, JobState, OutboxJob, Shipment, ShipmentOrigin, utcnow
from sync.orders_view import QueryParams, jobs_page
from sync.outbox import claim
from sync.status import channel_statuses
from tests.sync.fanout_helpers import (
    check_ledger,
    drain,
    lines_of,
    make_store,
    place,
    redeliver,
    run_until_idle,
    status_of,
    worker_for,
)


def _ship(database: Database, order_id: int, *units: tuple[str, int], tracking: str) -> int:
    return database.transact(
        lambda s: (
            record_shipment(
                s, order_id, carrier="UPS", tracking=tracking, lines=[Units(k, n) for k, n in units]
            ).record_id
        )
    )


def _cancel(database: Database, order_id: int, *units: Units) -> None:
    database.transact(lambda s: cancel_here(s, order_id, lines=list(units)))


def _job_states(database: Database) -> Counter[tuple[JobKind, JobState]]:
    with database.read_session() as session:
        return Counter(
            session.execute(
                select(OutboxJob.kind, OutboxJob.state).where(OutboxJob.kind != JobKind.STOCK)
            ).all()
        )


def _our_shipments(database: Database) -> dict[int, tuple[str, str | None]]:
    """Our shipments: id -> (tracking, the channel's id for it)."""
    with database.read_session() as session:
        return {
            s.id: (s.tracking_number or "", s.external_id)
            for s in session.scalars(select(Shipment).where(Shipment.origin == ShipmentOrigin.HERE))
        }


def test_every_shipment_and_cancel_reaches_its_channel_once_under_faults(
    database: Database,
) -> None:
    """30% of calls apply and then lose their answer, 10% fail before applying, on every call
    (find and fetch too): each shipment lands on its channel once, none twice, none missing,
    each cancellation once; the channels' orders end as ours, and re-reading them adds no
    parcel and keeps the ledger."""
    store = make_store(database, on_hand=500)
    rng = random.Random(7)
    placed: list[tuple[str, str, int]] = []
    for n in range(24):
        name = "shop" if n % 3 else "market"
        ext, order_id = place(store, name, [("A", 1 + n % 3), ("B", 2)])
        placed.append((name, ext, order_id))
    shipments: dict[int, tuple[str, str]] = {}
    for n, (name, ext, order_id) in enumerate(placed):
        if n % 4 == 0:
            _cancel(database, order_id, Units("B", 1))
        shipments[_ship(database, order_id, ("A", 1), tracking=f"T{n}a")] = (name, ext)
        if n % 2:
            shipments[_ship(database, order_id, tracking=f"T{n}b")] = (name, ext)
        if n % 4 == 2:
            _cancel(database, order_id)
    for channel in store.channels.values():
        channel.market.faults.fail_rate_after = 0.3
        channel.market.faults.fail_rate_before = 0.1
        channel.market.faults.latency = 0.002
        channel.market.rng = random.Random(rng.random())

    metrics = Metrics("test")
    drain(store, metrics=metrics)

    assert _job_states(database) == Counter(
        {
            (JobKind.SHIPMENT, JobState.DONE): len(shipments),
            (JobKind.CANCEL, JobState.DONE): sum(1 for n in range(24) if n % 4 in (0, 2)),
        }
    )
    ours = _our_shipments(database)
    for channel_name, channel in store.channels.items():
        market = channel.market
        keys = Counter(f.key for f in market.fulfillments)
        wanted = {
            SHIPMENT_REQUEST_KEY.format(id=i)
            for i, (c, _) in shipments.items()
            if c == channel_name
        }
        assert set(keys) == wanted, f"{channel_name}: missing or unknown fulfilments"
        assert all(n == 1 for n in keys.values()), f"{channel_name}: sent twice: {keys}"
        for received in market.fulfillments:
            shipment_id = int(received.key.rsplit(":", 1)[1])
            assert ours[shipment_id] == (received.tracking, received.fulfillment_id)
        cancels = Counter(c.key for c in market.cancels)
        assert all(n == 1 for n in cancels.values())
        assert market.max_in_flight_seen <= channel.spec.capabilities.max_in_flight
    for channel_name, ext, order_id in placed:
        on_channel = store.channels[channel_name].market.order(ext)
        assert lines_of(database, order_id) == {
            line.external_line_id: (line.quantity, line.quantity_cancelled, line.quantity_shipped)
            for line in on_channel.lines
        }
        assert status_of(database, order_id) == on_channel.status.value

    for channel in store.channels.values():
        channel.market.faults.fail_rate_after = channel.market.faults.fail_rate_before = 0.0
    for channel_name, ext, _ in placed:
        redeliver(store, channel_name, ext)
    with database.read_session() as session:
        assert {s.origin for s in session.scalars(select(Shipment))} == {ShipmentOrigin.HERE}
    assert _our_shipments(database) == ours
    check_ledger(database)
    applied = _pushes(metrics, "shop", "shipment", "applied")
    found = _pushes(metrics, "shop", "shipment", "already_there")
    shop_shipments = sum(1 for c, _ in shipments.values() if c == "shop")
    assert applied + found == shop_shipments
    # The faults did bite: answers were lost, and found on the channel afterwards.
    assert _pushes(metrics, "shop", "shipment", "uncertain") > 0 and found > 0


def test_a_worker_that_died_between_the_call_and_its_answer_is_not_repeated(
    database: Database,
) -> None:
    """The call applied, then the process died before recording it: the job's lease runs out,
    and the next worker asks the channel first and finds it."""
    store = make_store(database)
    _ext, order_id = place(store, "shop", [("A", 2)])
    shipment_id = _ship(database, order_id, tracking="1Z")
    market = store.channels["shop"].market
    with database.session() as session:
        (job,) = claim(
            session,
            channel_id=store.channels["shop"].id,
            kinds=[JobKind.SHIPMENT],
            limit=1,
            owner="worker-that-dies",
            lease=timedelta(0),
        )
        payload = dict(job.payload)
    fulfilment_id = asyncio.run(
        store.channels["shop"].connector.push_fulfillment(fulfillment_request(payload))
    )

    drain(store)

    assert market.calls["push_fulfillment"] == 1
    assert market.calls["find_fulfillment"] == 1
    assert len(market.fulfillments) == 1
    assert _our_shipments(database) == {shipment_id: ("1Z", fulfilment_id)}
    assert _job_states(database) == Counter({(JobKind.SHIPMENT, JobState.DONE): 1})


def test_a_cancel_that_applied_before_the_worker_died_is_read_back_not_resent(
    database: Database,
) -> None:
    store = make_store(database)
    ext, order_id = place(store, "shop", [("A", 2), ("B", 1)])
    _cancel(database, order_id, Units("A", 1))
    market = store.channels["shop"].market
    with database.session() as session:
        (job,) = claim(
            session,
            channel_id=store.channels["shop"].id,
            kinds=[JobKind.CANCEL],
            limit=1,
            owner="worker-that-dies",
            lease=timedelta(0),
        )
        payload = dict(job.payload)
    asyncio.run(store.channels["shop"].connector.cancel_order(cancel_request(payload)))
    # A channel that does not dedupe cancels would take a resend as a second cancellation.
    market.cancels.clear()

    drain(store)

    assert market.calls["cancel_order"] == 1
    assert market.calls["fetch_order"] == 1
    assert market.cancels == []
    assert market.order(ext).lines[0].quantity_cancelled == 1
    assert _job_states(database) == Counter({(JobKind.CANCEL, JobState.DONE): 1})


def test_an_idempotent_channel_is_sent_the_same_key_again_without_asking(
    database: Database,
) -> None:
    store = make_store(database)
    _, order_id = place(store, "market", [("A", 1)])
    _ship(database, order_id, tracking="1Z")
    market = store.channels["market"].market
    market.faults.fail_next("push_fulfillment", UncertainOutcomeError("timeout"))
    drain(store)
    assert (market.calls["push_fulfillment"], market.calls["find_fulfillment"]) == (2, 0)
    assert len(market.fulfillments) == 1


def test_a_plain_channel_is_asked_after_an_unclear_answer(database: Database) -> None:
    store = make_store(database)
    _, order_id = place(store, "shop", [("A", 1)])
    shipment_id = _ship(database, order_id, tracking="1Z")
    market = store.channels["shop"].market
    market.faults.fail_next("push_fulfillment", UncertainOutcomeError("timeout"))
    market.faults.fail_next("find_fulfillment", RetryableError("reset"), after=False)
    drain(store)
    assert (market.calls["push_fulfillment"], market.calls["find_fulfillment"]) == (1, 2)
    assert _our_shipments(database) == {shipment_id: ("1Z", market.fulfillments[0].fulfillment_id)}


def test_a_permanent_refusal_is_dead_with_the_channels_reason_everywhere(
    database: Database,
) -> None:
    store = make_store(database)
    ext, order_id = place(store, "shop", [("A", 1)])
    _, other = place(store, "shop", [("B", 1)])
    store.channels["shop"].market.faults.permanent_for[ext] = "carrier code XYZ is not accepted"
    _ship(database, order_id, tracking="1Z")
    _ship(database, other, tracking="2Z")
    metrics = Metrics("test")
    drain(store, metrics=metrics)

    reason = "shop refused: carrier code XYZ is not accepted"
    assert _job_states(database) == Counter(
        {(JobKind.SHIPMENT, JobState.DEAD): 1, (JobKind.SHIPMENT, JobState.DONE): 1}
    )
    with database.read_session() as session:
        dead = jobs_page(session, QueryParams([("state", "dead")], ("state",)))["items"]
        statuses = {s.name: s for s in channel_statuses(session, utcnow())}
    assert [(j["kind"], j["attempts"], j["last_error"]) for j in dead] == [("shipment", 1, reason)]
    assert (statuses["shop"].jobs_dead, statuses["shop"].last_dead_reason) == (1, reason)
    assert statuses["market"].last_dead_reason is None
    assert _pushes(metrics, "shop", "shipment", "dead") == 1
    assert _pushes(metrics, "shop", "shipment", "applied") == 1
    assert len(store.channels["shop"].market.fulfillments) == 1


def test_a_lost_answer_then_a_channel_update_then_the_retry(database: Database) -> None:
    """The push applied and its answer was lost; the channel's update shows the parcel before
    the retry: it is recognised as ours, and the retry ends without calling the channel."""
    store = make_store(database)
    ext, order_id = place(store, "shop", [("A", 2)])
    shipment_id = _ship(database, order_id, tracking="1Z")
    market = store.channels["shop"].market
    market.faults.fail_next("push_fulfillment", UncertainOutcomeError("timeout"))

    async def scenario() -> None:
        worker = worker_for(store)
        worker.retry = type(worker.retry)(max_attempts=5, base_s=30, cap_s=30)
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        deadline = asyncio.get_running_loop().time() + 30
        while market.calls["push_fulfillment"] == 0 or _job_states(database) != Counter(
            {(JobKind.SHIPMENT, JobState.PENDING): 1}
        ):
            assert asyncio.get_running_loop().time() < deadline, "the push never failed"
            await asyncio.sleep(0.01)
        stop.set()
        await running

    asyncio.run(scenario())
    redeliver(store, "shop", ext)
    assert _our_shipments(database) == {shipment_id: ("1Z", market.fulfillments[0].fulfillment_id)}
    with database.session() as session:
        for job in session.scalars(select(OutboxJob).where(OutboxJob.kind == JobKind.SHIPMENT)):
            job.run_after = utcnow()
    asyncio.run(run_until_idle(worker_for(store)))
    assert market.calls["push_fulfillment"] == 1
    assert market.calls["find_fulfillment"] == 0
    assert _job_states(database) == Counter({(JobKind.SHIPMENT, JobState.DONE): 1})
    check_ledger(database)


def _pushes(metrics: Metrics, channel: str, kind: str, outcome: str) -> float:
    labels = {"channel": channel, "kind": kind, "outcome": outcome}
    return metrics.registry.get_sample_value("channel_sync_fanout_pushes_total", labels) or 0.0


def test_a_cancel_the_channel_refuses_because_it_is_already_cancelled_is_done(
    database: Database,
) -> None:
    """The buyer cancelled on the channel before our per-line cancel arrived: the channel
    refuses ours for good, but reading the order back shows it cancelled, so the job is done,
    not dead."""
    store = make_store(database)
    ext, order_id = place(store, "shop", [("A", 2)])
    _cancel(database, order_id, Units("A", 1))
    market = store.channels["shop"].market
    market.cancel(ext)
    drain(store)
    assert (market.calls["cancel_order"], market.calls["fetch_order"]) == (1, 1)
    assert _job_states(database) == Counter({(JobKind.CANCEL, JobState.DONE): 1})
    redeliver(store, "shop", ext)
    assert status_of(database, order_id) == "cancelled"
    check_ledger(database)


def test_a_cancel_refused_for_another_reason_is_dead_with_it(database: Database) -> None:
    store = make_store(database)
    ext, order_id = place(store, "shop", [("A", 2)])
    _cancel(database, order_id)
    store.channels["shop"].market.ship_on_channel(ext)
    drain(store)
    with database.read_session() as session:
        (job,) = session.scalars(select(OutboxJob).where(OutboxJob.kind == JobKind.CANCEL))
    assert job.state is JobState.DEAD
    assert job.last_error == f"shop refused: order {ext} is already shipped"


def test_nothing_is_sent_to_an_auth_failed_channel_until_it_may_be_called_again(
    database: Database,
) -> None:
    """The health view the pusher obeys holds shipments too: no login storm on a revoked
    channel; once its check passes, the waiting shipment goes, once."""
    store = make_store(database)
    _, order_id = place(store, "shop", [("A", 1)])
    _ship(database, order_id, tracking="1Z")
    market = store.channels["shop"].market
    callable_now = {"shop": False, "market": True}
    worker = worker_for(store)
    worker.is_callable = lambda name: callable_now[name]

    async def scenario() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        try:
            # Several idle rounds pass (idle_s is 0.01 s) with the job due and the channel held.
            for _ in range(20):
                await asyncio.sleep(0.01)
                assert market.calls["push_fulfillment"] == 0
            callable_now["shop"] = True
            worker.wake()
            await asyncio.wait_for(worker.wait_idle(poll_s=0.005), 30)
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)

    asyncio.run(scenario())
    assert market.calls["push_fulfillment"] == 1
    assert len(market.fulfillments) == 1
