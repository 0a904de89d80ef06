"""The scheduler: each tick of each channel's jobs runs once, whatever instances come and go.

Ticks are driven by a test clock (every instance fires every job of every tick, as their
APScheduler triggers would); leases run on the database's real clock with a 0.2 s heartbeat, so
a killed instance's jobs must move within 2 heartbeats. What ran is counted by the reference
marketplaces themselves (their per-operation call counters), never by the code under test.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import select

from connectors.errors import RateLimitedError, RetryableError
from connectors.memory import MemoryConnector
from sync.db import Database
from sync.health import ChannelHealth
from sync.metrics import Metrics
from sync.models import Channel, ChannelState, Listing, Order, Sku
from sync.polling import PollChannel
from sync.scheduler import JobName, ScheduledChannel, Scheduler, SchedulerSettings
from sync.status import channel_statuses, readiness_problems
from tests.sync.engine_harness import ChannelSpec, Store, StoreSpec, build_store

T0 = datetime(2026, 1, 5, tzinfo=UTC)  # on the grid of both intervals
HEARTBEAT_S = 0.2
SETTINGS = SchedulerSettings(
    heartbeat_s=HEARTBEAT_S,
    lease_ttl_s=2 * HEARTBEAT_S,
    reconcile_overlap_s=86400,
    initial_lookback_s=400 * 86400,  # the reference marketplaces' clock starts 2026-01-01
    auth_recheck_s=10,
    max_start_jitter_s=0.05,
)
# On two busy shared cores the event loop may be late by this much; the bound itself is 2 beats.
SLACK_S = 0.4
DEADLINE_S = 20.0


class TestClock:
    """The time the schedulers see: moved by the test, one tick at a time."""

    __test__ = False

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Instance:
    """One daemon's scheduler, with its own store connections, running its lease loop."""

    scheduler: Scheduler
    db: Database
    stop: asyncio.Event
    task: asyncio.Task[None]
    metrics: Metrics = field(default_factory=lambda: Metrics("test"))


def _channels(store: Store) -> list[ScheduledChannel]:
    return [
        ScheduledChannel(
            PollChannel(
                channel.ref,
                MemoryConnector(
                    channel.market, name=channel.name, capabilities=channel.spec.capabilities
                ),
            ),
            poll_interval_s=1,
            reconcile_interval_s=2,
        )
        for channel in store.channels.values()
    ]


def _start(url: str, store: Store, clock: TestClock, seed: int) -> Instance:
    db = Database(url)
    metrics = Metrics("test")
    scheduler = Scheduler(
        db,
        _channels(store),
        SETTINGS,
        health=ChannelHealth(db, store.channels),
        metrics=metrics,
        owner=f"instance-{seed}",
        clock=clock,
        rng=random.Random(seed),
    )
    stop = asyncio.Event()
    return Instance(scheduler, db, stop, asyncio.create_task(scheduler.run(stop)), metrics)


async def _stop(instance: Instance) -> None:
    """Stop it as SIGTERM would: its loop ends, then its store connections close."""
    instance.stop.set()
    await instance.task
    instance.db.dispose()


async def _kill(instance: Instance) -> None:
    """Stop it as SIGKILL would: no release, no more heartbeats, nothing finishes.

    (Its store connections stay open a while: a thread it left mid-statement may still be using
    one, as a dead process's would be until the server noticed.)
    """
    instance.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await instance.task


async def _until(
    check: Callable[[], bool], what: str, detail: Callable[[], str] = lambda: ""
) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {DEADLINE_S} s waiting for {what} {detail()}")
        await asyncio.sleep(0.005)


def _calls(store: Store) -> Counter[tuple[str, str]]:
    counted: Counter[tuple[str, str]] = Counter()
    for name, channel in store.channels.items():
        for operation in ("fetch_orders", "list_listings", "read_stock"):
            counted[name, operation] = channel.market.calls[operation]
    return counted


def _store(database: Database) -> Store:
    return build_store(
        database,
        StoreSpec(channels=[ChannelSpec("shop"), ChannelSpec("market")], skus=["A", "B"]),
    )


TICKS = 200
KILL_EVERY = 10


