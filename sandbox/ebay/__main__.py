"""Entry point of `python -m sandbox.ebay` (see cli.py)."""

from __future__ import annotations

import sys

from sandbox.ebay.cli import main

sys.exit(main())
