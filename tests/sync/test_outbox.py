"""The outbox: enqueue with replacement, leases, twins, retries, dead letters, concurrent claims."""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from sync.db import Database
from sync.models import (
    LANE_NORMAL,
    LANE_SCARCE,
    LANE_SOLD_OUT,
    Channel,
    JobKind,
    JobState,
    OutboxJob,
)
from sync.outbox import (
    RetrySchedule,
    claim,
    complete,
    enqueue,
    enqueue_many,
    fail,
    list_jobs,
    release,
    requeue_dead,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
DEFAULT_SCHEDULE = RetrySchedule()
FAST = RetrySchedule(base_s=0.01, cap_s=0.05)


@pytest.fixture
def channel_id(database: Database) -> int:
    with database.session() as session:
        channel = Channel(name="shop", kind="memory")
        session.add(channel)
        session.flush()
        return channel.id


def _enqueue(
    db: Database, channel_id: int, key: str, payload: dict[str, object], now: datetime = T0
) -> None:
    with db.session() as session:
        enqueue(
            session,
            channel_id=channel_id,
            kind=JobKind.STOCK,
            identity_key=key,
            payload=payload,
            now=now,
        )


def _claim(
    db: Database,
    channel_id: int,
    *,
    now: datetime = T0,
    owner: str = "worker-a",
    limit: int = 10,
    kinds: Sequence[JobKind] = (JobKind.STOCK,),
) -> list[int]:
    with db.session() as session:
        jobs = claim(
            session,
            channel_id=channel_id,
            kinds=kinds,
            limit=limit,
            owner=owner,
            lease=LEASE,
            now=now,
        )
        return [job.id for job in jobs]


def _job(db: Database, job_id: int) -> OutboxJob:
    with db.read_session() as session:
        return session.get_one(OutboxJob, job_id)


def _jobs(db: Database, key: str) -> list[OutboxJob]:
    with db.read_session() as session:
        return list(
            session.scalars(
                select(OutboxJob).where(OutboxJob.identity_key == key).order_by(OutboxJob.id)
            )
        )


def _fail(
    db: Database,
    job_id: int,
    error: str,
    *,
    now: datetime,
    retry_after: float | None = None,
    permanent: bool = False,
    schedule: RetrySchedule = DEFAULT_SCHEDULE,
) -> JobState:
    with db.session() as session:
        return fail(
            session,
            session.get_one(OutboxJob, job_id),
            error,
            retry_after=retry_after,
            permanent=permanent,
            schedule=schedule,
            now=now,
        )


def test_enqueue_replaces_the_payload_of_the_pending_job(
    database: Database, channel_id: int
) -> None:
    _enqueue(database, channel_id, "stock:1", {"quantity": 5})
    _enqueue(database, channel_id, "stock:1", {"quantity": 3}, now=T0 + timedelta(seconds=1))
    _enqueue(database, channel_id, "stock:2", {"quantity": 9})
    [job] = _jobs(database, "stock:1")
    assert (job.state, job.payload, job.attempts) == (JobState.PENDING, {"quantity": 3}, 0)
    assert job.run_after == T0  # its place in the queue: before stock:2, enqueued after it
    assert [j.payload for j in _jobs(database, "stock:2")] == [{"quantity": 9}]
    claimed = _claim(database, channel_id, now=T0 + timedelta(seconds=2))
    assert [_job(database, i).identity_key for i in claimed] == ["stock:1", "stock:2"]


def test_a_listing_that_keeps_changing_is_not_sent_to_the_back_of_the_queue(
    database: Database, channel_id: int
) -> None:
    """A rate-limited channel sends one job at a time: the hot listing's job, replaced at each
    sale, still goes before the jobs queued after it first, so it is not starved."""
    _enqueue(database, channel_id, "stock:hot", {"quantity": 3})
    for n in range(1, 4):
        _enqueue(
            database, channel_id, f"stock:quiet-{n}", {"quantity": 9}, now=T0 + timedelta(seconds=n)
        )
        _enqueue(
            database, channel_id, "stock:hot", {"quantity": 3 - n}, now=T0 + timedelta(seconds=n)
        )
    [first_id] = _claim(database, channel_id, now=T0 + timedelta(seconds=5), limit=1)
    first = _job(database, first_id)
    assert (first.identity_key, first.payload) == ("stock:hot", {"quantity": 0})


def test_a_job_waiting_for_a_retry_is_due_now_once_replaced(
    database: Database, channel_id: int
) -> None:
    _enqueue(database, channel_id, "stock:1", {"quantity": 5})
    [job_id] = _claim(database, channel_id)
    assert _fail(database, job_id, "throttled", now=T0, retry_after=30) == JobState.PENDING
    replaced_at = T0 + timedelta(seconds=2)
    _enqueue(database, channel_id, "stock:1", {"quantity": 4}, now=replaced_at)
    assert _claim(database, channel_id, now=replaced_at) == [job_id]


def test_enqueue_keeps_working_on_a_long_lived_connection(
    database: Database, channel_id: int
) -> None:
    """A pooled connection serves enqueue over and over (the pusher plans every round). On
    PostgreSQL psycopg prepares a statement after 5 runs and the server may then plan it
    generically; the upsert's conflict target must still name the pending-identity index."""
    with database.session() as session:
        for n in range(30):
            enqueue(
                session,
                channel_id=channel_id,
                kind=JobKind.STOCK,
                identity_key=f"stock:{n % 3}",
                payload={"quantity": n},
                now=T0,
            )
    assert [j.payload for j in _jobs(database, "stock:0")] == [{"quantity": 27}]


def test_a_claim_leases_the_job_and_a_second_claim_does_not_get_it(
    database: Database, channel_id: int
) -> None:
    _enqueue(database, channel_id, "stock:1", {"quantity": 5})
    [job_id] = _claim(database, channel_id, owner="worker-a")
    job = _job(database, job_id)
    assert (job.state, job.lease_owner, job.attempts) == (JobState.RUNNING, "worker-a", 1)
    assert job.lease_until == T0 + LEASE
    assert _claim(database, channel_id, owner="worker-b", now=T0 + LEASE / 2) == []


def test_a_claim_takes_only_due_jobs_of_its_channel_and_kinds_oldest_first(
    database: Database, channel_id: int
) -> None:
    with database.session() as session:
        other = Channel(name="other", kind="memory")
        session.add(other)
        session.flush()
        other_id = other.id
    _enqueue(database, other_id, "stock:9", {"quantity": 1})
    _enqueue(database, channel_id, "stock:2", {"n": 2}, now=T0 + timedelta(seconds=2))
    _enqueue(database, channel_id, "stock:1", {"n": 1}, now=T0 + timedelta(seconds=1))
    _enqueue(database, channel_id, "stock:3", {"n": 3}, now=T0 + timedelta(hours=1))
    with database.session() as session:
        enqueue(
            session,
            channel_id=channel_id,
            kind=JobKind.SHIPMENT,
            identity_key="shipment:1",
            payload={},
            now=T0,
        )
    claimed = _claim(database, channel_id, now=T0 + timedelta(minutes=1), limit=1)
    assert [_job(database, i).payload for i in claimed] == [{"n": 1}]
    claimed = _claim(database, channel_id, now=T0 + timedelta(minutes=1))
    assert [_job(database, i).payload for i in claimed] == [{"n": 2}]
    assert [_job(database, i).identity_key for i in _claim(database, other_id)] == ["stock:9"]


def test_an_expired_lease_is_claimed_again(database: Database, channel_id: int) -> None:
    _enqueue(database, channel_id, "stock:1", {"quantity": 5})
    [job_id] = _claim(database, channel_id, owner="worker-a")
    # The worker died: once its lease has run out, another worker takes the job.
    assert _claim(database, channel_id, owner="worker-b", now=T0 + LEASE) == []
    later = T0 + LEASE + timedelta(seconds=1)
    assert _claim(database, channel_id, owner="worker-b", now=later) == [job_id]
    job = _job(database, job_id)
    assert (job.state, job.lease_owner, job.attempts) == (JobState.RUNNING, "worker-b", 2)
    assert job.lease_until == later + LEASE


def test_an_expired_job_with_a_newer_pending_twin_is_superseded(
    database: Database, channel_id: int
) -> None:
    _enqueue(database, channel_id, "stock:1", {"quantity": 5})
    [old_id] = _claim(database, channel_id)
    _enqueue(database, channel_id, "stock:1", {"quantity": 2}, now=T0 + timedelta(seconds=1))
    later = T0 + LEASE + timedelta(seconds=1)
    [new_id] = _claim(database, channel_id, owner="worker-b", now=later)
    assert new_id != old_id
    assert _job(database, new_id).payload == {"quantity": 2}
    assert _job(database, old_id).state == JobState.DONE


def test_a_job_whose_twin_is_running_waits_for_it(database: Database, channel_id: int) -> None:
    """Two pushes for one listing in flight could land in either order: the newer one waits."""
    _enqueue(database, channel_id, "stock:1", {"quantity": 5})
    [running_id] = _claim(database, channel_id)
    _enqueue(database, channel_id, "stock:1", {"quantity": 2}, now=T0 + timedelta(seconds=1))
    _enqueue(database, channel_id, "stock:2", {"quantity": 7}, now=T0 + timedelta(seconds=1))
    later = T0 + timedelta(seconds=2)
    claimed = _claim(database, channel_id, owner="worker-b", now=later)
    assert [_job(database, i).identity_key for i in claimed] == ["stock:2"]
    with database.session() as session:
        complete(session, [running_id])
    [twin_id] = _claim(database, channel_id, owner="worker-b", now=later)
    assert _job(database, twin_id).payload == {"quantity": 2}


def _enqueue_in_lane(db: Database, channel_id: int, key: str, quantity: int, lane: int) -> None:
    with db.session() as session:
        enqueue_many(
            session,
            channel_id=channel_id,
            kind=JobKind.STOCK,
            jobs=[(key, {"quantity": quantity})],
            now=T0 + timedelta(seconds=1),
            lanes={key: lane},
        )


def test_a_push_to_last_units_goes_beside_a_slow_push_of_its_listing_and_only_it(
    database: Database, channel_id: int
) -> None:
    """A feed takes Amazon minutes: a listing in it that sells out meanwhile must not show
    stock all that time. Only a push to last units overtakes, one at a time, and only a push
    marked overtakable (the pusher re-pushes the newest figure once the slow one lands)."""
    _enqueue(database, channel_id, "stock:1", {"quantity": 24})
    _enqueue(database, channel_id, "stock:2", {"quantity": 24})
    slow_id, plain_id = _claim(database, channel_id)
    with database.session() as session:
        session.get_one(OutboxJob, slow_id).overtakable = True
    later = T0 + timedelta(seconds=2)
    # An ordinary change waits, as ever.
    _enqueue_in_lane(database, channel_id, "stock:1", 20, LANE_NORMAL)
    assert _claim(database, channel_id, owner="worker-b", now=later) == []
    # Sold out: it goes beside the slow push; beside the plain one it waits.
    _enqueue_in_lane(database, channel_id, "stock:1", 0, LANE_SOLD_OUT)
    _enqueue_in_lane(database, channel_id, "stock:2", 0, LANE_SOLD_OUT)
    [overtaking_id] = _claim(database, channel_id, owner="worker-b", now=later)
    overtaking = _job(database, overtaking_id)
    assert (overtaking.identity_key, overtaking.payload) == ("stock:1", {"quantity": 0})
    assert not overtaking.overtakable
    # A second one waits for the one that overtook (two in flight at most).
    _enqueue_in_lane(database, channel_id, "stock:1", 1, LANE_SCARCE)
    assert _claim(database, channel_id, owner="worker-b", now=later) == []
    with database.session() as session:
        complete(session, [plain_id])
    [after_plain] = _claim(database, channel_id, owner="worker-b", now=later)
    assert _job(database, after_plain).identity_key == "stock:2"


def test_a_failed_try_is_retried_no_sooner_than_the_channel_asked(
    database: Database, channel_id: int
) -> None:
    _enqueue(database, channel_id, "stock:1", {"quantity": 5})
    [job_id] = _claim(database, channel_id)
    failed_at = T0 + timedelta(seconds=1)
    assert _fail(database, job_id, "throttled", now=failed_at, retry_after=30) == JobState.PENDING
    job = _job(database, job_id)
    assert job.run_after >= failed_at + timedelta(seconds=30)
    assert (job.last_error, job.lease_owner) == ("throttled", None)
    assert _claim(database, channel_id, now=failed_at + timedelta(seconds=29)) == []
    assert _claim(database, channel_id, now=job.run_after) == [job_id]


def test_the_retry_delay_grows_within_its_cap() -> None:
    schedule = RetrySchedule(max_attempts=10, base_s=1.0, cap_s=20.0)
    rng = random.Random(7)
    for attempts in range(1, 10):
        ceiling = min(20.0, 2.0 ** (attempts - 1))
        delays = [schedule.delay(attempts, None, rng) for _ in range(50)]
        assert all(0 <= d <= ceiling for d in delays)
        assert all(schedule.delay(attempts, 25.0, rng) >= 25.0 for _ in range(10))


def test_a_job_is_dead_after_its_last_attempt(database: Database, channel_id: int) -> None:
    schedule = RetrySchedule(max_attempts=3, base_s=1.0, cap_s=1.0)
    _enqueue(database, channel_id, "stock:1", {"quantity": 5})
    now = T0
    states = []
    for _ in range(3):
        [job_id] = _claim(database, channel_id, now=now)
        states.append(_fail(database, job_id, "timeout", now=now, schedule=schedule))
        now += timedelta(seconds=2)  # past the capped delay
    assert states == [JobState.PENDING, JobState.PENDING, JobState.DEAD]
    assert _claim(database, channel_id, now=now + timedelta(days=1)) == []
    with database.read_session() as session:
        [dead] = list_jobs(session, state=JobState.DEAD)
        assert (dead.id, dead.attempts, dead.last_error) == (job_id, 3, "timeout")


def test_a_permanent_refusal_is_dead_at_once_with_its_reason(
    database: Database, channel_id: int
) -> None:
    _enqueue(database, channel_id, "stock:1", {"quantity": 5})
    [job_id] = _claim(database, channel_id)
    reason = "listing is closed on the channel"
    assert _fail(database, job_id, reason, now=T0, permanent=True) == JobState.DEAD
    with database.read_session() as session:
        assert [(j.id, j.last_error) for j in list_jobs(session, state=JobState.DEAD)] == [
            (job_id, reason)
        ]
        assert list_jobs(session, state=JobState.PENDING) == []


def test_a_failed_job_with_a_newer_pending_twin_is_superseded(
    database: Database, channel_id: int
) -> None:
    _enqueue(database, channel_id, "stock:1", {"quantity": 5})
    [old_id] = _claim(database, channel_id)
    _enqueue(database, channel_id, "stock:1", {"quantity": 2}, now=T0 + timedelta(seconds=1))
    assert _fail(database, old_id, "timeout", now=T0 + timedelta(seconds=2)) == JobState.DONE
    [new_id] = _claim(database, channel_id, now=T0 + timedelta(seconds=2))
    assert _job(database, new_id).payload == {"quantity": 2}


def test_release_gives_a_claimed_job_back_without_counting_the_try(
    database: Database, channel_id: int
) -> None:
    _enqueue(database, channel_id, "stock:1", {"quantity": 5})
    [job_id] = _claim(database, channel_id)
    later = T0 + timedelta(seconds=30)
    with database.session() as session:
        release(session, session.get_one(OutboxJob, job_id), run_after=later)
    job = _job(database, job_id)
    assert (job.state, job.attempts, job.lease_owner) == (JobState.PENDING, 0, None)
    assert _claim(database, channel_id, now=later - timedelta(seconds=1)) == []
    assert _claim(database, channel_id, now=later) == [job_id]


def test_requeue_dead_puts_a_dead_job_back_with_fresh_tries(
    database: Database, channel_id: int
) -> None:
    _enqueue(database, channel_id, "stock:1", {"quantity": 5})
    [job_id] = _claim(database, channel_id)
    _fail(database, job_id, "refused", now=T0, permanent=True)
    with database.session() as session:
        job = requeue_dead(session, job_id)
        assert job is not None
        assert (job.state, job.attempts) == (JobState.PENDING, 0)
        assert requeue_dead(session, job_id) is None  # not dead any more
        assert requeue_dead(session, 10_000) is None  # no such job
    assert _claim(database, channel_id, now=datetime.now(UTC) + timedelta(seconds=1)) == [job_id]


def test_requeue_dead_leaves_history_alone_when_a_newer_job_waits(
    database: Database, channel_id: int
) -> None:
    _enqueue(database, channel_id, "stock:1", {"quantity": 5})
    [job_id] = _claim(database, channel_id)
    _fail(database, job_id, "refused", now=T0, permanent=True)
    _enqueue(database, channel_id, "stock:1", {"quantity": 2})
    with database.session() as session:
        assert requeue_dead(session, job_id) is None
    assert [j.state for j in _jobs(database, "stock:1")] == [JobState.DEAD, JobState.PENDING]


def test_two_threads_claiming_at_once_never_take_the_same_job(
    database: Database, channel_id: int
) -> None:
    """PostgreSQL claims with FOR UPDATE SKIP LOCKED; SQLite serialises the writers."""
    total = 300
    with database.session() as session:
        session.add_all(
            OutboxJob(
                channel_id=channel_id,
                kind=JobKind.STOCK,
                identity_key=f"stock:{n}",
                payload={"n": n},
                run_after=T0,
            )
            for n in range(total)
        )
    start, first_taken = threading.Barrier(2), threading.Barrier(2)
    taken: dict[str, list[int]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def worker(owner: str) -> None:
        try:
            start.wait(timeout=10)
            taken[owner].extend(_claim(database, channel_id, owner=owner, limit=7))
            first_taken.wait(timeout=10)  # both claimed once, side by side; now race on
            while claimed := _claim(database, channel_id, owner=owner, limit=7):
                taken[owner].extend(claimed)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(owner,)) for owner in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert not set(taken["a"]) & set(taken["b"])
    assert len(taken["a"]) + len(taken["b"]) == total
    assert len(taken["a"]) >= 7 and len(taken["b"]) >= 7
    with database.read_session() as session:
        owners = dict(session.execute(select(OutboxJob.id, OutboxJob.lease_owner)).all())
    assert all(owners[i] == "a" for i in taken["a"])
    assert all(owners[i] == "b" for i in taken["b"])


def test_a_failed_job_whose_twin_is_enqueued_meanwhile_does_not_break_the_unique_pending_rule(
    pg_database: Database,
) -> None:
    """PostgreSQL, READ COMMITTED: while `fail` puts a job back to pending, the planner commits a
    newer target for the same listing. Had `fail` looked for a twin and then written, the update
    would violate the one-pending-job-per-identity index (and the pusher would leave the job
    running until its lease ends); the index must decide instead, and the newer target win.

    The interleaving is forced: the planner commits as `fail` opens its savepoint.
    """
    database = pg_database
    with database.session() as session:
        channel = Channel(name="shop", kind="memory")
        session.add(channel)
        session.flush()
        channel_id = channel.id
    _enqueue(database, channel_id, "stock:1", {"quantity": 5})
    [job_id] = _claim(database, channel_id)

    with Session(database.engine) as planner, planner.begin():
        enqueue(
            planner,
            channel_id=channel_id,
            kind=JobKind.STOCK,
            identity_key="stock:1",
            payload={"quantity": 2},
            now=T0,
        )

        def planner_commits_after_the_look(
            _conn: object, _cursor: object, statement: str, *_args: object
        ) -> None:
            # Right after `fail` decides to go back to pending (its savepoint), the planner's
            # newer target commits: the worst moment for a look-then-write.
            if statement.startswith("SAVEPOINT") and planner.in_transaction():
                planner.commit()

        with database.session() as session:
            event.listen(
                session.connection(), "after_cursor_execute", planner_commits_after_the_look
            )
            state = fail(
                session, session.get_one(OutboxJob, job_id), "timeout", now=T0, schedule=FAST
            )
    assert state in (JobState.DONE, JobState.PENDING)
    jobs = _jobs(database, "stock:1")
    assert [j.payload for j in jobs if j.state == JobState.PENDING] == [{"quantity": 2}]
