"""`inventorySetQuantities`: absolute quantities with compare-and-swap (CHANNELS.md, "Inventory").

Every entry must carry `changeFromQuantity` since 2026-04 (explicit null opts out of the check);
the mutation is all or nothing: one stale entry (CHANGE_FROM_QUANTITY_STALE) or one invalid entry
and nothing applies. Sales queued by the control API (`/_sandbox/sell-before-next-set`) happen
just before the check, as a buyer checking out between the caller's read and its set would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox.shopify.executor import FieldError
from sandbox.shopify.model import QUANTITY_LIMIT, gid, parse_gid
from sandbox.shopify.store import Change, ShopStore
from sandbox.shopify.views import View, iso

MAX_INPUT_SIZE = 250
"""Array inputs hold at most this many items."""

REASONS = frozenset(
    {
        "correction",
        "cycle_count_available",
        "damaged",
        "movement_created",
        "movement_updated",
        "movement_received",
        "movement_canceled",
        "other",
        "promotion",
        "quality_control",
        "received",
        "reservation_created",
        "reservation_deleted",
        "reservation_updated",
        "restock",
        "safety_stock",
        "shrinkage",
    }
)
"""Reasons Shopify accepts for inventory changes."""


def user_error(typename: str, message: str, path: list[str], code: str | None = None) -> Any:
    """One entry of a payload's `userErrors` (`UserError` has no code)."""
    error: dict[str, Any] = {"__typename": typename, "field": path, "message": message}
    if typename != "UserError":
        error["code"] = code
    return error


def number_or_none(ref: Any, kind: str) -> int | None:
    """The number of a global id of `kind`; None for another kind or no id; FieldError for
    something that is not a global id."""
    parsed = parse_gid(str(ref)) if ref is not None else None
    if parsed is None:
        if ref is not None:
            raise FieldError(f"Invalid global id '{ref}'", "argumentLiteralsIncompatible")
        return None
    return parsed[1] if parsed[0] == kind else None


Refuse = Callable[[str, list[str], str], None]
Target = tuple[int, tuple[int, int], int, int | None]  # entry index, level key, quantity, expected


def _payload(errors: list[Any], group: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "__typename": "InventorySetQuantitiesPayload",
        "inventoryAdjustmentGroup": group,
        "userErrors": errors,
    }


def _targets(store: ShopStore, entries: list[dict[str, Any]], refuse: Refuse) -> list[Target]:
    """The entries that name a stocked level with a valid quantity; the others refused."""
    targets: list[Target] = []
    for i, entry in enumerate(entries):
        path = ["input", "quantities", str(i)]
        item = number_or_none(entry.get("inventoryItemId"), "InventoryItem")
        location = number_or_none(entry.get("locationId"), "Location")
        quantity = int(entry.get("quantity", 0))
        if item not in store.item_variant:
            refuse(
                "The specified inventory item could not be found.",
                [*path, "inventoryItemId"],
                "INVALID_INVENTORY_ITEM",
            )
        elif location not in store.locations:
            refuse(
                "The specified location could not be found.",
                [*path, "locationId"],
                "INVALID_LOCATION",
            )
        elif (item, location) not in store.levels:
            refuse(
                "The specified inventory item is not stocked at the location.",
                [*path, "locationId"],
                "ITEM_NOT_STOCKED_AT_LOCATION",
            )
        elif any(t[1] == (item, location) for t in targets):
            refuse(
                "The combination of inventoryItemId and locationId must be unique.",
                path,
                "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
            )
        elif quantity < 0:
            refuse(
                "The quantity can't be negative.", [*path, "quantity"], "INVALID_QUANTITY_NEGATIVE"
            )
        elif quantity > QUANTITY_LIMIT:
            refuse(
                "The total quantity can't be higher than 1,000,000,000.",
                [*path, "quantity"],
                "INVALID_QUANTITY_TOO_HIGH",
            )
        else:
            targets.append((i, (item, location), quantity, entry["changeFromQuantity"]))
    return targets


def set_quantities(view: View, args: dict[str, Any]) -> Any:
    """`inventorySetQuantities`: all entries apply, or none (stale or invalid)."""
    data = args["input"]
    entries: list[dict[str, Any]] = data.get("quantities") or []
    if len(entries) > MAX_INPUT_SIZE:
        raise FieldError(
            f"The input array size of {len(entries)} is greater than the maximum allowed of "
            f"{MAX_INPUT_SIZE}.",
            "MAX_INPUT_SIZE_EXCEEDED",
        )
    missing = [i for i, entry in enumerate(entries) if "changeFromQuantity" not in entry]
    if missing:
        raise FieldError(
            "changeFromQuantity is required on every quantity since 2026-04 (pass null to "
            f"skip the check): missing at input.quantities {missing}",
            "BAD_REQUEST",
        )
    name, store = str(data.get("name")), view.store
    errors: list[Any] = []

    def refuse(message: str, path: list[str], code: str) -> None:
        errors.append(user_error("InventorySetQuantitiesUserError", message, path, code))

    if name not in ("available", "on_hand"):
        refuse(
            "The quantity name must be either 'available' or 'on_hand'.",
            ["input", "name"],
            "INVALID_NAME",
        )
    if data.get("reason") not in REASONS:
        refuse("The specified reason is invalid.", ["input", "reason"], "INVALID_REASON")
    targets = _targets(store, entries, refuse)
    if errors:
        return _payload(errors)
    # Buyers queued by the control API check out now, between the caller's read and this set.
    store.run_pending_sales(store.item_variant[key[0]].sku for _, key, _, _ in targets)
    for i, key, _, expected in targets:
        if expected is not None and expected != store.levels[key].quantity(name):
            refuse(
                "The changeFromQuantity value does not match persisted value.",
                ["input", "quantities", str(i), "changeFromQuantity"],
                "CHANGE_FROM_QUANTITY_STALE",
            )
    if errors:
        return _payload(errors)
    changes: list[Change] = []
    for _, key, quantity, _ in targets:
        changes.extend(store.set_quantity(store.levels[key], name, quantity))
    store.levels_changed(changes)
    return _payload([], _group(view, data, changes))


def _group(view: View, data: dict[str, Any], changes: list[Change]) -> dict[str, Any]:
    store = view.store
    created = iso(store.now())

    def pick(args: dict[str, Any]) -> list[dict[str, Any]]:
        items = set(args.get("inventoryItemIds") or ())
        locations = set(args.get("locationIds") or ())
        names = set(args.get("quantityNames") or ())
        return [
            {
                "__typename": "InventoryChange",
                "name": c.name,
                "delta": c.delta,
                "quantityAfterChange": c.after,
                "ledgerDocumentUri": None,
                "item": view.item(c.level.item_id),
                "location": view.location(store.locations[c.level.location_id]),
            }
            for c in changes
            if (not items or gid("InventoryItem", c.level.item_id) in items)
            and (not locations or gid("Location", c.level.location_id) in locations)
            and (not names or c.name in names)
        ]

    return {
        "__typename": "InventoryAdjustmentGroup",
        "id": gid("InventoryAdjustmentGroup", store.next_id("InventoryAdjustmentGroup")),
        "createdAt": created,
        "reason": data.get("reason"),
        "referenceDocumentUri": data.get("referenceDocumentUri"),
        "app": None,
        "changes": pick,
    }
