"""The end of `channel-sync demo`: what the store holds once the daemon has stopped, per channel,
as plain text a newcomer reads and a test parses (the same counts `GET /api/orders` gives)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

STATUSES = ("pending", "open", "partially_shipped", "shipped", "cancelled")
"""The canonical order statuses (connectors/base.py `OrderStatus`), in the summary's order."""
HEADER = ("channel", "orders", *STATUSES, "oversold")
TITLE = "[demo summary] the store at the end:"


@dataclass(frozen=True)
class StoreCounts:
    """Orders per channel and status, oversold orders per channel, dead jobs."""

    by_status: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    oversold: Mapping[str, int] = field(default_factory=dict)
    dead_jobs: int = 0

    def rows(self) -> list[list[str]]:
        """One row per channel, HEADER's columns."""
        rows = []
        for name in sorted(self.by_status.keys() | self.oversold.keys()):
            counts = self.by_status.get(name, {})
            rows.append(
                [
                    name,
                    str(sum(counts.values())),
                    *(str(counts.get(s, 0)) for s in STATUSES),
                    str(self.oversold.get(name, 0)),
                ]
            )
        return rows

    def text(self) -> str:
        """The title, the table, and the dead jobs."""
        rows = [list(HEADER), *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
        lines = [TITLE]
        for row in rows:
            cells = [
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  " + "  ".join(cells))
        lines.append(f"  {self.dead_jobs} dead job(s)")
        return "\n".join(lines)


def parse_store_text(printed: str) -> dict[str, dict[str, int]]:
    """The table `StoreCounts.text` printed, back as channel -> column -> count."""
    lines = printed.splitlines()
    start = lines.index(TITLE) + 1  # ValueError when there is no summary
    if lines[start].split() != list(HEADER):
        raise ValueError(f"not the summary's header: {lines[start]!r}")
    table: dict[str, dict[str, int]] = {}
    for line in lines[start + 1 :]:
        cells = line.split()
        if len(cells) != len(HEADER) or not cells[1].isdigit():
            break
        table[cells[0]] = {h: int(c) for h, c in zip(HEADER[1:], cells[1:], strict=True)}
    return table


def read_store(database_url: str) -> StoreCounts:
    """Count what the store holds (raises SQLAlchemyError or OSError when it cannot)."""
    from sqlalchemy import func, select

    from sync.db import Database
    from sync.models import Channel, JobState, OutboxJob
    from sync.models import Order as OrderRow

    db = Database(database_url)
    try:
        with db.read_session() as session:
            by_status: dict[str, dict[str, int]] = {}
            for name, status, n in session.execute(
                select(Channel.name, OrderRow.status, func.count(OrderRow.id))
                .join(OrderRow, OrderRow.channel_id == Channel.id)
                .group_by(Channel.name, OrderRow.status)
            ):
                by_status.setdefault(name, {})[str(status.value)] = int(n)
            oversold = {
                name: int(n)
                for name, n in session.execute(
                    select(Channel.name, func.count(OrderRow.id))
                    .join(OrderRow, OrderRow.channel_id == Channel.id)
                    .where(OrderRow.is_oversold.is_(True))
                    .group_by(Channel.name)
                )
            }
            dead = session.scalar(
                select(func.count()).select_from(OutboxJob).where(OutboxJob.state == JobState.DEAD)
            )
    finally:
        db.dispose()
    return StoreCounts(by_status, oversold, int(dead or 0))
