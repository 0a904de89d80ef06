"""The canonical store: SQLAlchemy 2 tables for orders, stock, listings, jobs and their bookkeeping.

Every time is aware UTC (`UTCDateTime`), every amount a `Decimal` with its currency (`Money`).
Schema changes go through the Alembic migrations beside `db.py`; a test checks there is no drift.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from connectors.base import OrderStatus
from sync.types import Money, UTCDateTime

# Stable constraint names, so migrations can refer to them on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# A BIGINT primary key that SQLite still treats as its auto-incrementing rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as plain strings with a CHECK: adding a member is a one-line migration on both databases.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [m.value for m in members],
    )


class Base(DeclarativeBase):
    """Declarative base with the project's naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), Decimal: Money(), dict[str, Any]: JSON()}


class ChannelState(enum.StrEnum):
    """Health of one channel as the daemon sees it."""

    OK = "ok"
    DEGRADED = "degraded"
    AUTH_FAILED = "auth_failed"
    DISABLED = "disabled"


class JobKind(enum.StrEnum):
    """What an outbox job makes true on its channel."""

    STOCK = "stock"
    SHIPMENT = "shipment"
    CANCEL = "cancel"


class JobState(enum.StrEnum):
    """Life of an outbox job: pending -> running -> done, or dead after permanent errors."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"


class ShipmentOrigin(enum.StrEnum):
    """Where a shipment was recorded: here (push it to the channel) or on the channel (do not)."""

    HERE = "here"
    CHANNEL = "channel"


class InboxState(enum.StrEnum):
    """Processing state of a persisted webhook delivery."""

    RECEIVED = "received"
    PROCESSED = "processed"
    FAILED = "failed"


class Channel(Base):
    """One configured marketplace account, mirrored from its channel file."""

    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[ChannelState] = mapped_column(
        _enum(ChannelState, "channel_state"), default=ChannelState.OK
    )
    last_error: Mapped[str | None] = mapped_column(Text)
    last_poll_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Sku(Base):
    """A stock-keeping unit the ledger counts; a bundle's stock derives from its components."""

    __tablename__ = "skus"

    sku: Mapped[str] = mapped_column(String(128), primary_key=True)
    title: Mapped[str | None] = mapped_column(String(512))
    is_bundle: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    components: Mapped[list[BundleComponent]] = relationship(
        foreign_keys="BundleComponent.bundle_sku", lazy="selectin"
    )


class BundleComponent(Base):
    """`quantity` units of `component_sku` make one `bundle_sku`."""

    __tablename__ = "bundle_components"
    __table_args__ = (CheckConstraint("quantity > 0", name="positive_quantity"),)

    bundle_sku: Mapped[str] = mapped_column(ForeignKey("skus.sku"), primary_key=True)
    component_sku: Mapped[str] = mapped_column(ForeignKey("skus.sku"), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)


