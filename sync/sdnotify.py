"""systemd's notify protocol (sd_notify(3)): READY, WATCHDOG, STATUS and STOPPING datagrams."""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta

log = logging.getLogger(__name__)


class Notifier:
    """Sends state lines to `$NOTIFY_SOCKET`; does nothing when systemd did not ask for them.

    The protocol is one datagram of newline-separated `KEY=value` lines on a Unix socket, where a
    leading `@` names an abstract socket; it is small enough that a dependency would add more
    than it saves (python-systemd needs libsystemd headers to build).
    """

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address: str | None = None
        if address.startswith("@"):
            self._address = "\0" + address[1:]
        elif address.startswith("/"):
            self._address = address
        self.watchdog_interval = _watchdog_interval(env)
        self._socket: socket.socket | None = None

    @property
    def is_enabled(self) -> bool:
        """True when systemd gave a notify socket."""
        return self._address is not None

    def send(self, *lines: str) -> None:
        """Send one datagram; a failure is logged, never raised (the service must not die of it)."""
        if self._address is None:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
            self._socket.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:
            log.warning("could not notify systemd: %s", exc)

    def ready(self, status: str) -> None:
        """Tell systemd start-up is complete."""
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        """Update the one-line status `systemctl status` shows."""
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        """Ping the watchdog."""
        self.send("WATCHDOG=1")

    def stopping(self, status: str) -> None:
        """Tell systemd a graceful stop has begun."""
        self.send("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        """Close the socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _watchdog_interval(env: dict[str, str] | os._Environ[str]) -> timedelta | None:
    usec = env.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID")
    # WATCHDOG_PID names the process the watchdog is meant for; a child inheriting it must not ping.
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return timedelta(microseconds=int(usec))
