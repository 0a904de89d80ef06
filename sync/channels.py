"""Mirror the configured channels into the store, so rows can refer to them by id."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from sync.models import Channel, ChannelState


def register_channels(
    session: Session, configured: Mapping[str, tuple[str, bool]]
) -> dict[str, int]:
    """Upsert one row per configured channel (name -> (kind, enabled)); answer name -> id.

    Channels that left the config keep their row (their orders still refer to it) and are marked
    disabled; a channel whose kind changed keeps its name but not its meaning, so that is refused.
    """
    existing = {c.name: c for c in session.scalars(select(Channel))}
    for name, (kind, enabled) in configured.items():
        channel = existing.get(name)
        if channel is None:
            channel = Channel(name=name, kind=kind)
            session.add(channel)
            existing[name] = channel
        elif channel.kind != kind:
            raise ValueError(
                f"channel {name} is of kind {channel.kind} in the store but {kind} in its file; "
                "give the new account a new channel name"
            )
        if not enabled:
            channel.state = ChannelState.DISABLED
        elif channel.state == ChannelState.DISABLED:
            channel.state = ChannelState.OK
    for name, channel in existing.items():
        if name not in configured:
            channel.state = ChannelState.DISABLED
    session.flush()
    return {name: existing[name].id for name in configured}
