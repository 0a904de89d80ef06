"""`channel-sync sandbox`: the sandbox marketplaces in one process, on loopback, until stopped.

A Shopify store, an Amazon seller account (its ORDER_CHANGE notifications going to a queue on
moto's SQS-compatible server, started here on loopback), an eBay seller account and the reference
channel, each on its own port, each listing the demo catalogue (sandbox/demo_catalogue.py). Once
every one listens, a line per marketplace says where it is, and (with a ready file) the
addresses, tokens and secrets are written to a file only the owner can read; secrets are never
printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.amazon import create_queue, start_moto
from sandbox.demo_catalogue import DEMO_CATALOGUE, Catalogue
from sandbox.fleet import REFERENCE_CHANNEL, SQS_QUEUE, Marketplace, Sqs, build_marketplaces
from sandbox.reference import parse_channel
from sandbox.shopify import bind_loopback, serve

KINDS = ("shopify", "amazon", "ebay", "reference")


@dataclass
class SandboxPlan:
    """Where to listen, and what the marketplaces start with."""

    host: str = "127.0.0.1"
    ports: Mapping[str, int] = field(default_factory=dict)
    """Port per marketplace kind (missing or 0: any free port)."""
    shop: str = "sandbox"
    catalogue: Catalogue = DEMO_CATALOGUE
    ready_file: Path | None = None
    start_sqs: bool = True
    """Start moto's SQS server for Amazon's notifications (skipped, saying so, without moto)."""
    ebay_notify_url: str | None = None
    """Where the eBay account pushes notifications (a verification token is made up for it)."""
    stop_on_stdin_eof: bool = False
    """Stop when standard input closes: the demo's child process ends with its parent."""
    addresses: dict[str, dict[str, Any]] = field(default_factory=dict)


async def run_sandboxes(
    plan: SandboxPlan,
    *,
    say: Callable[[str], None] = print,
    stop: asyncio.Event | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Serve every marketplace until SIGINT/SIGTERM or `stop`; `say` each one's address."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if plan.stop_on_stdin_eof:
        _watch_stdin(loop, stop)
    moto: Any = None
    try:
        with _bound(plan) as socks:
            sqs = None
            if plan.start_sqs:
                moto, sqs = await _start_sqs(plan.host, say)
            markets = build_marketplaces(
                plan.catalogue,
                shop=plan.shop,
                sqs=sqs,
                ebay_notify_url=plan.ebay_notify_url,
                env=os.environ if env is None else env,
            )

            def listening(market: Marketplace) -> Callable[[str], None]:
                def ready(url: str) -> None:
                    channel = parse_channel(REFERENCE_CHANNEL).name
                    market.url = f"{url}/{channel}" if market.kind == "reference" else url
                    if all(m.url for m in markets.values()):
                        _announce(plan, markets, say)

                return ready

            await asyncio.gather(
                *(
                    serve(
                        market.app,
                        socks[kind],
                        on_ready=listening(market),
                        handle_signals=False,
                        stop=stop,
                    )
                    for kind, market in markets.items()
                )
            )
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if moto is not None:
            await asyncio.to_thread(moto.stop)


@contextlib.contextmanager
def _bound(plan: SandboxPlan) -> Iterator[dict[str, socket.socket]]:
    """A listening socket per marketplace; all closed again when one cannot be bound."""
    socks: dict[str, socket.socket] = {}
    try:
        for kind in KINDS:
            socks[kind] = bind_loopback(plan.host, plan.ports.get(kind, 0))
        yield socks
    finally:
        for sock in socks.values():
            sock.close()


async def _start_sqs(host: str, say: Callable[[str], None]) -> tuple[Any, Sqs | None]:
    """moto's SQS server on loopback and the notifications queue; (None, None) without moto."""
    try:
        moto = await asyncio.to_thread(start_moto, host if ":" not in host else "127.0.0.1")
    except ImportError:
        say("amazon: moto is not installed (pip install 'moto[server]'): no SQS notifications")
        return None, None
    try:
        queue_url = await create_queue(moto.endpoint_url, SQS_QUEUE)
    except BaseException:
        await asyncio.to_thread(moto.stop)
        raise
    return moto, Sqs(moto.endpoint_url, queue_url)


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set `stop` once standard input reaches its end (the parent holding the pipe is gone)."""

    def wait_for_eof() -> None:
        with contextlib.suppress(OSError, ValueError):
            while sys.stdin.buffer.read(4096):
                pass
        with contextlib.suppress(RuntimeError):  # the loop is closed already
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_eof, name="stdin-eof", daemon=True).start()


def _announce(
    plan: SandboxPlan, markets: Mapping[str, Marketplace], say: Callable[[str], None]
) -> None:
    plan.addresses = {kind: market.describe() for kind, market in markets.items()}
    for market in markets.values():
        say(market.line())
    if plan.ready_file is not None:
        _write_private(plan.ready_file, {"pid": os.getpid(), "sandboxes": plan.addresses})
        say(f"tokens and secrets in {plan.ready_file}")


def _write_private(path: Path, payload: dict[str, object]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(payload, indent=2) + "\n")
    os.replace(partial, path)  # readers see the whole file or none
