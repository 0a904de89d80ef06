"""`channel-sync sandbox`: the sandbox marketplaces in one process, on loopback, until stopped.

One Shopify store (Admin GraphQL API, webhooks, `/_sandbox/` control API) and one reference
channel, each on its own port, seeded with a few demo products. Once every one listens, a line
per marketplace says where it is, and (with a ready file) its token and secret are written to a
file only the owner can read; they are never printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sandbox.reference import create_app as create_reference_app
from sandbox.reference import parse_channel
from sandbox.reference.serve import bind_loopback as bind_reference
from sandbox.shopify import ShopifySandbox, ShopOptions, seed_products
from sandbox.shopify import bind_loopback as bind_shopify
from sandbox.shopify import create_app as create_shopify_app
from sandbox.shopify import serve as serve_shopify
from sandbox.shopify.model import gid

DEMO_PRODUCTS = (
    ("MUG-BLUE", 25, Decimal("12.50")),
    ("TEE-M", 40, Decimal("19.99")),
    ("POSTER-A2", 10, Decimal("8.00")),
)
REFERENCE_CHANNEL = "shop:cas:idempotent"


@dataclass
class SandboxPlan:
    """Where to listen, and what the marketplaces start with."""

    host: str = "127.0.0.1"
    shopify_port: int = 0
    reference_port: int = 0
    shop: str = "sandbox"
    products: tuple[tuple[str, int, Decimal], ...] = DEMO_PRODUCTS
    ready_file: Path | None = None
    addresses: dict[str, dict[str, Any]] = field(default_factory=dict)


async def run_sandboxes(
    plan: SandboxPlan,
    *,
    say: Callable[[str], None] = print,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve both marketplaces until SIGINT/SIGTERM or `stop`; `say` each one's address."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    shopify_sock = bind_shopify(plan.host, plan.shopify_port)
    reference_sock = _bind_or_close(plan.host, plan.reference_port, shopify_sock)
    shopify_app = create_shopify_app(
        ShopOptions(
            shop=plan.shop,
            access_token=os.environ.get("SANDBOX_SHOPIFY_TOKEN") or None,
            api_secret=os.environ.get("SANDBOX_SHOPIFY_SECRET") or None,
        )
    )
    store: ShopifySandbox = shopify_app.state.sandbox
    seed_products(store, plan.products)
    reference_app = create_reference_app(
        [parse_channel(REFERENCE_CHANNEL)], token=os.environ.get("SANDBOX_REFERENCE_TOKEN")
    )
    started: dict[str, str] = {}

    def listening(kind: str) -> Callable[[str], None]:
        def ready(url: str) -> None:
            started[kind] = url
            if len(started) == 2:
                _announce(plan, store, reference_app.state, started, say)

        return ready

    try:
        await asyncio.gather(
            serve_shopify(
                shopify_app,
                shopify_sock,
                on_ready=listening("shopify"),
                handle_signals=False,
                stop=stop,
            ),
            # The Shopify sandbox's runner serves any ASGI app and stops on `stop`.
            serve_shopify(
                reference_app,
                reference_sock,
                on_ready=listening("reference"),
                handle_signals=False,
                stop=stop,
            ),
        )
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        shopify_sock.close()
        reference_sock.close()


def _bind_or_close(host: str, port: int, other: socket.socket) -> socket.socket:
    try:
        return bind_reference(host, port)
    except (OSError, ValueError):
        other.close()
        raise


def _announce(
    plan: SandboxPlan,
    store: ShopifySandbox,
    reference_state: Any,
    started: dict[str, str],
    say: Callable[[str], None],
) -> None:
    shop = store.store
    shopify_url = started["shopify"]
    channel = parse_channel(REFERENCE_CHANNEL).name
    plan.addresses = {
        "shopify": {
            "kind": "shopify",
            "sandbox_url": shopify_url,
            "api_base_url": shopify_url,
            "shop": shop.domain,
            "locations": {loc.name: gid("Location", loc.id) for loc in shop.locations.values()},
        },
        "reference": {
            "kind": "reference",
            "sandbox_url": f"{started['reference']}/{channel}",
        },
    }
    say(f"shopify    {shopify_url}  (shop {shop.domain}; control API {shopify_url}/_sandbox/)")
    say(f"reference  {started['reference']}/{channel}")
    if plan.ready_file is not None:
        secrets: dict[str, dict[str, Any]] = {
            "shopify": {"token": store.access_token, "secret": store.api_secret},
            "reference": {"token": getattr(reference_state, "token", None)},
        }
        payload = {name: {**info, **secrets[name]} for name, info in plan.addresses.items()}
        _write_private(plan.ready_file, {"pid": os.getpid(), "sandboxes": payload})
        say(f"tokens and secrets in {plan.ready_file}")


def _write_private(path: Path, payload: dict[str, object]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(payload, indent=2) + "\n")
    os.replace(partial, path)  # readers see the whole file or none
