"""Entry point of `python -m sandbox.amazon` (see cli.py)."""

from __future__ import annotations

import sys

from sandbox.amazon.cli import main

sys.exit(main())
