"""`python -m sandbox.amazon`: serve one sandbox Amazon seller account on loopback until
SIGINT/SIGTERM, with its ORDER_CHANGE notifications going to an SQS queue on a loopback server.

    python -m sandbox.amazon --port 0 --ready-file /tmp/amazon.json --start-sqs \\
        --listing SKU-1=10@19.99 --listing SKU-2=3

`--start-sqs` starts moto's SQS-compatible server in this process; `--sqs-endpoint URL` uses one
already running on loopback; with neither, notifications are only recorded. The queue
(`--sqs-queue`, default `channel-sync-amazon`) is created if missing.

Once listening it prints `SELLER_ID API_BASE_URL` and writes the ready file atomically, readable
by its owner only: `{"url", "api_base_url", "lwa_token_url", "seller_id", "marketplace_ids",
"client_id", "client_secret", "refresh_token", "sqs_endpoint_url", "sqs_queue_url", "pid",
"schema_validation"}`. The LWA credentials come from the options, else $SANDBOX_AMAZON_CLIENT_ID,
$SANDBOX_AMAZON_CLIENT_SECRET and $SANDBOX_AMAZON_REFRESH_TOKEN, else are made up.
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
from urllib.parse import urlsplit

from sandbox.amazon.app import AmazonOptions, AmazonSandbox, create_app
from sandbox.amazon.model import MARKETPLACES
from sandbox.amazon.serve import LoopbackOnlyError, bind_loopback, is_loopback, serve
from sandbox.amazon.sqs import MotoServer, SqsSink, create_queue, start_moto

CLIENT_ID_ENV = "SANDBOX_AMAZON_CLIENT_ID"
CLIENT_SECRET_ENV = "SANDBOX_AMAZON_CLIENT_SECRET"  # noqa: S105 - a variable name
REFRESH_TOKEN_ENV = "SANDBOX_AMAZON_REFRESH_TOKEN"  # noqa: S105 - a variable name
DEFAULT_QUEUE = "channel-sync-amazon"
_LISTING = re.compile(
    r"^(?P<sku>[^=\s]{1,255})=(?P<units>\d{1,9})(?:@(?P<price>\d{1,9}(?:\.\d{1,2})?))?$"
)
_QUEUE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def parse_listing(spec: str) -> tuple[str, int, Decimal]:
    """`SKU=UNITS[@PRICE]` -> (sku, units, price); ValueError naming the spec otherwise."""
    match = _LISTING.match(spec)
    if match is None:
        raise ValueError(f"--listing {spec!r}: expected SKU=UNITS or SKU=UNITS@PRICE")
    return match["sku"], int(match["units"]), Decimal(match["price"] or "10.00")


def seed_listings(sandbox: AmazonSandbox, listings: Sequence[tuple[str, int, Decimal]]) -> None:
    """Merchant-fulfilled listings with these quantities."""
    for sku, units, price in listings:
        sandbox.store.add_listing(sku, quantity=units, price=price)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.amazon",
        description="Serve a sandbox Amazon seller account (SP-API, LWA, ORDER_CHANGE) on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 = any free port (default)")
    parser.add_argument("--seller-id", default="A1SANDBOXSELLER", help="the merchant token")
    parser.add_argument(
        "--marketplace",
        action="append",
        help="a marketplace id sold on (repeat; default ATVPDKIKX0DER, the US)",
    )
    parser.add_argument("--client-id", help=f"LWA client id (else ${CLIENT_ID_ENV})")
    parser.add_argument("--client-secret", help=f"LWA client secret (else ${CLIENT_SECRET_ENV})")
    parser.add_argument(
        "--refresh-token", help=f"the seller's refresh token (else ${REFRESH_TOKEN_ENV})"
    )
    parser.add_argument(
        "--listing",
        action="append",
        default=[],
        metavar="SKU=UNITS[@PRICE]",
        help="seed a merchant-fulfilled listing (repeat)",
    )
    sqs = parser.add_mutually_exclusive_group()
    sqs.add_argument("--start-sqs", action="store_true", help="start moto's SQS server (loopback)")
    sqs.add_argument("--sqs-endpoint", help="an SQS-compatible server on loopback, e.g. moto's")
    parser.add_argument(
        "--sqs-queue", default=DEFAULT_QUEUE, help=f"queue name (default {DEFAULT_QUEUE})"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random draws")
    parser.add_argument(
        "--no-validate", action="store_true", help="do not check requests against Amazon's models"
    )
    parser.add_argument("--ready-file", type=Path, help="write the addresses here once listening")
    return parser


def options_from_args(args: argparse.Namespace) -> AmazonOptions:
    """AmazonOptions from parsed arguments and the environment; ValueError naming a bad one."""
    marketplaces = tuple(args.marketplace or ("ATVPDKIKX0DER",))
    unknown = [m for m in marketplaces if m not in MARKETPLACES]
    if unknown:
        raise ValueError(f"--marketplace {unknown[0]}: known ids are {', '.join(MARKETPLACES)}")
    if not re.fullmatch(r"[A-Z0-9]{1,40}", args.seller_id):
        raise ValueError(f"--seller-id {args.seller_id!r}: capital letters and digits")
    if not _QUEUE.match(args.sqs_queue):
        raise ValueError(f"--sqs-queue {args.sqs_queue!r}: letters, digits, '-' and '_'")
    if args.sqs_endpoint:
        parts = urlsplit(args.sqs_endpoint)
        if parts.scheme not in ("http", "https") or not is_loopback(parts.hostname or ""):
            raise ValueError(f"--sqs-endpoint {args.sqs_endpoint!r}: an http URL on loopback")
    return AmazonOptions(
        seller_id=args.seller_id,
        marketplace_ids=marketplaces,
        client_id=args.client_id or os.environ.get(CLIENT_ID_ENV) or None,
        client_secret=args.client_secret or os.environ.get(CLIENT_SECRET_ENV) or None,
        refresh_token=args.refresh_token or os.environ.get(REFRESH_TOKEN_ENV) or None,
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
        listings = [parse_listing(spec) for spec in args.listing]
        sock = bind_loopback(args.host, args.port)
    except (ValueError, LoopbackOnlyError) as err:
        parser.error(str(err))
    except OSError as err:
        print(f"cannot listen on {args.host}:{args.port}: {err.strerror}", file=sys.stderr)
        return 1
    moto: MotoServer | None = None
    endpoint: str | None = args.sqs_endpoint
    if args.start_sqs:
        try:
            moto = start_moto(args.host if ":" not in args.host else "127.0.0.1")
        except ImportError:
            sock.close()
            print("--start-sqs needs moto: pip install 'moto[server]'", file=sys.stderr)
            return 1
        endpoint = moto.endpoint_url

    async def run() -> None:
        queue_url = await create_queue(endpoint, args.sqs_queue) if endpoint else None
        sink = SqsSink(endpoint, queue_url) if endpoint and queue_url else None
        app = create_app(options, sink=sink)
        sandbox: AmazonSandbox = app.state.sandbox
        seed_listings(sandbox, listings)

        def ready(url: str) -> None:
            print(f"{sandbox.store.seller_id} {url}", flush=True)
            if args.ready_file is not None:
                credentials = sandbox.credentials
                _write_ready(
                    args.ready_file,
                    {
                        "url": url,
                        "api_base_url": url,
                        "lwa_token_url": f"{url}/auth/o2/token",
                        "seller_id": sandbox.store.seller_id,
                        "marketplace_ids": list(sandbox.store.marketplace_ids),
                        "client_id": credentials.client_id,
                        "client_secret": credentials.client_secret,
                        "refresh_token": credentials.refresh_token,
                        "sqs_endpoint_url": endpoint,
                        "sqs_queue_url": queue_url,
                        "pid": os.getpid(),
                        "schema_validation": sandbox.specs is not None,
                    },
                )

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
        if moto is not None:
            moto.stop()
    return 0
