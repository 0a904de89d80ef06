"""A separate OS process that ingests orders, for the concurrency and crash tests (not a test module).

Run as `python -m tests.sync.ingest_worker race` or `... stream SPEC.json` from the repository
root. It speaks a line protocol on stdout, flushed after every line:

- `race`: for each `SPEC <json>` line on stdin, prints `READY` once connected and every order is
  built, waits for `GO` on stdin (the barrier: the test writes it to both workers once both are
  ready), ingests its orders one transaction per order with `Database.transact`, printing
  `COMMIT <external_id>` after each commit, then `DONE {"retries": n, "ingested": n,
  "started": t, "finished": t}` (monotonic clock). It exits when stdin closes.
- `stream`: ingests the deterministic delivery stream of `build_stream(seed)` from delivery
  `start` on, one transaction per delivery, and prints `ACK <index> <channel> <external_id>
  <updated_at>` for each order of a delivery only after its commit; `DONE` at the end of the
  stream. A killed run is restarted from a later `start`: ingest absorbs what is delivered twice.

The stream and its catalogue live here so that the test can rebuild exactly what was sent.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from connectors.base import Money, Order, OrderLine, OrderStatus
from sync.db import Database
from sync.ingest import ChannelRef, ingest_orders

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

# The crash test's catalogue: 20 plain SKUs, two bundles built from them, and a channel SKU that
# is not ours (its lines are stored unmapped and reserve nothing).
STREAM_SKUS = tuple(f"SKU-{i:02d}" for i in range(20))
STREAM_BUNDLES: dict[str, dict[str, int]] = {
    "KIT-A": {"SKU-00": 2, "SKU-01": 1},
    "KIT-B": {"SKU-02": 1, "SKU-03": 1, "SKU-04": 1},
}
UNMAPPED_SKU = "NOT-OURS-1"
# "shop" sells from our stock; some of "market"'s orders ship from the marketplace's (FBA).
STREAM_CHANNELS = ("shop", "market")


@dataclass(frozen=True)
class Delivery:
    """One transaction's worth of orders as a channel sends them: a webhook (one) or a page."""

    channel: str
    orders: tuple[Order, ...]


