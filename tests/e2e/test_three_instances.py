"""Three daemons on one PostgreSQL: every periodic job runs once per tick while holders die.

Three `channel-sync run` processes share one store and two reference channels. For 200 poll
ticks, every 10 ticks the daemon holding the most leases (from its `/api/status`) is SIGKILLed
and started again at once. What the marketplace saw is the proof: the sandbox logs every API
call with its arrival time, and each job's first call of a run (`list_orders` without a cursor)
is mapped to the tick bucket it arrived in (a run that a stalled holder started in the next
bucket is read as late, see `_runs_per_tick`). A poll reads from the checkpoint; a reconcile from
the checkpoint minus `reconcile_overlap_s`, which is how the two are told apart. Every tick
strictly inside the run window must show exactly one run per job and channel, except a tick
whose holder was killed between claiming it and calling (the documented "at most once" gap),
which is counted and reported. The takeover of every lease a killed daemon held is read from
the survivors' logs and must come within 2 heartbeats of the kill, plus a small slack.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from sync.scheduler import tick_of
from tests.support.daemon import Daemon, DaemonConfig, wait_for
from tests.support.reference import ReferenceSandbox

ADMIN_TOKEN = "three-instances-admin-token-4b1d"
CHANNELS = ["north", "south"]
DAEMONS = 3
POLL_S = 1.0
RECONCILE_S = 2.0
TICKS = 200  # of the poll job
KILL_EVERY = 10  # poll ticks
HEARTBEAT_S = 0.25
LEASE_TTL_S = 2 * HEARTBEAT_S
OVERLAP_S = 3600.0
# A takeover happens once the lease expired (2 heartbeats after the last renewal), when a
# survivor's heartbeat wakes (it sleeps until the earliest foreign expiry plus a 25 ms margin)
# and its store transaction commits: allow that margin and one store round trip on busy cores.
TAKEOVER_SLACK_S = 0.15
MAIN = f"""
[schedules]
heartbeat_s = {HEARTBEAT_S}
lease_ttl_s = {LEASE_TTL_S}
reconcile_overlap_s = {OVERLAP_S}
"""
CHANNEL_EXTRA = f"""
[schedule]
poll_interval_s = {POLL_S}
reconcile_interval_s = {RECONCILE_S}
"""
TAKEOVER = "took over lease "
SKIPPED = " tick(s) before this one did not run"


@dataclass(frozen=True)
class Kill:
    """One SIGKILL: whom, the leases its /api/status showed, when asked and when killed."""

    asked_at: datetime
    at: datetime
    instance: str
    leases: tuple[str, ...]


def _sleep_until(at: datetime) -> None:
    """Wait for a moment of the test's own timetable (a kill, the run's end): not a sync point."""
    time.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()))


def _status(daemon: Daemon) -> dict[str, Any] | None:
    """The daemon's `instance` from /api/status, or None while it does not answer."""
    try:
        answer = httpx.get(
            f"{daemon.config.admin_url}/api/status",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=2,
        )
    except httpx.TransportError:
        return None
    if answer.status_code != 200:
        return None
    instance: dict[str, Any] = answer.json()["instance"]
    return instance


def _answering(
    daemons: list[Daemon],
) -> tuple[datetime, list[tuple[dict[str, Any], Daemon]]] | None:
    """When asked, and (instance, daemon) for each daemon that answers; None under two."""
    asked_at = datetime.now(UTC)
    statuses = [(status, d) for d in daemons if (status := _status(d)) is not None]
    return (asked_at, statuses) if len(statuses) >= 2 else None


def _log_lines(daemon: Daemon) -> list[dict[str, Any]]:
    lines = []
    for text in daemon.output().splitlines():
        if text.startswith("{"):
            try:
                lines.append(json.loads(text))
            except json.JSONDecodeError:
                continue  # a line cut by SIGKILL
    return lines


def _local_time(text: str) -> datetime:
    """A log line's `time` (local, milliseconds) as an aware UTC datetime."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").astimezone(UTC)


def _first_pages(log: list[dict[str, Any]]) -> dict[str, list[datetime]]:
    """Arrival times of each job's first call of a run: `poll` and `reconcile`."""
    firsts = []
    for call in log:
        if call["operation"] != "list_orders":
            continue
        query = parse_qs(call["query"])
        if "cursor" in query:
            continue
        since = datetime.fromisoformat(query["updated_since"][0])
        firsts.append((datetime.fromisoformat(call["at"]), since))
    newest = max(since for _, since in firsts)
    # A poll reads from the checkpoint, a reconcile from the checkpoint minus the overlap.
    boundary = newest - timedelta(seconds=OVERLAP_S / 2)
    return {
        "poll": [at for at, since in firsts if since >= boundary],
        "reconcile": [at for at, since in firsts if since < boundary],
    }


