"""Entry point of `python -m sandbox.reference` (see cli.py)."""

from __future__ import annotations

import sys

from sandbox.reference.cli import main

sys.exit(main())
