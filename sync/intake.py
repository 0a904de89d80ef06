"""Between a channel's raw records and ingest: map each one, refuse the malformed, keep the rest.

A record that cannot become a valid canonical order (negative quantity, money that is not a
number, a missing field) is refused with a logged reason naming the channel, the record's id and
what is wrong, never its content (it may hold buyer data), and nothing of it is stored; the other
records of the page go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import InvalidOperation

from connectors.base import InvalidValueError, Order, RawPayload
from connectors.errors import SkipRecordError

log = logging.getLogger(__name__)

OrderMapper = Callable[[RawPayload], Order]


@dataclass(frozen=True)
class Refusal:
    """One record that was not ingested, and why."""

    record_id: str
    reason: str


@dataclass
class MappedPage:
    """What survived mapping, and what was refused."""

    orders: list[Order] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


def map_orders(
    channel: str, records: Iterable[RawPayload], mapper: OrderMapper, *, id_field: str = "id"
) -> MappedPage:
    """Map a page of raw records with `mapper`; refuse (and log) each one that is malformed."""
    page = MappedPage()
    for record in records:
        record_id = _record_id(record, id_field)
        try:
            page.orders.append(mapper(record))
        except SkipRecordError as exc:
            page.refused.append(Refusal(record_id, str(exc)))
        except InvalidOperation:
            page.refused.append(Refusal(record_id, "an amount of money is not a number"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            page.refused.append(Refusal(record_id, _reason(exc)))
    for refusal in page.refused:
        log.warning(
            "channel %s: order %s refused, nothing stored: %s",
            channel,
            refusal.record_id,
            refusal.reason,
        )
    return page


def _record_id(record: RawPayload, id_field: str) -> str:
    value = record.get(id_field) if isinstance(record, dict) else None
    return str(value)[:128] if isinstance(value, str | int) else "(no id)"


def _reason(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    # Our value types name the field and never echo buyer data; other errors are summarised by
    # type so that a library's message quoting the raw value cannot leak it.
    if isinstance(exc, InvalidValueError):
        return str(exc)
    return f"malformed record ({type(exc).__name__})"
