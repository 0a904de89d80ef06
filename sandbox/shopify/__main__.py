"""Entry point of `python -m sandbox.shopify` (see cli.py)."""

from __future__ import annotations

import sys

from sandbox.shopify.cli import main

sys.exit(main())
