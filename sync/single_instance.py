"""One daemon per SQLite store: an exclusive lock file beside the database file.

SQLite serialises writers on one machine, but the daemon's guarantees (one poller per channel,
a lease per periodic job) rest on leases whose clock is the process's own, and a second daemon
on the same file would poll and push the same channels twice. So the daemon takes an `flock`
on `<store>.lock` before it touches the store, and a second one refuses to start, naming the
file and what to do instead. The kernel drops the lock when the process dies, however it dies.
PostgreSQL stores need no such lock: several instances share the work through leases.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

from sync.db import Database


class StoreInUseError(RuntimeError):
    """Another daemon already runs on this SQLite store."""


def lock_path(db: Database) -> Path | None:
    """Where the store's lock file lives, or None for a store that needs none (PostgreSQL)."""
    if db.dialect != "sqlite":
        return None
    database = make_url(db.url).database or ""
    return Path(f"{database}.lock")


@contextlib.contextmanager
def exclusive_store(db: Database) -> Iterator[Path | None]:
    """Hold the store's lock file while the block runs; StoreInUseError if another daemon does."""
    path = lock_path(db)
    if path is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise StoreInUseError(
                f"another channel-sync daemon (pid {holder}) holds {path}: a SQLite store "
                "cannot be shared by several daemons, because each would poll and push the same "
                "channels. Stop the other daemon, or use PostgreSQL (database.url) to run "
                "several instances"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
