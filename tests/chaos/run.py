"""The chaos run (issue 9 §1), runnable on its own:

    python -m tests.chaos.run --orders 10000 --kills 20          # the long form (`make chaos`)
    python -m tests.chaos.run --orders 120 --kills 3 --rate 2    # about the short form

The daemon against the Shopify, Amazon and eBay sandboxes, each injecting 20% 5xx, 10% 429 (or
THROTTLED), 5% timeouts after applying, 30% dropped and 20% duplicated webhooks or notifications,
delivered with jitter (reordered). Buyers place orders (some multi-line, some on scarce SKUs, so
oversells happen), cancel some on the marketplace, and the seller records shipments through the
admin API; meanwhile the daemon is SIGKILLed at seeded random moments and started again, and the
store's PostgreSQL (a private cluster) is crashed and restarted once. At the end the faults are
switched off, the outbox drains, each channel is reconciled once, the outbox drains again, and
the verdict compares the marketplaces and the store with what was done (tests/chaos/verdict.py).
It prints the counts, and as its last line one JSON object. Exit code 1 when an invariant broke.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import DBAPIError

from tests.chaos.actors import Ledger, buyers, db_crasher, killer, make_catalogue, seller
from tests.chaos.rig import OUTBOX_LEASE_S, Rig, chaos_faults, start_rig
from tests.chaos.verdict import Verdict, judge

JSON_KEYS = (
    "orders",
    "stored",
    "duplicates",
    "missing",
    "wrong_channel_quantities",
    "shipments_missing",
    "shipments_duplicated",
    "dead_jobs",
    "kills",
)


@dataclass(frozen=True)
class ChaosPlan:
    """What one run does."""

    orders: int
    kills: int
    rate: float = 10.0  # orders placed per second
    seed: int = 9
    postgres: bool = True
    pg_restart: bool = True
    timeout_delay_s: float = 31.0  # above the connectors' 30 s read timeout: the answer is lost
    drain_limit_s: float = 900.0
    outbox_lease_s: float = OUTBOX_LEASE_S
    log_level: str = "WARNING"  # the daemon's; its lines go to STATE/config/stderr.N
    state_dir: Path | None = None


@dataclass(frozen=True)
class ChaosResult:
    """The verdict and how long each phase took."""

    verdict: Verdict
    timings: dict[str, float]


def _wait(what: str, check: Callable[[], bool], limit_s: float, rig: Rig) -> float:
    """Poll `check` (reviving a daemon that exited) until true; seconds taken, or fail."""
    started = time.monotonic()
    while not check():
        rig.crasher.revive()
        if time.monotonic() - started > limit_s:
            raise TimeoutError(f"{what} did not happen within {limit_s:.0f} s")
        time.sleep(0.5)
    return round(time.monotonic() - started, 1)


def _guarded(target: Callable[..., None], ledger: Ledger) -> Callable[..., None]:
    """Run an actor; its exception becomes a harness error in the verdict (and stops the others,
    when the buyers die), rather than a thread dying quietly."""

    def run(*args: object, **kwargs: object) -> None:
        try:
            target(*args, **kwargs)
        except Exception as exc:  # the actor's supervisor: recorded, and the run fails on it
            name = getattr(target, "__name__", "an actor")
            with ledger.lock:
                ledger.errors.append(f"{name} failed: {type(exc).__name__}: {exc}")
            if target is buyers:
                ledger.stop.set()
                ledger.buying_done.set()

    return run


def _drained(rig: Rig) -> bool:
    return rig.jobs_open() == 0 and rig.dirty_listings() == 0


def _progress(rig: Rig, ledger: Ledger, say: Callable[[str], None], stop: threading.Event) -> None:
    """A line every 10 s: how far the buyers, the store and the outbox are."""
    started = time.monotonic()
    while not stop.wait(10.0):
        try:
            line = (
                f"{time.monotonic() - started:6.0f} s: {len(ledger.placed)} placed, "
                f"{rig.orders_stored()} stored, {rig.jobs_open()} jobs open, "
                f"{rig.dirty_listings()} listings dirty, {rig.crasher.kills} kills"
            )
        except DBAPIError as exc:  # the store restarting: say so, go on
            line = f"(progress unreadable: {type(exc).__name__})"
        say(line)


def run_chaos(plan: ChaosPlan, say: Callable[[str], None] = print) -> ChaosResult:
    """Run the whole chaos run; answer its verdict (the caller decides what fails)."""
    catalogue = make_catalogue(plan.orders)
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="chaos-") as scratch:
        state = plan.state_dir or Path(scratch)
        started = time.monotonic()
        with start_rig(
            state,
            catalogue.products,
            postgres=plan.postgres,
            say=say,
            outbox_lease_s=plan.outbox_lease_s,
            log_level=plan.log_level,
        ) as rig:
            timings["start_s"] = round(time.monotonic() - started, 1)
            rig.set_faults(lambda kind: chaos_faults(kind, plan.seed, plan.timeout_delay_s))
            ledger = Ledger()
            span_s = plan.orders / plan.rate
            actors = [
                threading.Thread(
                    target=_guarded(buyers, ledger),
                    args=(rig, catalogue, ledger),
                    kwargs={"orders": plan.orders, "rate": plan.rate, "seed": plan.seed},
                    name="buyers",
                ),
                threading.Thread(
                    target=_guarded(seller, ledger),
                    args=(rig, ledger),
                    kwargs={"limit_s": span_s + 600.0},
                    name="seller",
                ),
                threading.Thread(
                    target=_guarded(killer, ledger),
                    args=(rig, ledger),
                    kwargs={
                        "kills": plan.kills,
                        "span_s": span_s,
                        "seed": plan.seed + 1,
                        "say": say,
                    },
                    name="killer",
                    daemon=True,
                ),
            ]
            if plan.pg_restart and rig.cluster is not None:
                at_s = span_s * (0.35 + 0.3 * ((plan.seed * 7919) % 1000) / 1000)
                actors.append(
                    threading.Thread(
                        target=_guarded(db_crasher, ledger),
                        args=(rig, ledger),
                        kwargs={"at_s": at_s, "say": say},
                        name="db-crasher",
                        daemon=True,
                    )
                )
            ticking = threading.Event()
            ticker = threading.Thread(
                target=_progress, args=(rig, ledger, say, ticking), name="progress", daemon=True
            )
            ticker.start()
            chaos_started = time.monotonic()
            for actor in actors:
                actor.start()
            try:
                for actor in actors:
                    actor.join()
            finally:
                ledger.stop.set()
            timings["chaos_s"] = round(time.monotonic() - chaos_started, 1)
            say(
                f"chaos over: {len(ledger.placed)} orders placed, {ledger.refused} refused, "
                f"{rig.crasher.kills} kills"
            )
            rig.set_faults(lambda kind: {})
            rig.crasher.wait_healthy()
            timings["drain_s"] = _wait(
                "the outbox draining", lambda: _drained(rig), plan.drain_limit_s, rig
            )
            synced_at = time.monotonic()
            answers = rig.sync_all(plan.drain_limit_s)
            timings["reconcile_s"] = round(time.monotonic() - synced_at, 1)
            if any(code != 200 for code in answers.values()):
                say(f"reconcile answers: {answers}")
            timings["drain_after_reconcile_s"] = _wait(
                "the outbox draining after the reconcile",
                lambda: _drained(rig),
                plan.drain_limit_s,
                rig,
            )
            ticking.set()
            verdict = judge(rig, ledger)
            verdict.harness_errors = len(ledger.errors)
            for error in ledger.errors:
                verdict.note("harness", error)
    timings["total_s"] = round(time.monotonic() - started, 1)
    return ChaosResult(verdict, timings)


def report(result: ChaosResult, say: Callable[[str], None] = print) -> None:
    """The counts as a table, the examples of what went wrong, and the JSON line last."""
    counts = result.verdict.counts()
    width = max(len(name) for name in counts)
    for name, value in counts.items():
        say(f"  {name:<{width}}  {value}")
    for name, value in result.timings.items():
        say(f"  {name:<{width}}  {value}")
    for what, examples in result.verdict.examples.items():
        for example in examples:
            say(f"  ! {what}: {example}")
    say(
        json.dumps(
            {key: counts[key] for key in JSON_KEYS}
            | {key: value for key, value in counts.items() if key not in JSON_KEYS}
            | result.timings
        )
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run, print; exit 1 when an invariant broke."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--rate", type=float, default=10.0, help="orders placed per second")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--sqlite", action="store_true", help="a SQLite store, no PG restart")
    parser.add_argument("--no-pg-restart", action="store_true")
    parser.add_argument("--timeout-delay", type=float, default=31.0)
    parser.add_argument("--drain-limit", type=float, default=3600.0)
    parser.add_argument(
        "--outbox-lease",
        type=float,
        default=OUTBOX_LEASE_S,
        help="the daemon's [outbox] lease_s (below 30 s: jobs freed while their call runs)",
    )
    parser.add_argument("--log-level", default="WARNING", help="the daemon's logging level")
    parser.add_argument("--state-dir", type=Path, help="keep the run's files here")
    args = parser.parse_args(argv)
    plan = ChaosPlan(
        orders=args.orders,
        kills=args.kills,
        rate=args.rate,
        seed=args.seed,
        postgres=not args.sqlite,
        pg_restart=not (args.sqlite or args.no_pg_restart),
        timeout_delay_s=args.timeout_delay,
        drain_limit_s=args.drain_limit,
        outbox_lease_s=args.outbox_lease,
        log_level=args.log_level,
        state_dir=args.state_dir,
    )

    def say(line: str) -> None:
        print(line, flush=True)

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM too stops the daemon, sandboxes and cluster on its way

    signal.signal(signal.SIGTERM, interrupted)
    result = run_chaos(plan, say)
    report(result, say)
    return 1 if result.verdict.failures(min_kills=plan.kills) else 0


if __name__ == "__main__":
    sys.exit(main())
