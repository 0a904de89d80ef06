"""Shipments and cancellations recorded here: ledger, status, outbox, and what channels report."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from sync.db import Database
from sync.fanout import (
    AmbiguousOrderError,
    OrderStateError,
    TooManyUnitsError,
    Units,
    UnknownLineError,
    UnknownOrderError,
    cancel_here,
    record_shipment,
    resolve_order,
)
from sync.models import JobKind, JobState, Order, OutboxJob, Reservation, Shipment, ShipmentOrigin
from tests.sync.fanout_helpers import (
    check_ledger,
    clean_listings,
    dirty_skus,
    drain,
    lines_of,
    make_store,
    on_hand,
    place,
    redeliver,
    status_of,
    store_state,
)


def _ship(database: Database, order_id: int, *units: tuple[str, int], tracking: str = "1Z1") -> int:
    return database.transact(
        lambda s: (
            record_shipment(
                s, order_id, carrier="UPS", tracking=tracking, lines=[Units(k, n) for k, n in units]
            ).record_id
        )
    )


def _cancel(database: Database, order_id: int, *units: tuple[str, int]) -> None:
    database.transact(lambda s: cancel_here(s, order_id, lines=[Units(k, n) for k, n in units]))


def _jobs(database: Database) -> list[tuple[JobKind, str, dict[str, object]]]:
    with database.read_session() as session:
        return [
            (job.kind, job.identity_key, job.payload)
            for job in session.scalars(
                select(OutboxJob).where(OutboxJob.kind != JobKind.STOCK).order_by(OutboxJob.id)
            )
        ]


def test_partial_shipments_consume_units_and_give_the_order_status(database: Database) -> None:
    store = make_store(database)
    ext, order_id = place(store, "shop", [("A", 3), ("B", 2)])
    clean_listings(database)

    first = _ship(database, order_id, ("A", 1))
    assert status_of(database, order_id) == "partially_shipped"
    assert lines_of(database, order_id) == {f"{ext}-1": (3, 0, 1), f"{ext}-2": (2, 0, 0)}
    assert on_hand(database) == {"A": 9, "B": 10}
    check_ledger(database)
    # Every listing of A (and KIT, made of A) on every channel is dirty; B's are not.
    channels = {c.id for c in store.channels.values()}
    assert dirty_skus(database) == {(c, sku) for c in channels for sku in ("A", "KIT")}

    second = _ship(database, order_id, tracking="1Z2")  # every open unit
    assert status_of(database, order_id) == "shipped"
    assert lines_of(database, order_id) == {f"{ext}-1": (3, 0, 3), f"{ext}-2": (2, 0, 2)}
    assert on_hand(database) == {"A": 7, "B": 8}
    check_ledger(database)
    with database.read_session() as session:
        assert session.scalars(select(Reservation.reserved)).all() == [0, 0]
    shop = store.channels["shop"].id
    assert _jobs(database) == [
        (
            JobKind.SHIPMENT,
            f"shipment:{shipment}",
            {
                "shipment_id": shipment,
                "order_id": order_id,
                "order_external_id": ext,
                "lines": lines,
                "carrier": "UPS",
                "tracking": tracking,
                "shipped_at": _shipped_at(database, shipment),
            },
        )
        for shipment, lines, tracking in (
            (first, [[f"{ext}-1", 1]], "1Z1"),
            (second, [[f"{ext}-1", 2], [f"{ext}-2", 2]], "1Z2"),
        )
    ]
    with database.read_session() as session:
        assert {job.channel_id for job in session.scalars(select(OutboxJob))} == {shop}


def _shipped_at(database: Database, shipment_id: int) -> str:
    with database.read_session() as session:
        return session.get_one(Shipment, shipment_id).shipped_at.isoformat()


def test_a_bundle_line_consumes_its_components(database: Database) -> None:
    store = make_store(database)
    _, order_id = place(store, "market", [("KIT", 2)])
    _ship(database, order_id, ("KIT", 1))
    assert on_hand(database) == {"A": 8, "B": 9}
    assert status_of(database, order_id) == "partially_shipped"
    check_ledger(database)


def test_cancellations_per_line_release_and_keep_the_ledger(database: Database) -> None:
    store = make_store(database, on_hand=4)
    ext, order_id = place(store, "shop", [("A", 3), ("B", 2)])
    _cancel(database, order_id, ("A", 2))
    assert lines_of(database, order_id) == {f"{ext}-1": (3, 2, 0), f"{ext}-2": (2, 0, 0)}
    assert status_of(database, order_id) == "open"
    check_ledger(database)
    with database.read_session() as session:
        held = dict(session.execute(select(Reservation.sku, Reservation.reserved)).all())
    assert held == {"A": 1, "B": 2}

    _ship(database, order_id, ("B", 1))
    _cancel(database, order_id)  # every open unit: A 1, B 1
    assert lines_of(database, order_id) == {f"{ext}-1": (3, 3, 0), f"{ext}-2": (2, 1, 1)}
    assert status_of(database, order_id) == "shipped"  # what is left of it has shipped
    assert on_hand(database) == {"A": 4, "B": 3}
    check_ledger(database)
    kinds = [(kind, payload.get("lines")) for kind, _, payload in _jobs(database)]
    assert kinds == [
        (JobKind.CANCEL, [[f"{ext}-1", 2]]),
        (JobKind.SHIPMENT, [[f"{ext}-2", 1]]),
        (JobKind.CANCEL, [[f"{ext}-1", 1], [f"{ext}-2", 1]]),
    ]
    with pytest.raises(OrderStateError, match="nothing left to cancel"):
        _cancel(database, order_id)


def test_cancelling_an_oversold_order_here_clears_its_flag(database: Database) -> None:
    store = make_store(database, on_hand=2)
    place(store, "shop", [("A", 2)])
    _, late = place(store, "market", [("A", 1)])
    with database.read_session() as session:
        assert session.get_one(Order, late).is_oversold
    _cancel(database, late)
    assert status_of(database, late) == "cancelled"
    with database.read_session() as session:
        assert not session.get_one(Order, late).is_oversold
    check_ledger(database)
    ((kind, _key, payload),) = _jobs(database)
    assert (kind, payload["lines"], payload["reason"]) == (JobKind.CANCEL, [], "other")


def test_refusals_write_nothing(database: Database) -> None:
    store = make_store(database)
    _ext, order_id = place(store, "shop", [("A", 2), ("B", 1)])
    _, cancelled = place(store, "shop", [("A", 1)])
    _cancel(database, cancelled)
    before = store_state(database)
    refusals: list[tuple[type[Exception], str, list[tuple[str, int]]]] = [
        (TooManyUnitsError, "3 units asked to ship, order .* has 2 open", [("A", 3)]),
        (UnknownLineError, "no line for SKU 'C'", [("C", 1)]),
        (ValueError, "given more than once", [("A", 1), ("A", 1)]),
        (ValueError, "at least 1", [("A", 0)]),
    ]
    for error, match, units in refusals:
        with pytest.raises(error, match=match):
            _ship(database, order_id, *units)
    with pytest.raises(ValueError, match="tracking: empty"):
        database.transact(lambda s: record_shipment(s, order_id, carrier="UPS", tracking=" "))
    with pytest.raises(ValueError, match="carrier: empty"):
        database.transact(lambda s: record_shipment(s, order_id, carrier=None, tracking="1Z"))
    with pytest.raises(UnknownOrderError):
        _ship(database, 999_999)
    with pytest.raises(OrderStateError, match="cancelled"):
        _ship(database, cancelled)
    with pytest.raises(OrderStateError, match="already cancelled"):
        _cancel(database, cancelled)
    with pytest.raises(TooManyUnitsError):
        _cancel(database, order_id, ("B", 2))
    assert store_state(database) == before


def test_a_stale_channel_update_undoes_neither_a_shipment_nor_a_cancel_here(
    database: Database,
) -> None:
    store = make_store(database)
    ext, order_id = place(store, "shop", [("A", 3), ("B", 2)])
    market = store.channels["shop"].market
    _ship(database, order_id, ("A", 2))
    _cancel(database, order_id, ("B", 2))
    # The channel has heard of neither: a newer version still shows every unit open.
    market.update(ext)
    redeliver(store, "shop", ext)
    assert lines_of(database, order_id) == {f"{ext}-1": (3, 0, 2), f"{ext}-2": (2, 2, 0)}
    assert status_of(database, order_id) == "partially_shipped"
    assert on_hand(database) == {"A": 8, "B": 10}
    check_ledger(database)

    _cancel(database, order_id)  # the last A
    market.update(ext)
    redeliver(store, "shop", ext)
    assert status_of(database, order_id) == "shipped"
    assert lines_of(database, order_id) == {f"{ext}-1": (3, 1, 2), f"{ext}-2": (2, 2, 0)}
    check_ledger(database)


def test_a_whole_cancel_here_sticks_when_the_channel_still_shows_the_order_open(
    database: Database,
) -> None:
    store = make_store(database)
    ext, order_id = place(store, "shop", [("A", 3)])
    _cancel(database, order_id)
    store.channels["shop"].market.update(ext)
    redeliver(store, "shop", ext)
    assert status_of(database, order_id) == "cancelled"
    assert on_hand(database)["A"] == 10
    check_ledger(database)


def test_channel_shipments_are_recorded_once_and_never_queued(database: Database) -> None:
    store = make_store(database)
    ext, order_id = place(store, "shop", [("A", 3)])
    market = store.channels["shop"].market
    market.ship_on_channel(ext, {f"{ext}-1": 1}, tracking="CH-1")
    for _ in range(2):
        redeliver(store, "shop", ext)
    market.update(ext)
    redeliver(store, "shop", ext)
    with database.read_session() as session:
        rows = session.scalars(select(Shipment)).all()
        assert [(s.origin, s.tracking_number, s.carrier) for s in rows] == [
            (ShipmentOrigin.CHANNEL, "CH-1", "UPS")
        ]
        assert [(line.quantity) for line in rows[0].lines] == [1]
    assert lines_of(database, order_id) == {f"{ext}-1": (3, 0, 1)}
    assert status_of(database, order_id) == "partially_shipped"
    assert on_hand(database)["A"] == 9
    assert _jobs(database) == []
    check_ledger(database)


def test_a_seller_shipping_on_the_channel_while_ours_is_unsent_counts_both(
    database: Database,
) -> None:
    store = make_store(database)
    ext, order_id = place(store, "shop", [("A", 3)])
    _ship(database, order_id, ("A", 1))
    store.channels["shop"].market.ship_on_channel(ext, {f"{ext}-1": 1}, tracking="CH-1")
    redeliver(store, "shop", ext)
    assert lines_of(database, order_id) == {f"{ext}-1": (3, 0, 2)}
    assert on_hand(database)["A"] == 8
    check_ledger(database)

    drain(store)  # ours reaches the channel: 3 shipped there, and here, one parcel each
    redeliver(store, "shop", ext)
    assert lines_of(database, order_id) == {f"{ext}-1": (3, 0, 2)}
    assert store.channels["shop"].market.order(ext).lines[0].quantity_shipped == 2
    with database.read_session() as session:
        assert session.scalar(select(Shipment.id).where(Shipment.external_id.is_(None))) is None
        assert len(session.scalars(select(Shipment)).all()) == 2


def test_our_parcel_reported_before_its_answer_is_recorded_is_the_same_parcel(
    database: Database,
) -> None:
    """The push landed but the worker died before keeping the channel's id: the channel's order
    shows the parcel. It is ours (same tracking and lines), not a second one; the job then ends
    without calling the channel again."""
    store = make_store(database)
    ext, order_id = place(store, "shop", [("A", 3)])
    shipment_id = _ship(database, order_id, ("A", 2), tracking="1Z-OURS")
    market = store.channels["shop"].market
    market.ship_parcel(ext, {f"{ext}-1": 2}, carrier="UPS", tracking="1Z-OURS")
    redeliver(store, "shop", ext)
    with database.read_session() as session:
        rows = session.scalars(select(Shipment)).all()
    assert [(r.id, r.origin, r.external_id) for r in rows] == [
        (shipment_id, ShipmentOrigin.HERE, market.order(ext).shipments[0].external_id)
    ]
    assert lines_of(database, order_id) == {f"{ext}-1": (3, 0, 2)}
    assert on_hand(database)["A"] == 8
    check_ledger(database)
    calls_before = dict(market.calls)
    drain(store)
    assert dict(market.calls) == calls_before
    with database.read_session() as session:
        assert session.scalars(
            select(OutboxJob.state).where(OutboxJob.kind == JobKind.SHIPMENT)
        ).all() == [JobState.DONE]


def test_an_order_is_found_by_our_id_or_the_channels_and_ambiguity_is_refused(
    database: Database,
) -> None:
    store = make_store(database)
    ext, order_id = place(store, "shop", [("A", 1)])
    with database.read_session() as session:
        number = session.get_one(Order, order_id).number
        assert number is not None
        assert resolve_order(session, ext) == order_id
        assert resolve_order(session, number) == order_id
        assert resolve_order(session, number.lstrip("#")) == order_id
        assert resolve_order(session, f"id:{order_id}") == order_id
        assert resolve_order(session, ext, "shop") == order_id
        with pytest.raises(UnknownOrderError):
            resolve_order(session, ext, "market")
        with pytest.raises(UnknownOrderError, match="no channel named"):
            resolve_order(session, ext, "nowhere")
    # The market's first order has the same number, #1, as the shop's.
    place(store, "market", [("B", 1)])
    with database.read_session() as session:
        with pytest.raises(AmbiguousOrderError, match="matches 2 orders") as raised:
            resolve_order(session, "#1")
        assert "id:N" in str(raised.value)
        assert resolve_order(session, "#1", "shop") == order_id
