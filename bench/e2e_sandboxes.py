"""The sandbox marketplaces for bench/e2e.py, in a process of their own: `channel-sync sandbox`
(sandbox/launcher.py) with the bench's catalogue instead of the demo's.

    python bench/e2e_sandboxes.py --catalogue FILE.json --ready-file FILE --ebay-notify-url URL

FILE.json is `[[sku, units], ...]`. Stops when standard input closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e_trace import catalogue_of
from sandbox.demo_catalogue import Product
from sandbox.launcher import SandboxPlan, run_sandboxes


def main() -> None:
    """Serve the three marketplaces (and the reference one) listing the given catalogue."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalogue", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--ebay-notify-url", required=True)
    args = parser.parse_args()
    from decimal import Decimal

    rows = json.loads(args.catalogue.read_text())
    catalogue = catalogue_of(Product(sku, sku, int(units), Decimal("9.90")) for sku, units in rows)
    plan = SandboxPlan(
        catalogue=catalogue,
        ready_file=args.ready_file,
        ebay_notify_url=args.ebay_notify_url,
        stop_on_stdin_eof=True,
    )
    asyncio.run(run_sandboxes(plan, say=lambda line: print(line, flush=True)))


if __name__ == "__main__":
    main()
