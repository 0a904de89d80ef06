"""`python -m sandbox.ebay`: serve one sandbox eBay seller account on loopback until
SIGINT/SIGTERM.

    python -m sandbox.ebay --port 0 --listing MUG=10@9.99 --inventory-listing TEE=5 \\
        --variation SHIRT:SHIRT-S=3 --variation SHIRT:SHIRT-M=4 --ready-file /tmp/ebay.json

Once listening it prints `SELLER API_BASE_URL` and writes the ready file atomically, readable by
its owner only: `{"url", "api_base_url", "trading_url", "identity_url", "seller",
"marketplace_id", "client_id", "client_secret", "refresh_token", "ru_name", "current_kid", "pid",
"listings": {SKU: {world, item_id, variation_id, offer_id}}}`. The application's keys and the
seller's refresh token come from the flags, else $SANDBOX_EBAY_CLIENT_ID,
$SANDBOX_EBAY_CLIENT_SECRET and $SANDBOX_EBAY_REFRESH_TOKEN, else are made up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from sandbox.ebay.app import EbayOptions, EbaySandbox, create_app
from sandbox.ebay.const import BULK_UPDATE_MAX, DEFAULT_DAILY_QUOTAS
from sandbox.ebay.model import World
from sandbox.ebay.serve import LoopbackOnlyError, bind_loopback, serve
from sandbox.ebay.store import NewListing, StoreError

CLIENT_ID_ENV = "SANDBOX_EBAY_CLIENT_ID"
CLIENT_SECRET_ENV = "SANDBOX_EBAY_CLIENT_SECRET"  # noqa: S105 - a variable name
REFRESH_TOKEN_ENV = "SANDBOX_EBAY_REFRESH_TOKEN"  # noqa: S105 - a variable name
_LISTING = re.compile(
    r"^(?:(?P<group>[^:=\s]{1,80}):)?(?P<sku>[^=\s]{1,50})=(?P<units>\d{1,6})"
    r"(?:@(?P<price>\d{1,9}(?:\.\d{1,2})?))?$"
)
_QUOTA = re.compile(r"^(?P<api>fulfillment|inventory|notification|trading)=(?P<n>\d{1,10})$")


def parse_listing(spec: str, world: World, *, grouped: bool = False) -> NewListing:
    """`[GROUP:]SKU=UNITS[@PRICE]` -> a listing; ValueError naming the spec otherwise."""
    match = _LISTING.match(spec)
    if match is None or (match["group"] is not None) != grouped:
        shape = "GROUP:SKU=UNITS[@PRICE]" if grouped else "SKU=UNITS[@PRICE]"
        raise ValueError(f"{spec!r}: expected {shape}")
    return NewListing(
        sku=match["sku"],
        quantity=int(match["units"]),
        price=Decimal(match["price"] or "10.00"),
        world=world,
        group=match["group"],
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.ebay",
        description="Serve a sandbox eBay seller account (REST, Trading, notifications) on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 = any free port (default)")
    parser.add_argument("--seller", default="sandbox_seller", help="the seller's user name")
    parser.add_argument("--marketplace", default="EBAY_US", help="marketplace id (EBAY_US)")
    parser.add_argument("--currency", default="USD", help="currency of prices (USD)")
    parser.add_argument("--client-id", help=f"the application's client id (else ${CLIENT_ID_ENV})")
    parser.add_argument("--client-secret", help=f"its client secret (else ${CLIENT_SECRET_ENV})")
    parser.add_argument("--refresh-token", help=f"the seller's (else ${REFRESH_TOKEN_ENV})")
    for flag, what in (
        ("--listing", "a Trading listing SKU=UNITS[@PRICE] (repeat)"),
        ("--inventory-listing", "an Inventory-API listing SKU=UNITS[@PRICE] (repeat)"),
        ("--variation", "a variation GROUP:SKU=UNITS[@PRICE] of Trading listing GROUP (repeat)"),
    ):
        parser.add_argument(flag, action="append", default=[], help=what)
    parser.add_argument("--notify-url", help="push notifications here (checked by challenge)")
    parser.add_argument("--verification-token", help="the endpoint's verification token")
    parser.add_argument(
        "--quota",
        action="append",
        default=[],
        metavar="API=N",
        help="daily calls of an API (fulfillment, inventory, notification, trading)",
    )
    parser.add_argument(
        "--bulk-update-max",
        type=int,
        default=BULK_UPDATE_MAX,
        help=f"bulkUpdatePriceQuantity requests per call (default {BULK_UPDATE_MAX})",
    )
    parser.add_argument("--access-token-ttl", type=int, default=7200, help="seconds (7200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random draws")
    parser.add_argument("--ready-file", type=Path, help="write the addresses here once listening")
    return parser


def options_from_args(args: argparse.Namespace) -> tuple[EbayOptions, list[NewListing]]:
    """Options and listings from parsed arguments and the environment; ValueError naming a bad
    one."""
    if (args.notify_url is None) != (args.verification_token is None):
        raise ValueError("--notify-url and --verification-token go together")
    if args.verification_token and not re.fullmatch(
        r"[A-Za-z0-9_-]{32,80}", args.verification_token
    ):
        raise ValueError("--verification-token: 32 to 80 letters, digits, '_' or '-'")
    if not 1 <= args.bulk_update_max <= 1000 or args.access_token_ttl < 1:
        raise ValueError("--bulk-update-max 1..1000 and --access-token-ttl > 0")
    quotas = dict(DEFAULT_DAILY_QUOTAS)
    for spec in args.quota:
        match = _QUOTA.match(spec)
        if match is None:
            raise ValueError(f"--quota {spec!r}: expected API=N")
        quotas[match["api"]] = int(match["n"])
    listings = [
        *(parse_listing(s, World.TRADING) for s in args.listing),
        *(parse_listing(s, World.INVENTORY) for s in args.inventory_listing),
        *(parse_listing(s, World.TRADING, grouped=True) for s in args.variation),
    ]
    options = EbayOptions(
        seller=args.seller,
        marketplace_id=args.marketplace,
        currency=args.currency,
        client_id=args.client_id or os.environ.get(CLIENT_ID_ENV) or None,
        client_secret=args.client_secret or os.environ.get(CLIENT_SECRET_ENV) or None,
        refresh_token=args.refresh_token or os.environ.get(REFRESH_TOKEN_ENV) or None,
        access_token_ttl_s=args.access_token_ttl,
        bulk_update_max=args.bulk_update_max,
        quotas=quotas,
        notify_url=args.notify_url,
        verification_token=args.verification_token,
        seed=args.seed,
    )
    return options, listings


def _write_ready(path: Path, payload: dict[str, object]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(payload, indent=2) + "\n")
    os.replace(partial, path)  # readers see the whole file or none


def ready_payload(sandbox: EbaySandbox, url: str) -> dict[str, object]:
    """What the ready file holds (secrets included: it is the owner's, mode 0600)."""
    return {
        "url": url,
        "api_base_url": url,
        "trading_url": f"{url}/ws/api.dll",
        "identity_url": f"{url}/identity/v1/oauth2/token",
        "seller": sandbox.store.seller,
        "marketplace_id": sandbox.store.marketplace_id,
        "client_id": sandbox.tokens.client_id,
        "client_secret": sandbox.tokens.client_secret,
        "refresh_token": sandbox.refresh_token,
        "ru_name": sandbox.tokens.ru_name,
        "current_kid": sandbox.keys.current_kid,
        "pid": os.getpid(),
        "listings": {
            sku: {
                "world": listing.world.value,
                "item_id": listing.item_id,
                "variation_id": listing.variation_id,
                "offer_id": listing.offer_id,
            }
            for sku, listing in sorted(sandbox.store.listings.items())
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, serve until stopped; the exit code (2 for bad arguments)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        options, listings = options_from_args(args)
        sock = bind_loopback(args.host, args.port)
    except (ValueError, LoopbackOnlyError) as err:
        parser.error(str(err))
    except OSError as err:
        print(f"cannot listen on {args.host}:{args.port}: {err.strerror}", file=sys.stderr)
        return 1
    app = create_app(options)
    sandbox: EbaySandbox = app.state.sandbox
    try:
        sandbox.store.add_listings(listings)
    except StoreError as err:  # the same SKU twice
        sock.close()
        parser.error(str(err))

    def ready(url: str) -> None:
        print(f"{sandbox.store.seller} {url}", flush=True)
        if args.ready_file is not None:
            _write_ready(args.ready_file, ready_payload(sandbox, url))

    async def run() -> None:
        # Our own SIGINT/SIGTERM handling, so that a stop request ends in exit code 0.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve(app, sock, on_ready=ready, handle_signals=False, stop=stop)

    try:
        asyncio.run(run())
    finally:
        sock.close()
    return 0
