"""Operator stock changes: set one SKU's on hand, or import a whole `sku,location,on_hand` file.

Both run in the caller's transaction and leave the ledger as ingest does: SKUs locked in sorted
order, on hand written, oversold flags re-derived, every listing of the SKUs (and of bundles built
from them) marked dirty, an event per change. An import is all or nothing: every row is checked
before the first one is written.

Errors (all `ValueError`, so a caller that only wants "bad input" catches one class):

    StockInputError          the request cannot be applied as given
     +-- UnknownSkuError     no such SKU in the catalogue
     +-- BundleStockError    the SKU is a bundle: its stock derives from its components
     +-- StockImportError    a file had bad rows; `errors` lists each as "line N: ..."
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from sync.models import Event, Sku
from sync.reservations import lock_skus, mark_dirty, recompute_oversold, set_on_hand

HEADER = ("sku", "location", "on_hand")
LOCATION_MAX = 64  # StockLevel.location is String(64)
ON_HAND_MAX = 2**31 - 1  # StockLevel.on_hand is a 32-bit INTEGER on PostgreSQL
_INTEGER = re.compile(r"-?[0-9]+")
# Parameters per IN (...) query: far below SQLite's 32766 and PostgreSQL's 65535 bind limits.
_CHUNK = 1000


class StockInputError(ValueError):
    """A stock change that cannot be applied as given; the message says what to fix."""


class UnknownSkuError(StockInputError):
    """The SKU is not in the catalogue."""


class BundleStockError(StockInputError):
    """The SKU is a bundle, whose available quantity derives from its components."""


class StockImportError(StockInputError):
    """A stock file had bad rows; nothing of it was applied."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__(f"{len(self.errors)} bad row(s), nothing applied: " + "; ".join(errors))


@dataclass(frozen=True)
class StockChange:
    """One SKU's on hand at one location, before and after."""

    sku: str
    location: str
    old: int
    new: int
    dirty_channels: frozenset[int] = frozenset()

    @property
    def is_changed(self) -> bool:
        """True when the figure moved."""
        return self.old != self.new


@dataclass(frozen=True)
class ImportResult:
    """What an import applied."""

    changes: tuple[StockChange, ...]
    dirty_channels: frozenset[int] = frozenset()
    newly_oversold: frozenset[int] = frozenset()
    cleared_oversold: frozenset[int] = frozenset()

    @property
    def rows_applied(self) -> int:
        """Rows written (unchanged figures included)."""
        return len(self.changes)

    @property
    def skus_changed(self) -> list[str]:
        """SKUs whose on hand moved at some location, sorted."""
        return sorted({c.sku for c in self.changes if c.is_changed})


@dataclass(frozen=True)
class _Row:
    line: int
    sku: str
    location: str
    on_hand: int


@dataclass
class _Parsed:
    rows: list[_Row] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def set_stock(session: Session, sku: str, location: str, on_hand: int) -> StockChange:
    """Set on hand of one SKU at one location, in the caller's transaction."""
    problem = _location_problem(location) or _on_hand_problem(on_hand)
    if problem:
        raise StockInputError(problem)
    lock_skus(session, [sku])
    row = session.get(Sku, sku)
    if row is None:
        raise UnknownSkuError(f"unknown SKU {sku!r}")
    if row.is_bundle:
        raise BundleStockError(f"SKU {sku!r} is a bundle: set the stock of its components instead")
    old = set_on_hand(session, sku, location, on_hand)
    recompute_oversold(session, [sku])
    channels = mark_dirty(session, [sku])
    session.add(
        Event(kind="stock.set", sku=sku, data={"location": location, "old": old, "new": on_hand})
    )
    return StockChange(sku, location, old, on_hand, frozenset(channels))


def import_stock_csv(session: Session, source: str | bytes | Path) -> ImportResult:
    """Apply a `sku,location,on_hand` file (a Path, its bytes, or its text): every row, or none."""
    if isinstance(source, Path):
        source = source.read_bytes()
    text = _decode(source) if isinstance(source, bytes) else source.removeprefix("\ufeff")
    parsed = _parse(text)
    skus = sorted({r.sku for r in parsed.rows})
    catalogue = _catalogue(session, skus)
    for r in parsed.rows:
        if r.sku not in catalogue:
            parsed.errors.append(f"line {r.line}: unknown SKU {r.sku!r}")
        elif catalogue[r.sku]:
            parsed.errors.append(
                f"line {r.line}: SKU {r.sku!r} is a bundle; set the stock of its components"
            )
    if parsed.errors:
        raise StockImportError(sorted(parsed.errors, key=_line_of))
    if not parsed.rows:
        raise StockImportError([f"line 1: no rows to import (expected {','.join(HEADER)})"])
    return apply_on_hand(
        session, [(r.sku, r.location, r.on_hand) for r in parsed.rows], source="import"
    )