class StockLevel(Base):
    """Units physically at one location. Its row is the lock taken when reserving this SKU."""

    __tablename__ = "stock_levels"
    __table_args__ = (CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),)

    sku: Mapped[str] = mapped_column(ForeignKey("skus.sku"), primary_key=True)
    location: Mapped[str] = mapped_column(String(64), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Order(Base):
    """A canonical order, the same shape whatever channel it came from."""

    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("channel_id", "external_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    external_id: Mapped[str] = mapped_column(String(128))
    number: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[OrderStatus] = mapped_column(_enum(OrderStatus, "order_status"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[Decimal | None]
    # False for orders the marketplace ships from its own stock (Amazon FBA): stored, never reserved.
    is_reserving: Mapped[bool] = mapped_column(Boolean, default=True)
    is_oversold: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    # Buyer data lives only here, so that erasure (eBay account deletion, Amazon's 30 days) is one
    # update; a hash stands in for the buyer's identity wherever one is needed. The ship-to is
    # sealed (sync/sealing.py) under the key `pii_key_id`; `ship_to` holds only what a store
    # older than migration 0005 kept in plain text, until the daemon seals it (sync/rekey.py).
    ship_to: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    ship_to_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    pii_key_id: Mapped[str | None] = mapped_column(String(32), index=True)
    buyer_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    pii_erased_at: Mapped[datetime | None]
    channel_created_at: Mapped[datetime | None]
    channel_updated_at: Mapped[datetime]
    ingested_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", order_by="OrderLine.id", lazy="selectin"
    )


class OrderLine(Base):
    """One line of an order. `sku` is None when the channel's SKU is not one of ours (unmapped)."""

    __tablename__ = "order_lines"
    __table_args__ = (
        UniqueConstraint("order_id", "external_line_id"),
        CheckConstraint("quantity >= 0", name="quantity_not_negative"),
        CheckConstraint("quantity_cancelled >= 0", name="cancelled_not_negative"),
        CheckConstraint("quantity_shipped >= 0", name="shipped_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    external_line_id: Mapped[str] = mapped_column(String(128))
    channel_sku: Mapped[str] = mapped_column(String(128))
    sku: Mapped[str | None] = mapped_column(ForeignKey("skus.sku"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    quantity_cancelled: Mapped[int] = mapped_column(Integer, default=0)
    quantity_shipped: Mapped[int] = mapped_column(Integer, default=0)
    unit_price: Mapped[Decimal | None]
    extra: Mapped[dict[str, Any] | None]
    # Status out (sync/fanout.py): figures a channel's update never lowers, so that a shipment
    # recorded here or a cancellation decided here stands until the channel shows it too.
    shipped_floor: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cancelled_floor: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    order: Mapped[Order] = relationship(back_populates="lines")

    @property
    def is_unmapped(self) -> bool:
        """True when no SKU of ours matches the channel's SKU, so the line reserves nothing."""
        return self.sku is None


class Reservation(Base):
    """Units of one SKU at one location promised to one order line (a bundle line has several)."""

    __tablename__ = "reservations"
    __table_args__ = (
        UniqueConstraint("order_line_id", "sku", "location"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("consumed >= 0", name="consumed_not_negative"),
        CheckConstraint("released >= 0", name="released_not_negative"),
        Index("ix_reservations_sku_location", "sku", "location"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id", ondelete="CASCADE"))
    sku: Mapped[str] = mapped_column(ForeignKey("skus.sku"))
    location: Mapped[str] = mapped_column(String(64))
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    consumed: Mapped[int] = mapped_column(Integer, default=0)
    released: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Listing(Base):
    """Binds a SKU to the thing on one channel that holds a quantity, and what it was last told."""

    __tablename__ = "listings"
    __table_args__ = (
        UniqueConstraint("channel_id", "external_ref"),
        Index("ix_listings_dirty", "channel_id", "is_dirty"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    sku: Mapped[str] = mapped_column(ForeignKey("skus.sku"), index=True)
    external_ref: Mapped[str] = mapped_column(String(255))
    extra: Mapped[dict[str, Any] | None]
    is_dirty: Mapped[bool] = mapped_column(Boolean, default=True)
    # Monotonic per listing: a target is sent only if its seq is newer than the last one applied.
    target_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_pushed_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_pushed_quantity: Mapped[int | None] = mapped_column(Integer)
    # The channel's own sales were subtracted from the belief: send the next figure even if it
    # equals the belief, so that compare-and-swap confirms what the channel holds.
    verify_belief: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    last_pushed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Shipment(Base):
    """A parcel with tracking, recorded here or imported from the channel."""

    __tablename__ = "shipments"
    __table_args__ = (UniqueConstraint("order_id", "external_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    origin: Mapped[ShipmentOrigin] = mapped_column(_enum(ShipmentOrigin, "shipment_origin"))
    external_id: Mapped[str | None] = mapped_column(String(128))
    carrier: Mapped[str | None] = mapped_column(String(128))
    tracking_number: Mapped[str | None] = mapped_column(String(128))
    tracking_url: Mapped[str | None] = mapped_column(String(1024))
    shipped_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    lines: Mapped[list[ShipmentLine]] = relationship(lazy="selectin")


class ShipmentLine(Base):
    """How many units of one order line a shipment carries."""

    __tablename__ = "shipment_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="positive_quantity"),)

    shipment_id: Mapped[int] = mapped_column(
        ForeignKey("shipments.id", ondelete="CASCADE"), primary_key=True
    )
    order_line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id"), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)


LANE_SOLD_OUT = -1
"""The lane of a push that tells a channel a listing has nothing left: ahead even of the scarce
lane, as a listing still showing 1 is oversold by the next buyer, one showing 3 where 1 is left
only by the second."""
LANE_SCARCE = 0
"""An outbox job's lane when it tells a channel that a listing is down to its last few units:
while a rate-limited channel works through a queue of changes (Amazon patches 5 listings a
second), the listing that is about to sell out is the one another sale would oversell."""
LANE_NORMAL = 1
LANE_CONFIRM = 2
"""The lane of a push that only confirms what the channel should show already: after its own
sale, which it counted itself, or a report of a figure other than we believe, when the ledger's
figure is the belief and above the scarce few. It goes after every change, and it never fills a
batch that goes early (it rides in the room one leaves): on Amazon (5 patches a second) a
confirmation for each of its own sales took a fifth of the patches while changes queued."""


class OutboxJob(Base):
    """A durable "make this true on that channel", written in the transaction that caused it."""

    __tablename__ = "outbox_jobs"
    __table_args__ = (
        # At most one pending job per identity: a newer stock target replaces the pending one.
        Index(
            "uq_outbox_jobs_pending_identity",
            "identity_key",
            unique=True,
            postgresql_where=text("state = 'pending'"),
            sqlite_where=text("state = 'pending'"),
        ),
        Index("ix_outbox_jobs_claim", "state", "run_after"),
        Index("ix_outbox_jobs_lane", "channel_id", "state", "lane", "run_after"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"), index=True)
    kind: Mapped[JobKind] = mapped_column(_enum(JobKind, "job_kind"))
    identity_key: Mapped[str] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]]
    state: Mapped[JobState] = mapped_column(_enum(JobState, "job_state"), default=JobState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Claimed lane by lane, then oldest first: see LANE_SCARCE.
    lane: Mapped[int] = mapped_column(Integer, default=LANE_NORMAL, server_default="1")
    # Running in a push the channel takes minutes to land (an Amazon feed): a push to the
    # listing's last units may go beside it (see `outbox.claim`), and once it lands the listing's
    # newest figure is pushed again (`stock_push.record_results`).
    overtakable: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """A verified raw delivery, persisted before the channel is answered; deduped by its id."""

    __tablename__ = "webhook_inbox"
    __table_args__ = (
        UniqueConstraint("channel_id", "delivery_id"),
        Index("ix_webhook_inbox_state", "state", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    delivery_id: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(128))
    # Sealed (sync/sealing.py) under the key `key_id`; NULL key_id: a plain body from before 0005.
    body: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[InboxState] = mapped_column(
        _enum(InboxState, "inbox_state"), default=InboxState.RECEIVED
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]


class PollCheckpoint(Base):
    """How far a channel's stream has been read and committed; advanced only after the commit."""

    __tablename__ = "poll_checkpoints"

    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"), primary_key=True)
    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    position_at: Mapped[datetime | None]
    cursor: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Lease(Base):
    """One holder at a time for a named periodic job across instances; expires unless renewed."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime]
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)


class Event(Base):
    """Append-only log of what the engine decided, for audit and the status views."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_at", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(64))
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id"))
    order_id: Mapped[int | None] = mapped_column(BigId)
    sku: Mapped[str | None] = mapped_column(String(128))
    data: Mapped[dict[str, Any] | None]


class ChannelBudget(Base):
    """A channel's daily budget used so far (eBay: calls per API, revisions per listing), summed
    over every instance, so that a restart or a second instance does not spend it twice."""

    __tablename__ = "channel_budgets"
    __table_args__ = (Index("ix_channel_budgets_resets_at", "resets_at"),)

    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"), primary_key=True)
    scope: Mapped[str] = mapped_column(String(16), primary_key=True)  # "api" or "listing"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)  # the channel's own day
    used: Mapped[int] = mapped_column(Integer, default=0)
    daily_limit: Mapped[int] = mapped_column(Integer)
    is_exhausted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    resets_at: Mapped[datetime]  # when the channel's day ends
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
