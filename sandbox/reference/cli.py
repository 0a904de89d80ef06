"""`python -m sandbox.reference`: serve reference channels on loopback until SIGINT/SIGTERM.

    python -m sandbox.reference --host 127.0.0.1 --port 0 \\
        --channel shop-a:cas:idempotent --channel shop-b:batch=10 --ready-file /tmp/ready.json

Once listening it prints one line per channel (`NAME http://127.0.0.1:PORT/NAME`) and writes the
ready file atomically: `{"url", "token", "pid", "channels": {NAME: base_url}}`. The bearer token
comes from `--token`, else $SANDBOX_REFERENCE_TOKEN, else is made up and found in the ready file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from sandbox.reference.app import create_app
from sandbox.reference.channel import DEFAULT_MAX_STOCK_BATCH, ChannelOptions
from sandbox.reference.serve import LoopbackOnlyError, bind_loopback, serve

TOKEN_ENV = "SANDBOX_REFERENCE_TOKEN"  # noqa: S105 - a variable name
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_FLAGS = frozenset({"cas", "idempotent", "oversell"})
MAX_BATCH_LIMIT = 250


def parse_channel(spec: str) -> ChannelOptions:
    """`NAME[:cas][:idempotent][:oversell][:batch=N]` -> ChannelOptions; ValueError naming the
    part that is wrong."""
    name, *flags = spec.split(":")
    if not _NAME.match(name):
        raise ValueError(
            f"channel name {name!r}: 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    switched_on: set[str] = set()
    batch = DEFAULT_MAX_STOCK_BATCH
    for flag in flags:
        key, _, value = flag.partition("=")
        if key in _FLAGS and not value:
            switched_on.add(key)
        elif key == "batch" and value.isdigit() and 1 <= int(value) <= MAX_BATCH_LIMIT:
            batch = int(value)
        else:
            raise ValueError(
                f"channel {name}: unknown option {flag!r} (cas, idempotent, oversell, "
                f"batch=1..{MAX_BATCH_LIMIT})"
            )
    return ChannelOptions(
        name,
        compare_and_swap="cas" in switched_on,
        idempotent="idempotent" in switched_on,
        allow_oversell="oversell" in switched_on,
        max_stock_batch=batch,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.reference",
        description="Serve reference marketplace channels over HTTP on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 = any free port (default)")
    parser.add_argument(
        "--channel",
        action="append",
        required=True,
        metavar="NAME[:cas][:idempotent][:oversell][:batch=N]",
        help=f"a channel to serve (repeat for more); default batch is {DEFAULT_MAX_STOCK_BATCH}",
    )
    parser.add_argument("--token", help=f"bearer token the API accepts (else ${TOKEN_ENV})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    parser.add_argument("--ready-file", type=Path, help="write the addresses here once listening")
    return parser


def _write_ready(path: Path, payload: dict[str, object]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(partial, path)  # readers see the whole file or none


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, serve until stopped; answer the exit code (2 for bad arguments)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        channels = [parse_channel(spec) for spec in args.channel]
        names = [c.name for c in channels]
        if len(set(names)) != len(names):
            raise ValueError("a channel name is given twice")
        sock = bind_loopback(args.host, args.port)
    except (ValueError, LoopbackOnlyError) as err:
        parser.error(str(err))
    except OSError as err:
        print(f"cannot listen on {args.host}:{args.port}: {err.strerror}", file=sys.stderr)
        return 1
    token = args.token or os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(24)
    app = create_app(channels, token=token, seed=args.seed)

    def ready(url: str) -> None:
        urls = {c.name: f"{url}/{c.name}" for c in channels}
        for name, channel_url in urls.items():
            print(f"{name} {channel_url}", flush=True)
        if args.ready_file is not None:
            _write_ready(
                args.ready_file,
                {"url": url, "token": token, "pid": os.getpid(), "channels": urls},
            )

    try:
        asyncio.run(serve(app, sock, on_ready=ready))
    finally:
        sock.close()
    return 0
