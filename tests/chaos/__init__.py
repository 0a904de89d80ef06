"""The chaos run (issue 9 §1): the daemon against the three sandboxes under faults and kills.

`python -m tests.chaos.run --help` runs it on its own (`make chaos`: the long form); the pytest
marker `chaos` runs the short form inside `make test` (tests/chaos/test_chaos.py).
"""
