"""Read models for the admin API: stock, orders and jobs as JSON, and the queries that page them.

Buyer data stays out (DESIGN invariant 6): order lists carry no address and no buyer reference;
only one order's detail opens its sealed ship-to (the seller ships to it), and never shows the
buyer reference. Job payloads are left out for the same reason. Lists
page by keyset (an opaque cursor), so a page is cheap however deep and no row is seen twice.
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connectors.base import OrderStatus
from sync.buyer_data import ship_to_of
from sync.models import (
    Channel,
    JobState,
    Listing,
    Order,
    OrderLine,
    OutboxJob,
    Reservation,
    Sku,
    StockLevel,
)
from sync.outbox import list_jobs
from sync.sealing import SealingError

JSON = dict[str, Any]
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class QueryError(ValueError):
    """A query parameter the API cannot use; `param` names it."""

    def __init__(self, param: str, problem: str) -> None:
        self.param = param
        super().__init__(f"{param}: {problem}")


class QueryParams:
    """One request's query parameters, refusing unknown or repeated names."""

    def __init__(self, items: Iterable[tuple[str, str]], allowed: Iterable[str]) -> None:
        self._values: dict[str, str] = {}
        known = set(allowed)
        for name, value in items:
            if name not in known:
                raise QueryError(name, f"unknown parameter (accepted: {', '.join(sorted(known))})")
            if name in self._values:
                raise QueryError(name, "given more than once")
            self._values[name] = value

    def get(self, name: str) -> str | None:
        """The raw value, None when absent or empty."""
        return self._values.get(name) or None

    def integer(self, name: str, default: int, low: int, high: int | None = None) -> int:
        """A whole number within [low, high], or `default` when absent."""
        raw = self.get(name)
        if raw is None:
            return default
        if not raw.isascii() or not raw.lstrip("-").isdigit():
            raise QueryError(name, f"{raw!r} is not a whole number")
        value = int(raw)
        if value < low or (high is not None and value > high):
            span = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise QueryError(name, f"must be {span}, got {value}")
        return value

    def limit(self) -> int:
        """Page size: 1..MAX_LIMIT, DEFAULT_LIMIT when absent."""
        return self.integer("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)

    def cursor(self) -> str | None:
        """The decoded `cursor`, None on the first page."""
        raw = self.get("cursor")
        if raw is None:
            return None
        try:
            padded = raw + "=" * (-len(raw) % 4)
            return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise QueryError("cursor", "not a cursor this API gave out") from None


def encode_cursor(value: str) -> str:
    """An opaque cursor for a keyset position."""
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _money(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


# Stock


def stock_page(session: Session, params: QueryParams) -> JSON:
    """Every SKU, by SKU code, one page at a time."""
    limit, after = params.limit(), params.cursor()
    query = select(Sku).order_by(Sku.sku).limit(limit + 1)
    if after is not None:
        query = query.where(Sku.sku > after)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": _stock_items(session, rows),
        "next_cursor": encode_cursor(rows[-1].sku) if more else None,
    }


def stock_item(session: Session, sku: str) -> JSON | None:
    """One SKU's stock view, None when it is not in the catalogue."""
    row = session.get(Sku, sku)
    return None if row is None else _stock_items(session, [row])[0]


def _stock_items(session: Session, rows: Sequence[Sku]) -> list[JSON]:
    parts = {r.sku: [(c.component_sku, c.quantity) for c in r.components] for r in rows}
    codes = {r.sku for r in rows} | {c for p in parts.values() for c, _ in p}
    on_hand: dict[str, dict[str, int]] = defaultdict(dict)
    reserved: dict[str, dict[str, int]] = defaultdict(dict)
    for chunk in _chunks(sorted(codes)):
        for sku, location, units in session.execute(
            select(StockLevel.sku, StockLevel.location, StockLevel.on_hand).where(
                StockLevel.sku.in_(chunk)
            )
        ):
            on_hand[sku][location] = units
        for sku, location, units in session.execute(
            select(Reservation.sku, Reservation.location, func.sum(Reservation.reserved))
            .where(Reservation.sku.in_(chunk))
            .group_by(Reservation.sku, Reservation.location)
        ):
            reserved[sku][location] = int(units or 0)
    listings = _listings(session, [r.sku for r in rows])

    def plain(sku: str) -> list[JSON]:
        locations = sorted(on_hand[sku].keys() | reserved[sku].keys())
        return [
            {
                "location": loc,
                "on_hand": on_hand[sku].get(loc, 0),
                "reserved": reserved[sku].get(loc, 0),
                "available": on_hand[sku].get(loc, 0) - reserved[sku].get(loc, 0),
            }
            for loc in locations
        ]

    def free(sku: str, loc: str) -> int:
        # As the pusher counts it: an oversold location lends no units to another.
        return max(0, on_hand[sku].get(loc, 0) - reserved[sku].get(loc, 0))

    items = []
    for row in rows:
        item: JSON = {"sku": row.sku, "title": row.title, "is_bundle": row.is_bundle}
        if row.is_bundle:
            comps = parts[row.sku]
            locs = sorted({loc for c, _ in comps for loc in on_hand[c].keys() | reserved[c].keys()})
            item["components"] = [{"sku": c, "quantity": q} for c, q in comps]
            item["locations"] = [
                {
                    "location": loc,
                    "on_hand": None,
                    "reserved": None,
                    "available": min((free(c, loc) // q for c, q in comps), default=0),
                }
                for loc in locs
            ]
            total = min((sum(free(c, loc) for loc in locs) // q for c, q in comps), default=0)
            item["totals"] = {"on_hand": None, "reserved": None, "available": total}
        else:
            item["locations"] = plain(row.sku)
            held = sum(on_hand[row.sku].values())
            promised = sum(reserved[row.sku].values())
            item["totals"] = {"on_hand": held, "reserved": promised, "available": held - promised}
        item["channels"] = listings.get(row.sku, [])
        items.append(item)
    return items


def _listings(session: Session, skus: Sequence[str]) -> dict[str, list[JSON]]:
    found: dict[str, list[JSON]] = defaultdict(list)
    for chunk in _chunks(sorted(skus)):
        for listing, channel in session.execute(
            select(Listing, Channel.name)
            .join(Channel, Channel.id == Listing.channel_id)
            .where(Listing.sku.in_(chunk))
            .order_by(Channel.name, Listing.external_ref)
        ):
            found[listing.sku].append(
                {
                    "channel": channel,
                    "listing_ref": listing.external_ref,
                    "last_pushed_quantity": listing.last_pushed_quantity,
                    "last_pushed_at": _iso(listing.last_pushed_at),
                    "is_dirty": listing.is_dirty,
                }
            )
    return found


def _chunks(items: Sequence[str], size: int = 1000) -> Iterable[Sequence[str]]:
    return (items[i : i + size] for i in range(0, len(items), size))


# Orders


def orders_page(session: Session, params: QueryParams) -> JSON:
    """Canonical orders, newest first, filtered by channel name, status and oversold flag."""
    names = channel_names(session)
    query = select(Order).order_by(Order.id.desc())
    channel = params.get("channel")
    if channel is not None:
        ids = [i for i, name in names.items() if name == channel]
        if not ids:
            raise QueryError("channel", f"no channel named {channel!r}")
        query = query.where(Order.channel_id == ids[0])
    status = params.get("status")
    if status is not None:
        if status not in {s.value for s in OrderStatus}:
            accepted = ", ".join(s.value for s in OrderStatus)
            raise QueryError("status", f"{status!r} is not one of {accepted}")
        query = query.where(Order.status == OrderStatus(status))
    oversold = params.get("oversold")
    if oversold is not None:
        if oversold not in ("true", "false"):
            raise QueryError("oversold", f"must be true or false, got {oversold!r}")
        query = query.where(Order.is_oversold.is_(oversold == "true"))
    limit, before = params.limit(), params.cursor()
    if before is not None:
        if not before.isdigit():
            raise QueryError("cursor", "not a cursor this API gave out")
        query = query.where(Order.id < int(before))
    rows = list(session.scalars(query.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [_order_json(row, names) for row in rows],
        "next_cursor": encode_cursor(str(rows[-1].id)) if more else None,
    }


def order_detail(session: Session, order_id: int) -> JSON | None:
    """One order with its lines, reservations and ship-to address (the seller ships to it)."""
    row = session.get(Order, order_id)
    if row is None:
        return None
    data = _order_json(row, channel_names(session))
    try:
        data["ship_to"] = ship_to_of(row)
    except SealingError as err:
        # The order's facts still answer; the message names the key id, never the data.
        data["ship_to"] = None
        data["ship_to_unavailable"] = str(err)
    data["reservations"] = [
        {
            "order_line_id": res.order_line_id,
            "sku": res.sku,
            "location": res.location,
            "reserved": res.reserved,
            "consumed": res.consumed,
            "released": res.released,
        }
        for res in session.scalars(
            select(Reservation)
            .join(OrderLine, Reservation.order_line_id == OrderLine.id)
            .where(OrderLine.order_id == order_id)
            .order_by(Reservation.id)
        )
    ]
    return data


def _order_json(row: Order, names: dict[int, str]) -> JSON:
    # Built field by field, never from the row as a whole: ship_to and buyer_ref stay out.
    return {
        "id": row.id,
        "channel": names.get(row.channel_id),
        "external_id": row.external_id,
        "number": row.number,
        "status": row.status.value,
        "currency": row.currency,
        "total": _money(row.total),
        "is_oversold": row.is_oversold,
        "is_reserving": row.is_reserving,
        "channel_created_at": _iso(row.channel_created_at),
        "channel_updated_at": _iso(row.channel_updated_at),
        "ingested_at": _iso(row.ingested_at),
        "lines": [
            {
                "id": line.id,
                "external_line_id": line.external_line_id,
                "channel_sku": line.channel_sku,
                "sku": line.sku,
                "is_unmapped": line.is_unmapped,
                "quantity": line.quantity,
                "cancelled": line.quantity_cancelled,
                "shipped": line.quantity_shipped,
                "unit_price": _money(line.unit_price),
            }
            for line in row.lines
        ],
    }


def channel_names(session: Session) -> dict[int, str]:
    """Channel id -> name."""
    return dict(session.execute(select(Channel.id, Channel.name)).all())


# Jobs


def jobs_page(session: Session, params: QueryParams) -> JSON:
    """Outbox jobs, newest first, by state and channel name; without their payloads."""
    names = channel_names(session)
    state = params.get("state")
    if state is not None and state not in {s.value for s in JobState}:
        accepted = ", ".join(s.value for s in JobState)
        raise QueryError("state", f"{state!r} is not one of {accepted}")
    channel = params.get("channel")
    channel_id = None
    if channel is not None:
        channel_id = next((i for i, name in names.items() if name == channel), None)
        if channel_id is None:
            raise QueryError("channel", f"no channel named {channel!r}")
    jobs = list_jobs(
        session,
        state=JobState(state) if state is not None else None,
        channel_id=channel_id,
        limit=params.limit(),
        offset=params.integer("offset", 0, 0),
    )
    return {"items": [job_json(job, names) for job in jobs]}


def job_json(job: OutboxJob, names: dict[int, str]) -> JSON:
    """A job as the API shows it: never its payload, which may carry buyer data."""
    return {
        "id": job.id,
        "channel": names.get(job.channel_id),
        "kind": job.kind.value,
        "identity_key": job.identity_key,
        "state": job.state.value,
        "attempts": job.attempts,
        "run_after": _iso(job.run_after),
        "last_error": job.last_error,
        "created_at": _iso(job.created_at),
    }