@dataclass
class JobTicks:
    """One job's runs per tick inside the window, as the marketplace saw them."""

    runs: dict[datetime, int]
    late: int  # runs that arrived in the bucket after their tick's (see _runs_per_tick)
    lateness_s: list[float]  # arrival minus the start of the tick each run is counted for


def _runs_per_tick(
    calls: list[datetime], interval: timedelta, start: datetime, end: datetime
) -> JobTicks:
    """Runs per tick for every tick wholly inside [start, end).

    A run claims the tick its fire falls in and calls the channel right after, so its first call
    arrives in that tick's bucket unless the holder stalls in between (a process starved for a
    second on the busy machine). Such a late run leaves its own bucket empty and lands next to
    the next tick's run: a bucket with two runs right after one with none is read as one run
    per tick, the earlier of the two late. Any other bucket with no run or several stays wrong.
    """
    buckets: dict[datetime, list[datetime]] = {}
    for at in sorted(calls):
        buckets.setdefault(tick_of(at, interval), []).append(at)
    first = tick_of(start, interval)
    if first < start:
        first += interval
    runs: dict[datetime, int] = {}
    lateness: list[float] = []
    late = 0
    tick = first - interval  # a run late from the tick before the window is not counted in it
    while tick + interval <= end:
        arrived = buckets.get(tick, [])
        following = buckets.get(tick + interval, [])
        if not arrived and len(following) >= 2:
            arrived = [following.pop(0)]
            if tick >= first:
                late += 1
        if tick >= first:
            runs[tick] = len(arrived)
            lateness += [(at - tick).total_seconds() for at in arrived]
        tick += interval
    return JobTicks(runs, late, lateness)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("db_backend", [pytest.param("postgresql", marks=pytest.mark.pg)])