def apply_on_hand(
    session: Session, rows: Sequence[tuple[str, str, int]], *, source: str
) -> ImportResult:
    """Write checked (sku, location, on hand) rows of known plain SKUs, one per pair, as one
    change: locks in the global order, oversold flags, dirty listings, an event per change."""
    skus = sorted({sku for sku, _, _ in rows})
    for chunk in _chunks(skus):  # chunks in sorted order keep the one global lock order
        lock_skus(session, chunk)
    changes = [
        StockChange(sku, location, set_on_hand(session, sku, location, on_hand), on_hand)
        for sku, location, on_hand in rows
    ]
    newly: set[int] = set()
    cleared: set[int] = set()
    channels: set[int] = set()
    for chunk in _chunks(skus):
        flagged, unflagged = recompute_oversold(session, chunk)
        newly = (newly - unflagged) | flagged
        cleared = (cleared - flagged) | unflagged
        channels |= mark_dirty(session, chunk)
    session.add_all(
        Event(
            kind="stock.set",
            sku=c.sku,
            data={"location": c.location, "old": c.old, "new": c.new, "source": source},
        )
        for c in changes
        if c.is_changed
    )
    return ImportResult(tuple(changes), frozenset(channels), frozenset(newly), frozenset(cleared))


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise StockImportError(
            [
                f"line {line}: byte 0x{data[exc.start]:02x} at column {column} is not UTF-8; "
                "save the file as UTF-8"
            ]
        ) from None


def _parse(text: str) -> _Parsed:
    parsed = _Parsed()
    seen: dict[tuple[str, str], int] = {}
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    is_first = True
    line = 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            parsed.errors.append(f"line {line}: unreadable CSV ({exc}; an unclosed quote?)")
            break
        start, line = line, reader.line_num + 1
        fields = [f.strip() for f in record]
        if not any(fields):
            continue  # blank line
        if is_first and [f.lower() for f in fields] == list(HEADER):
            is_first = False
            continue
        is_first = False
        row = _check_fields(start, fields, parsed.errors)
        if row is None:
            continue
        earlier = seen.setdefault((row.sku, row.location), start)
        if earlier != start:
            parsed.errors.append(
                f"line {start}: SKU {row.sku!r} at location {row.location!r} "
                f"is already set on line {earlier}"
            )
            continue
        parsed.rows.append(row)
    return parsed


def _check_fields(line: int, fields: list[str], errors: list[str]) -> _Row | None:
    if len(fields) != len(HEADER):
        what = "missing column" if len(fields) < len(HEADER) else "extra column"
        errors.append(
            f"line {line}: {what}: expected 3 columns {','.join(HEADER)}, got {len(fields)}"
        )
        return None
    sku, location, quantity = fields
    problems = []
    if not sku:
        problems.append("sku is empty")
    problem = _location_problem(location)
    if problem:
        problems.append(problem)
    on_hand = None
    if not _INTEGER.fullmatch(quantity):
        problems.append(f"on_hand {quantity!r} is not a whole number")
    else:
        on_hand = int(quantity)
        problem = _on_hand_problem(on_hand)
        if problem:
            problems.append(problem)
    if problems or on_hand is None:
        errors.extend(f"line {line}: {p}" for p in problems)
        return None
    return _Row(line, sku, location, on_hand)


def _location_problem(location: object) -> str | None:
    if not isinstance(location, str) or not location.strip():
        return "location is empty"
    if len(location) > LOCATION_MAX:
        return f"location is longer than {LOCATION_MAX} characters"
    return None


def _on_hand_problem(on_hand: object) -> str | None:
    if not isinstance(on_hand, int) or isinstance(on_hand, bool):
        return f"on_hand must be a whole number, got {type(on_hand).__name__}"
    if on_hand < 0:
        return f"on_hand {on_hand} is negative"
    if on_hand > ON_HAND_MAX:
        return f"on_hand {on_hand} is larger than {ON_HAND_MAX}"
    return None


def _catalogue(session: Session, skus: Sequence[str]) -> dict[str, bool]:
    """sku -> is_bundle for the SKUs that exist."""
    found: dict[str, bool] = {}
    for chunk in _chunks(skus):
        found.update(
            session.execute(select(Sku.sku, Sku.is_bundle).where(Sku.sku.in_(chunk))).all()
        )
    return found


def _chunks(items: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield list(items[start : start + _CHUNK])


def _line_of(error: str) -> int:
    number = error.removeprefix("line ").partition(":")[0]
    return int(number) if number.isdigit() else 0
