"""A port to name in a config before the server that listens on it starts.

The demo and the tests write the daemon's listener ports into its config (the channels' webhook
URLs must name them), so a port has to be chosen before the daemon binds it. A port from
`bind(port 0)` comes from the kernel's ephemeral range, the same range every other `bind(0)`
and every outgoing connection draws from: the sandbox marketplaces' own listeners, started
meanwhile, were once handed the very port the daemon was about to take ("Address already in
use"). So the port is chosen below that range, where the kernel never hands one out by itself,
and checked free by binding it.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Container
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL = (32768, 60999)  # Linux's default, where the file cannot be read
LOWEST = 10000  # below: well-known and registered services' usual ports
TRIES = 200


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range of ports it hands out by itself (first, last)."""
    try:
        first, last = (int(part) for part in EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL
    return first, last


def chosen_range(share: tuple[int, int] = (0, 1)) -> range:
    """The ports `free_port` chooses from: those outside the ephemeral range (below it where
    there is room), split into `share[1]` equal parts, of which part `share[0]`."""
    first, last = ephemeral_range()
    lo, hi = (LOWEST, first) if first - LOWEST >= 1000 else (last + 1, 65536)
    index, parts = share
    if not 0 <= index < parts:
        raise ValueError(f"share {index} of {parts} does not exist")
    width = (hi - lo) // parts
    return range(lo + index * width, lo + (index + 1) * width)


def free_port(
    host: str = "127.0.0.1",
    *,
    share: tuple[int, int] = (0, 1),
    avoid: Container[int] = (),
    rng: random.Random | None = None,
) -> int:
    """A port on `host` nothing is bound to now, outside the kernel's ephemeral range and not
    in `avoid`. Processes that choose at once (test workers) each take their own `share`."""
    ports = chosen_range(share)
    pick = rng or random.Random()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(TRIES):
        port = pick.choice(ports)
        if port in avoid:
            continue
        with socket.socket(family) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue  # taken
        return port
    raise OSError(f"no free port on {host} in {ports.start}-{ports.stop - 1} after {TRIES} tries")