class _RetryCounter(logging.Handler):
    """Counts the transient conflicts `Database.transact` retried (its debug record per retry)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "transient conflict" in record.getMessage():
            self.count += 1


def _count_retries() -> _RetryCounter:
    counter = _RetryCounter()
    logger = logging.getLogger("sync.db")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(counter)
    return counter


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def simple_order(
    external_id: str, skus: Sequence[str], *, updated_at: datetime = T0, quantity: int = 1
) -> Order:
    """An open order with one line of `quantity` units per SKU, in the given line order."""
    return Order(
        external_id=external_id,
        status=OrderStatus.OPEN,
        currency="EUR",
        updated_at=updated_at,
        lines=[
            OrderLine(
                external_line_id=f"{external_id}-{n}",
                sku=sku,
                quantity=quantity,
                unit_price=Money(Decimal("9.90"), "EUR"),
            )
            for n, sku in enumerate(skus, start=1)
        ],
    )


def run_races() -> int:
    """Serve races until stdin closes: `SPEC <json>` -> `READY`; `GO` -> ingest -> `DONE {...}`.

    One process serves many races so that a test pays Python's start-up once per module; each race
    opens its own `Database` and disposes of it, so no connection outlives a race.
    """
    retries = _count_retries()
    for request in sys.stdin:
        if not request.startswith("SPEC "):
            _say(f"ERROR expected SPEC, got {request.strip()!r}")
            return 2
        spec = json.loads(request.removeprefix("SPEC "))
        db = Database(spec["url"])
        channel = ChannelRef(spec["channel_id"], spec["channel_name"], ("default",))
        orders = [simple_order(o["external_id"], o["skus"]) for o in spec["orders"]]
        with db.read_session() as session:  # connect now, so the race is not a race to connect
            session.connection()
        retries.count = 0
        _say("READY")
        if sys.stdin.readline().strip() != "GO":
            _say("ERROR expected GO")
            return 2
        # CLOCK_MONOTONIC is one clock for every process on the machine: the test compares them.
        started = time.monotonic()
        for order in orders:
            db.transact(functools.partial(ingest_orders, channel=channel, orders=[order]))
            _say(f"COMMIT {order.external_id}")
        finished = time.monotonic()
        db.dispose()
        summary = {"retries": retries.count, "ingested": len(orders)}
        _say("DONE " + json.dumps({**summary, "started": started, "finished": finished}))
    return 0


# --- the crash test's delivery stream -----------------------------------------------------------


def _line_sku(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.08:
        return UNMAPPED_SKU
    if roll < 0.20:
        return rng.choice(sorted(STREAM_BUNDLES))
    return rng.choice(STREAM_SKUS)


def _order_versions(rng: random.Random, channel: str, number: int) -> list[Order]:
    """Every state one order goes through on its channel, oldest first."""
    external_id = f"{channel}-{number:04d}"
    updated_at = T0 + timedelta(minutes=number)
    lines = [
        OrderLine(external_line_id=f"L{n}", sku=_line_sku(rng), quantity=rng.randint(1, 3))
        for n in range(1, rng.randint(1, 3) + 1)
    ]
    first = Order(
        external_id=external_id,
        number=f"#{number}",
        status=OrderStatus.PENDING if rng.random() < 0.15 else OrderStatus.OPEN,
        currency="USD",
        updated_at=updated_at,
        created_at=updated_at,
        lines=lines,
        total=Money(Decimal(sum(line.quantity for line in lines) * 1999) / 100, "USD"),
        is_reserving=not (channel == "market" and rng.random() < 0.2),
    )
    versions = [first]
    for _ in range(rng.choice((0, 1, 1, 2, 2, 3))):
        current = versions[-1]
        if current.status in (OrderStatus.CANCELLED, OrderStatus.SHIPPED):
            break
        updated_at = current.updated_at + timedelta(seconds=rng.randint(1, 3600))
        has_shipped = any(line.quantity_shipped for line in current.lines)
        step = rng.choice(
            ("touch", "cancel_unit", "drop_line", "add_line", "ship", "ship", "cancel")
        )
        lines = list(current.lines)
        status: OrderStatus = (
            OrderStatus.OPEN if current.status == OrderStatus.PENDING else current.status
        )
        if step == "cancel_unit":
            open_lines = [
                i for i, ln in enumerate(lines) if ln.live_quantity - ln.quantity_shipped > 0
            ]
            if open_lines:
                i = rng.choice(open_lines)
                lines[i] = replace(lines[i], quantity_cancelled=lines[i].quantity_cancelled + 1)
        elif step == "drop_line" and len(lines) > 1 and not has_shipped:
            del lines[rng.randrange(len(lines))]
        elif step == "add_line" and not has_shipped:
            used = {int(ln.external_line_id[1:]) for ln in lines}
            lines.append(
                OrderLine(
                    external_line_id=f"L{max(used) + 1}",
                    sku=_line_sku(rng),
                    quantity=rng.randint(1, 2),
                )
            )
        elif step == "ship":
            lines = [
                replace(ln, quantity_shipped=ln.live_quantity) if rng.random() < 0.7 else ln
                for ln in lines
            ]
            done = all(ln.quantity_shipped == ln.live_quantity for ln in lines)
            status = OrderStatus.SHIPPED if done else OrderStatus.PARTIALLY_SHIPPED
        elif step == "cancel" and not has_shipped:
            status = OrderStatus.CANCELLED
            if rng.random() < 0.5:  # some channels also zero the lines, some only flag the order
                lines = [replace(ln, quantity_cancelled=ln.quantity) for ln in lines]
        versions.append(replace(current, status=status, lines=lines, updated_at=updated_at))
    return versions


def build_stream(seed: int, orders_per_channel: int = 170) -> list[Delivery]:
    """The deliveries, in the order the channels send them: interleaved, repeated, some stale."""
    rng = random.Random(seed)
    events: list[tuple[float, str, Order]] = []
    for channel in STREAM_CHANNELS:
        for number in range(orders_per_channel):
            at = float(number)
            for version in _order_versions(rng, channel, number):
                events.append((at, channel, version))
                at += rng.uniform(0.5, 40)
    events.sort(key=lambda event: event[0])
    sent: list[tuple[str, Order]] = []
    for _, channel, order in events:
        sent.append((channel, order))
        roll = rng.random()
        if roll < 0.10:  # the same notification twice
            sent.append((channel, order))
        elif roll < 0.18:  # a stale version arrives after the newer one (retries, reordering)
            older = [o for c, o in sent if c == channel and o.external_id == order.external_id]
            sent.append((channel, older[0]))
    deliveries: list[Delivery] = []
    i = 0
    while i < len(sent):
        channel = sent[i][0]
        size = rng.randint(2, 6) if rng.random() < 0.3 else 1  # a poll page, else a webhook
        page = [sent[i][1]]
        i += 1
        while len(page) < size and i < len(sent) and sent[i][0] == channel:
            page.append(sent[i][1])
            i += 1
        deliveries.append(Delivery(channel, tuple(page)))
    return deliveries


def run_stream(spec: dict[str, Any]) -> int:
    """Ingest the stream from `start`, acknowledging each delivery only after its commit."""
    db = Database(spec["url"])
    channels = {
        name: ChannelRef(channel_id, name, ("default",))
        for name, channel_id in spec["channels"].items()
    }
    stream = build_stream(spec["seed"])
    _say("READY")
    for index in range(spec["start"], len(stream)):
        delivery = stream[index]
        channel = channels[delivery.channel]
        db.transact(functools.partial(ingest_orders, channel=channel, orders=delivery.orders))
        # Committed: only now may the channel hear that we have it.
        _say(
            "\n".join(
                f"ACK {index} {delivery.channel} {order.external_id} {order.updated_at.isoformat()}"
                for order in delivery.orders
            )
        )
    db.dispose()
    _say("DONE")
    return 0


# --- the test's side: start a worker, read its lines with deadlines, kill it --------------------

REPO_ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """A running worker: its stdout lines arrive on a queue, its stderr goes to a file."""

    def __init__(
        self,
        mode: str,
        workdir: Path,
        name: str,
        spec: dict[str, Any] | None = None,
        sink: queue.Queue[tuple[str, str | None]] | None = None,
    ) -> None:
        """Start it; with `sink`, its lines go there as (name, line), for waiting on several."""
        args = [sys.executable, "-m", "tests.sync.ingest_worker", mode]
        if spec is not None:
            spec_path = workdir / f"{name}.json"
            spec_path.write_text(json.dumps(spec))
            args.append(str(spec_path))
        self.name = name
        self.stderr_path = workdir / f"{name}.stderr"
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._sink = sink
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                args,
                cwd=REPO_ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self._reader = threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._put(line.rstrip("\n"))
        self._put(None)  # end of output: the process exited or was killed

    def _put(self, line: str | None) -> None:
        if self._sink is None:
            self._lines.put(line)
        else:
            self._sink.put((self.name, line))

    def next_line(self, deadline: float) -> str | None:
        """The next line it printed; None once it has exited. Fails at the monotonic deadline."""
        remaining = deadline - time.monotonic()
        try:
            return self._lines.get(timeout=max(remaining, 0.001))
        except queue.Empty:
            raise AssertionError(
                f"worker {self.name} said nothing before the deadline; stderr:\n{self.stderr()}"
            ) from None

    def expect(self, prefix: str, timeout: float) -> str:
        """Wait for its next line, which must start with `prefix`."""
        line = self.next_line(time.monotonic() + timeout)
        if line is None or not line.startswith(prefix):
            self.kill()
            raise AssertionError(
                f"worker {self.name}: expected {prefix!r}, got {line!r}; stderr:\n{self.stderr()}"
            )
        return line

    def send(self, line: str) -> None:
        """Write one line to its stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        """SIGKILL: no cleanup, no rollback but the database's own."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._close()

    def finish(self, timeout: float) -> int:
        """Close its stdin, wait for it to exit on its own; answer its exit code."""
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            raise AssertionError(
                f"worker {self.name} did not exit within {timeout} s; stderr:\n{self.stderr()}"
            ) from None
        finally:
            self._close()

    def _close(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
        self._reader.join(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def stderr(self) -> str:
        """What it wrote to stderr so far (a traceback, when it failed)."""
        return self.stderr_path.read_text(errors="replace")[-4000:]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: `race` (specs on stdin) or `stream SPEC.json`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("race", "stream"))
    parser.add_argument("spec", type=Path, nargs="?")
    args = parser.parse_args(argv)
    if args.mode == "race":
        return run_races()
    if args.spec is None:
        parser.error("stream needs SPEC.json")
    return run_stream(json.loads(args.spec.read_text()))


if __name__ == "__main__":
    sys.exit(main())