@pytest.mark.pg
def test_three_instances_run_each_tick_once_through_kills_and_take_over_within_2_beats(
    pg_database: Database,
) -> None:
    store = _store(pg_database)
    clock = TestClock(T0)
    all_leases = {f"{c}:{j.value}" for c in store.channels for j in JobName}

    async def scenario() -> None:
        live = [_start(pg_database.url, store, clock, seed) for seed in range(3)]
        started = list(live)
        kills: list[tuple[float, str, frozenset[str]]] = []
        victims: list[Instance] = []
        expected: Counter[tuple[str, str]] = Counter()
        try:
            await _until(
                lambda: set().union(*(i.scheduler.held for i in live)) == all_leases,
                "the leases to be taken",
            )
            for instance in live:
                await instance.scheduler.wait_idle()
            for k in range(TICKS):
                clock.now = T0 + timedelta(seconds=k)
                if k % 5 == 0:
                    for channel in store.channels.values():
                        channel.market.place_order([("A", 1)])
                for name in store.channels:
                    expected[name, "fetch_orders"] += 1  # the poll: one page
                    if k % 2 == 0:  # the reconcile: one page, the listings, two quantities
                        expected[name, "fetch_orders"] += 1
                        expected[name, "list_listings"] += 1
                        expected[name, "read_stock"] += 1
                await asyncio.gather(
                    *(
                        i.scheduler.run_tick(name, job.value)
                        for i in live
                        for name in store.channels
                        for job in JobName
                    )
                )
                # After a kill nobody holds the dead one's jobs: their new holder runs the tick.
                await _until(
                    lambda: _calls(store) == expected,
                    f"tick {k} to run",
                    lambda: (
                        f"{_calls(store) - expected} {expected - _calls(store)} "
                        f"{[(i.scheduler.owner, sorted(i.scheduler.held)) for i in live]}"
                    ),
                )
                if k % KILL_EVERY == KILL_EVERY - 1:
                    victim = max(live, key=lambda i: len(i.scheduler.held))
                    held = victim.scheduler.held
                    assert held, "someone holds every lease"
                    await _kill(victim)
                    kills.append((time.monotonic(), victim.scheduler.owner, held))
                    for dead in victims:  # killed 10 ticks ago: nothing of theirs runs now
                        await asyncio.to_thread(dead.db.dispose)
                    victims = [victim]
                    live.remove(victim)
                    replacement = _start(pg_database.url, store, clock, len(started))
                    live.append(replacement)
                    started.append(replacement)
            await _until(
                lambda: set().union(*(i.scheduler.held for i in live)) == all_leases,
                "the last victim's leases to be taken",
            )
            for instance in live:
                await instance.scheduler.wait_idle()
            assert _calls(store) == expected  # nothing ran twice, late
        finally:
            for instance in live:
                instance.stop.set()
            await asyncio.gather(*(i.task for i in live), return_exceptions=True)
            for instance in [*live, *victims]:
                await asyncio.to_thread(instance.db.dispose)

        takeovers = [t for i in started for t in i.scheduler.takeovers]
        worst = 0.0
        for killed_at, owner, held in kills:
            for lease in held:
                # (A live instance may lose a lease too, when its renewal comes late: that is
                # allowed, and the tick counts above show it ran nothing twice.)
                taken = [
                    t
                    for t in takeovers
                    if t.taken_from == owner and t.lease == lease and t.at >= killed_at
                ]
                assert len(taken) == 1, (owner, lease, taken)
                after_death = taken[0].at - killed_at
                worst = max(worst, after_death)
                assert after_death <= 2 * HEARTBEAT_S + SLACK_S, (lease, after_death)
                assert taken[0].delay_s <= 2 * HEARTBEAT_S + SLACK_S
        assert len(kills) == TICKS // KILL_EVERY
        print(f"worst takeover {worst:.3f} s after a kill (2 heartbeats = {2 * HEARTBEAT_S} s)")
        # The metric shows each instance's latest takeover as measured (a late renewal by a live
        # holder may take longer under load; the bound above is for dead holders).
        gauges = [
            (i.metrics.lease_takeover_seconds.labels(t.lease)._value.get(), t.delay_s)
            for i in started
            for t in list(i.scheduler.takeovers)[-1:]
        ]
        assert gauges and all(shown == pytest.approx(measured) for shown, measured in gauges)
        assert all(shown > 0 for shown, _ in gauges)

    asyncio.run(scenario())
    with pg_database.read_session() as session:
        stored = session.scalars(select(Order.external_id)).all()
    assert len(stored) == 2 * (TICKS // 5)


def _single(database: Database) -> tuple[Store, TestClock, Callable[[], Instance]]:
    store = build_store(database, StoreSpec(channels=[ChannelSpec("shop")], skus=["A"]))
    clock = TestClock(T0)
    return store, clock, lambda: _start(database.url, store, clock, 0)


async def _tick(instance: Instance, clock: TestClock, at_s: float) -> dict[str, bool]:
    clock.now = T0 + timedelta(seconds=at_s)
    ran = {}
    for job in JobName:
        ran[job.value] = await instance.scheduler.run_tick("shop", job.value)
    return ran


def _state(database: Database) -> tuple[str, str | None]:
    with database.read_session() as session:
        [status] = channel_statuses(session, datetime.now(UTC))
    return status.state, status.last_error


def test_a_throttled_poll_waits_for_the_channel_s_retry_after_then_recovers(
    database: Database,
) -> None:
    store, clock, start = _single(database)
    market = store.channels["shop"].market

    async def scenario() -> list[float]:
        instance = start()
        try:
            await _until(lambda: len(instance.scheduler.held) == 2, "the leases")
            await instance.scheduler.wait_idle()  # the tick a new holder runs at once
            # Holding the leases, it already ran tick 0 of both jobs: not again.
            assert await _tick(instance, clock, 0) == {"poll": False, "reconcile": False}
            assert market.calls["fetch_orders"] == 2
            market.faults.fail_next("fetch_orders", RateLimitedError("throttled", retry_after=5))
            assert (await _tick(instance, clock, 1))["poll"]  # it ran, and was throttled
            assert _state(database) == ("degraded", "shop:fetch_orders: throttled")
            before = Counter(market.calls)
            for second in (2, 3, 4, 5):  # neither job calls the channel before it said
                assert not any((await _tick(instance, clock, second)).values())
            assert Counter(market.calls) == before
            assert (await _tick(instance, clock, 6))["poll"]
            assert _state(database)[0] == "ok"
            assert instance.metrics.throttles.labels("shop")._value.get() == 1
            outcomes = instance.metrics.scheduled_runs
            assert outcomes.labels("shop", "poll", "failed")._value.get() == 1

            # Failures in a row wait longer each time (capped exponential backoff).
            attempts = []
            market.faults.fail_next("fetch_orders", RetryableError("down"), times=4)
            for second in range(10, 60):
                clock.now = T0 + timedelta(seconds=second)
                if await instance.scheduler.run_tick("shop", "poll"):
                    attempts.append(float(second))
            return attempts
        finally:
            await _stop(instance)

    attempts = asyncio.run(scenario())
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # Each wait is at least half its ceiling: 1, 2, 4, 8 seconds for the 1 s poll.
    assert [g >= c / 2 for g, c in zip(gaps, (1, 2, 4, 8), strict=False)] == [True] * 4, gaps


def test_sync_now_joins_a_poll_under_way_even_while_its_fires_keep_it_busy(
    database: Database,
) -> None:
    """A channel whose polls take longer than its period (Amazon's after a throttle, waiting
    minutes for a token) is fired again and again; `sync_now` must still get its turn, and
    join the poll under way instead of queueing a second slow one behind it."""
    store, clock, start = _single(database)
    market = store.channels["shop"].market

    async def scenario() -> dict[str, dict[str, object]]:
        instance = start()
        firing = True

        async def fire() -> None:  # APScheduler's fires: a new tick every 50 ms
            ticks: list[asyncio.Task[bool]] = []
            while firing:
                clock.now = T0 + timedelta(seconds=len(ticks) + 1)
                ticks.append(asyncio.create_task(instance.scheduler.run_tick("shop", "poll")))
                await asyncio.sleep(0.05)
            await asyncio.gather(*ticks)

        try:
            await _until(lambda: len(instance.scheduler.held) == 2, "the leases")
            await instance.scheduler.wait_idle()
            market.faults.latency = 0.3  # every poll outlasts several fires
            polls = market.calls["fetch_orders"]
            firer = asyncio.create_task(fire())
            await _until(lambda: market.calls["fetch_orders"] > polls, "a poll under way")
            try:
                return await asyncio.wait_for(instance.scheduler.sync_now("shop"), DEADLINE_S)
            finally:
                firing = False
                await firer
        finally:
            await _stop(instance)

    results = asyncio.run(scenario())
    assert results["poll"]["ok"] is True and results["poll"]["joined"] is True, results
    assert results["reconcile"]["ok"] is True and "joined" not in results["reconcile"], results


def test_refused_credentials_stop_every_call_but_a_slow_check_and_recover_alone(
    database: Database,
) -> None:
    store, clock, start = _single(database)
    market = store.channels["shop"].market

    async def scenario() -> None:
        instance = start()
        health = instance.scheduler.health
        try:
            await _until(lambda: len(instance.scheduler.held) == 2, "the leases")
            await instance.scheduler.wait_idle()  # the tick a new holder runs at once
            await _tick(instance, clock, 0)
            market.faults.auth_broken = True
            await _tick(instance, clock, 1)
            assert not health.is_callable("shop")
            assert _state(database)[0] == "auth_failed"
            with database.read_session() as session:
                assert readiness_problems(session, {"shop"}) == [
                    "channel shop: authentication failed"
                ]
            calls = Counter(market.calls)
            for second in range(2, 11):  # nothing calls the channel until the check is due
                await _tick(instance, clock, second)
            assert Counter(market.calls) == calls
            await _tick(instance, clock, 11)  # the check, refused again
            assert Counter(market.calls) - calls == Counter({"check_connection": 1})

            market.faults.auth_broken = False
            for second in range(12, 21):
                await _tick(instance, clock, second)
            assert Counter(market.calls) - calls == Counter({"check_connection": 1})
            ran = await _tick(instance, clock, 21)  # the check passes: both jobs run again
            assert ran == {"poll": True, "reconcile": True}
            assert Counter(market.calls) - calls == Counter(
                {"check_connection": 2, "fetch_orders": 2, "list_listings": 1, "read_stock": 1}
            )
            assert health.is_callable("shop")
            assert _state(database)[0] == "ok"
            with database.read_session() as session:
                assert readiness_problems(session, {"shop"}) == []
            runs = instance.metrics.scheduled_runs
            assert runs.labels("shop", "poll", "auth_failed")._value.get() == 1
        finally:
            await _stop(instance)

    asyncio.run(scenario())


def test_another_instance_learns_of_an_auth_failure_at_its_next_heartbeat(
    database: Database,
) -> None:
    store = _store(database)
    other = ChannelHealth(database, store.channels)
    seen: list[str] = []
    other.on_recovered(seen.append)
    ChannelHealth(database, store.channels).record_auth_failure("shop", "credentials refused")
    with database.read_session() as session:
        other.refresh(session)
    assert not other.is_callable("shop") and other.is_callable("market")
    ChannelHealth(database, store.channels).record_auth_ok("shop")
    with database.read_session() as session:
        other.refresh(session)
    assert other.is_callable("shop") and seen == ["shop"]


def test_apscheduler_fires_the_jobs_on_its_own_and_wakes_the_outbox(database: Database) -> None:
    """The real trigger path, with short periods: orders come in and listings get bound."""
    store = build_store(database, StoreSpec(channels=[ChannelSpec("shop")], skus=["A"]))
    shop = store.channels["shop"]
    with database.session() as session:
        session.add(Sku(sku="NEW"))
    shop.market.set_stock("NEW", 3)
    settings = SchedulerSettings(
        heartbeat_s=0.1,
        lease_ttl_s=0.2,
        outbox_interval_s=0.05,
        reconcile_overlap_s=86400,
        initial_lookback_s=400 * 86400,
    )
    wakes: list[float] = []

    async def scenario() -> None:
        scheduler = Scheduler(
            database,
            [ScheduledChannel(PollChannel(shop.ref, shop.connector), 0.2, 0.3)],
            settings,
            health=ChannelHealth(database, ["shop"]),
            wake=lambda: wakes.append(time.monotonic()),
        )
        aps = AsyncIOScheduler(timezone=UTC)
        scheduler.schedule(aps)
        aps.start()
        stop = asyncio.Event()
        task = asyncio.create_task(scheduler.run(stop))
        try:
            shop.market.place_order([("A", 2)])
            await _until(lambda: _count(database, Order) == 1, "the order to be polled")
            await _until(lambda: _bound(database) == {"A", "NEW"}, "NEW to be bound")
            shop.market.place_order([("A", 1)])
            await _until(lambda: _count(database, Order) == 2, "the second order")
            await _until(lambda: len(wakes) >= 5, "the outbox to be woken")
        finally:
            aps.shutdown(wait=False)
            stop.set()
            await task
        with database.read_session() as session:
            assert session.scalar(select(Channel.state)) == ChannelState.OK
            assert session.scalar(select(Channel.last_poll_at)) is not None

    asyncio.run(scenario())


def _count(database: Database, model: type[Order]) -> int:
    with database.read_session() as session:
        return len(session.scalars(select(model.id)).all())


def _bound(database: Database) -> set[str]:
    with database.read_session() as session:
        return set(session.scalars(select(Listing.sku)))
