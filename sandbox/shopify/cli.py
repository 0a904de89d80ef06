"""`python -m sandbox.shopify`: serve one sandbox Shopify store on loopback until SIGINT/SIGTERM.

    python -m sandbox.shopify --port 0 --shop demo --location "Main warehouse" \\
        --product SKU-1=10@19.99 --product SKU-2=3 --ready-file /tmp/shopify.json

Once listening it prints `DOMAIN API_BASE_URL` and writes the ready file atomically, readable by
its owner only: `{"url", "api_base_url", "shop", "domain", "token", "secret", "pid",
"locations": {NAME: gid}, "schema_validation"}`. The access token and the webhook secret come from
`--token`/`--secret`, else $SANDBOX_SHOPIFY_TOKEN/$SANDBOX_SHOPIFY_SECRET, else are made up.
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

from sandbox.shopify.app import ShopifySandbox, ShopOptions, create_app
from sandbox.shopify.model import gid
from sandbox.shopify.serve import LoopbackOnlyError, bind_loopback, serve
from sandbox.shopify.throttle import DEFAULT_RESTORE_RATE

TOKEN_ENV = "SANDBOX_SHOPIFY_TOKEN"  # noqa: S105 - a variable name
SECRET_ENV = "SANDBOX_SHOPIFY_SECRET"  # noqa: S105 - a variable name
_SHOP = re.compile(r"^[a-z0-9][a-z0-9-]{0,59}$")
_PRODUCT = re.compile(
    r"^(?P<sku>[^=\s]{1,255})=(?P<units>\d{1,9})(?:@(?P<price>\d{1,9}(?:\.\d{1,2})?))?$"
)


def parse_product(spec: str) -> tuple[str, int, Decimal]:
    """`SKU=UNITS[@PRICE]` -> (sku, units, price); ValueError naming the spec otherwise."""
    match = _PRODUCT.match(spec)
    if match is None:
        raise ValueError(f"--product {spec!r}: expected SKU=UNITS or SKU=UNITS@PRICE")
    return match["sku"], int(match["units"]), Decimal(match["price"] or "10.00")


def seed_products(sandbox: ShopifySandbox, products: Sequence[tuple[str, int, Decimal]]) -> None:
    """Create single-variant products stocked at the store's first location."""
    first = min(sandbox.store.locations)
    for sku, units, price in products:
        sandbox.store.add_variant(
            sku, price=price, title="Default Title", product_title=sku, stock={first: units}
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.shopify",
        description="Serve a sandbox Shopify store (Admin GraphQL API, webhooks) on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 = any free port (default)")
    parser.add_argument("--shop", default="sandbox", help="the NAME of NAME.myshopify.com")
    parser.add_argument("--token", help=f"Admin API access token (else ${TOKEN_ENV})")
    parser.add_argument("--secret", help=f"app client secret signing webhooks (else ${SECRET_ENV})")
    parser.add_argument("--currency", default="USD", help="shop currency (default USD)")
    parser.add_argument(
        "--location", action="append", help="a location (repeat; default 'Main warehouse')"
    )
    parser.add_argument(
        "--product",
        action="append",
        default=[],
        metavar="SKU=UNITS[@PRICE]",
        help="seed a product stocked at the first location (repeat)",
    )
    parser.add_argument(
        "--restore-rate",
        type=float,
        default=DEFAULT_RESTORE_RATE,
        help=f"cost points restored per second (default {DEFAULT_RESTORE_RATE:g})",
    )
    parser.add_argument("--bucket-size", type=float, help="cost bucket size (default 20x restore)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random draws")
    parser.add_argument(
        "--no-validate", action="store_true", help="do not validate requests against the schema"
    )
    parser.add_argument("--ready-file", type=Path, help="write the addresses here once listening")
    return parser


def options_from_args(args: argparse.Namespace) -> ShopOptions:
    """ShopOptions from parsed arguments and the environment; ValueError naming a bad one."""
    if not _SHOP.match(args.shop):
        raise ValueError(f"--shop {args.shop!r}: lowercase letters, digits and '-'")
    if args.restore_rate <= 0:
        raise ValueError("--restore-rate must be positive")
    return ShopOptions(
        shop=args.shop,
        access_token=args.token or os.environ.get(TOKEN_ENV) or None,
        api_secret=args.secret or os.environ.get(SECRET_ENV) or None,
        currency=args.currency,
        locations=tuple(args.location or ("Main warehouse",)),
        restore_rate=args.restore_rate,
        bucket_size=args.bucket_size,
        seed=args.seed,
        validate=not args.no_validate,
    )


def _write_ready(path: Path, payload: dict[str, object]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(payload, indent=2) + "\n")
    os.replace(partial, path)  # readers see the whole file or none


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, serve until stopped; the exit code (2 for bad arguments)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        options = options_from_args(args)
        products = [parse_product(spec) for spec in args.product]
        sock = bind_loopback(args.host, args.port)
    except (ValueError, LoopbackOnlyError) as err:
        parser.error(str(err))
    except OSError as err:
        print(f"cannot listen on {args.host}:{args.port}: {err.strerror}", file=sys.stderr)
        return 1
    app = create_app(options)
    sandbox: ShopifySandbox = app.state.sandbox
    seed_products(sandbox, products)

    def ready(url: str) -> None:
        store = sandbox.store
        print(f"{store.domain} {url}/admin/api", flush=True)
        if args.ready_file is not None:
            _write_ready(
                args.ready_file,
                {
                    "url": url,
                    "api_base_url": f"{url}/admin/api",
                    "shop": store.shop,
                    "domain": store.domain,
                    "token": sandbox.access_token,
                    "secret": sandbox.api_secret,
                    "pid": os.getpid(),
                    "locations": {
                        loc.name: gid("Location", loc.id) for loc in store.locations.values()
                    },
                    "schema_validation": sandbox.schema is not None,
                },
            )

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