def test_three_daemons_run_each_job_once_per_tick_while_holders_are_killed(
    tmp_path: Path, db_url: str
) -> None:
    rng = random.Random(44)
    with ReferenceSandbox(tmp_path / "sandbox", CHANNELS) as sandbox:
        daemons = []
        for n in range(DAEMONS):
            config = DaemonConfig(
                root=tmp_path / f"daemon{n}",
                database_url=db_url,
                extra_main=MAIN,
                channels={
                    name: sandbox.channel_file(name, extra=CHANNEL_EXTRA) for name in CHANNELS
                },
            )
            config.write()
            daemons.append(Daemon(config, {config.admin_token_env: ADMIN_TOKEN, **sandbox.env}))
        kills: list[Kill] = []
        try:
            # The first migrates the fresh store and registers the channels before the others
            # start; those two find nothing to create, so they may start together.
            daemons[0].start().wait_healthy(timeout=60)
            for daemon in daemons[1:]:
                daemon.start()
            for daemon in daemons[1:]:
                daemon.wait_healthy(timeout=60)
            start = datetime.now(UTC)
            end = start + timedelta(seconds=TICKS * POLL_S)
            for k in range(TICKS // KILL_EVERY):
                # At a random moment of a tick, so that deaths land before, during and after runs.
                _sleep_until(
                    start + timedelta(seconds=(k * KILL_EVERY + 5 + rng.random()) * POLL_S)
                )
                # A restarted daemon may still be starting (10 s on the busy cores): kill only
                # while another one runs, so that there is always someone to take over.
                asked_at, statuses = wait_for(
                    lambda: _answering(daemons), timeout=60, what="two daemons to answer"
                )
                instance, victim = max(statuses, key=lambda pair: len(pair[0]["leases_held"]))
                killed_at = datetime.now(UTC)
                victim.kill()
                victim.start()
                kills.append(
                    Kill(asked_at, killed_at, instance["id"], tuple(instance["leases_held"]))
                )
            _sleep_until(end)

            def logs_past_the_end() -> dict[str, list[dict[str, Any]]] | None:
                logs = {
                    name: sandbox.control(name, "GET", "/calls?log=1")["log"] for name in CHANNELS
                }
                later = end + timedelta(seconds=RECONCILE_S)
                for log in logs.values():
                    runs = _first_pages(log)
                    if not all(max(runs[job], default=end) >= later for job in runs):
                        return None
                return logs

            call_logs = wait_for(
                logs_past_the_end, timeout=30, what="a run of every job after the window"
            )
        finally:
            for daemon in daemons:
                daemon.kill()
    logs = [line for daemon in daemons for line in _log_lines(daemon)]
    assert all(ADMIN_TOKEN not in d.output() and sandbox.token not in d.output() for d in daemons)

    jobs: dict[str, JobTicks] = {}
    for name, log in call_logs.items():
        runs = _first_pages(log)
        for job, interval_s in (("poll", POLL_S), ("reconcile", RECONCILE_S)):
            interval = timedelta(seconds=interval_s)
            jobs[f"{name}:{job}"] = _runs_per_tick(runs[job], interval, start, end)
    wrong: dict[str, dict[datetime, int]] = {}
    claimed_then_killed: list[dict[str, Any]] = []
    for lease, ticks in jobs.items():
        interval = timedelta(seconds=POLL_S if lease.endswith(":poll") else RECONCILE_S)
        for tick, n in ticks.runs.items():
            killed = [k for k in kills if lease in k.leases and tick <= k.at < tick + interval]
            if n == 0 and killed:
                # The documented "at most once" gap: the holder claimed the tick and was killed
                # before its first call (a tick it had not claimed would be run by the next
                # holder, or logged by it as skipped, below).
                into = (killed[0].at - tick).total_seconds()
                claimed_then_killed.append({"lease": lease, "killed_s_into_tick": round(into, 3)})
            elif n != 1:
                wrong.setdefault(lease, {})[tick] = n
    skipped = [line for line in logs if SKIPPED in line["message"]]

    takeovers = [line for line in logs if line["message"].startswith(TAKEOVER)]
    delays: list[float] = []
    since_kill: list[float] = []
    untaken = []
    after_kills: list[dict[str, Any]] = []
    for kill in kills:
        for lease in kill.leases:
            # The first since its status was read (log times are truncated to the millisecond);
            # one before the kill itself was taken from the victim alive (counted below).
            found = [
                line
                for line in takeovers
                if line["message"].startswith(f"{TAKEOVER}{lease} from {kill.instance},")
                and _local_time(line["time"]) >= kill.asked_at - timedelta(milliseconds=1)
            ]
            if not found:
                untaken.append((kill.instance, lease))
                continue
            if _local_time(found[0]["time"]) < kill.at - timedelta(milliseconds=1):
                continue
            after_kills.append(found[0])
            delays.append(float(found[0]["message"].split(", ")[-1].split()[0]))
            since_kill.append((_local_time(found[0]["time"]) - kill.at).total_seconds())
    # The rest took a lease from a live holder whose renewal came too late (a stalled process).
    from_live = [line for line in takeovers if not any(line is seen for seen in after_kills)]

    runs_per_tick = [n for ticks in jobs.values() for n in ticks.runs.values()]
    lateness = [s for ticks in jobs.values() for s in ticks.lateness_s]
    figures = {
        "ticks": {lease: len(ticks.runs) for lease, ticks in jobs.items()},
        "kills": len(kills),
        "runs_per_tick": {"min": min(runs_per_tick), "max": max(runs_per_tick)},
        "wrong_ticks": sum(len(t) for t in wrong.values()),
        "claimed_then_killed": claimed_then_killed,
        "late_runs": sum(ticks.late for ticks in jobs.values()),
        "skipped_tick_logs": len(skipped),
        "call_lateness_s": {
            "p50": round(statistics.median(lateness), 3),
            "max": round(max(lateness), 3),
        },
        "takeovers_after_kills": len(delays),
        "takeovers_from_live_holders": len(from_live),
        "takeover_s_after_last_heartbeat": {
            "p50": round(statistics.median(delays), 3) if delays else None,
            "max": round(max(delays), 3) if delays else None,
        },
        "takeover_s_after_kill": {
            "p50": round(statistics.median(since_kill), 3) if since_kill else None,
            "max": round(max(since_kill), 3) if since_kill else None,
        },
        "heartbeat_s": HEARTBEAT_S,
        "lease_ttl_s": LEASE_TTL_S,
    }
    print("three-instance figures:", json.dumps(figures))
    (tmp_path / "figures.json").write_text(json.dumps(figures))

    assert len(kills) == TICKS // KILL_EVERY
    assert all(kill.leases for kill in kills), "a killed daemon held no lease"
    assert len(jobs["north:poll"].runs) >= TICKS - 1
    assert not wrong, f"{figures}; ticks not run exactly once: {wrong}"
    assert not skipped, [line["message"] for line in skipped]
    assert not untaken, f"leases of killed daemons never taken over: {untaken}"
    limit = 2 * HEARTBEAT_S + TAKEOVER_SLACK_S
    assert max(delays) <= limit, figures
    assert max(since_kill) <= limit, figures
