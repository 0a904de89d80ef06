"""The Sell Inventory API, for listings of the Inventory world: bulkUpdatePriceQuantity (the
stock push), getInventoryItems, bulkGetInventoryItem and getOffers (what a connector reads to
bind listings and check what eBay shows).

bulkUpdatePriceQuantity takes `{"requests": [{"sku", "shipToLocationAvailability"?: {"quantity"},
"offers"?: [{"offerId", "availableQuantity"?, "price"?: {"value", "currency"}}]}]}`, up to the
batch maximum (25 by default), and answers HTTP 200 with one `responses` entry per offer (or per
SKU when no offer is named), each with its own `statusCode`, `errors` and `warnings`: a refused
entry leaves the others applied. The sandbox keeps one offer per SKU and one quantity for both,
so the offer's `availableQuantity` wins when both are given. A Trading-world listing is refused:
Inventory-API calls cannot revise it.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.ebay.const import (
    BULK_GET_MAX,
    ERR_INVENTORY_INVALID,
    ERR_INVENTORY_NOT_FOUND,
    ERR_REVISION_LIMIT_REST,
    INVENTORY_ITEMS_MAX_LIMIT,
    INVENTORY_SCOPE,
)
from sandbox.ebay.model import QUANTITY_LIMIT, Listing, World
from sandbox.ebay.payloads import inventory_item_json, offer_json
from sandbox.ebay.rest import ApiError, json_body, rest_call
from sandbox.ebay.revisions import Change, Outcome, revise

if TYPE_CHECKING:
    from sandbox.ebay.app import EbaySandbox

_DOMAIN = "API_INVENTORY"


def _error(error_id: int, message: str) -> dict[str, Any]:
    return {"errorId": error_id, "domain": _DOMAIN, "category": "REQUEST", "message": message}


def _bad(message: str) -> ApiError:
    return ApiError(400, ERR_INVENTORY_INVALID, message, domain=_DOMAIN)


def _quantity(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= QUANTITY_LIMIT:
        raise _bad(f"{where} must be an integer from 0 to {QUANTITY_LIMIT}.")
    return value


def _price(value: object, where: str, currency: str) -> Decimal:
    if not isinstance(value, dict) or value.get("currency") != currency:
        raise _bad(f"{where} must be {{value, currency}} in {currency}.")
    try:
        amount = Decimal(str(value.get("value")))
    except InvalidOperation as err:
        raise _bad(f"{where}.value is not an amount.") from err
    if not amount.is_finite() or amount <= 0:
        raise _bad(f"{where}.value must be positive.")
    return amount.quantize(Decimal("0.01"))


class _Entry:
    """One request of the batch, checked, with where its answers go."""

    def __init__(self, sandbox: EbaySandbox, index: int, request: object) -> None:
        where = f"requests[{index}]"
        if not isinstance(request, dict) or not isinstance(request.get("sku"), str):
            raise _bad(f"{where}.sku is required.")
        self.sku: str = request["sku"]
        self.quantity: int | None = None
        self.price: Decimal | None = None
        self.offer_ids: list[str] = []
        ship_to = request.get("shipToLocationAvailability")
        if ship_to is not None:
            if not isinstance(ship_to, dict):
                raise _bad(f"{where}.shipToLocationAvailability must be an object.")
            self.quantity = _quantity(ship_to.get("quantity"), f"{where}.shipTo…quantity")
        offers = request.get("offers") or []
        if not isinstance(offers, list):
            raise _bad(f"{where}.offers must be a list.")
        for number, offer in enumerate(offers):
            at = f"{where}.offers[{number}]"
            if not isinstance(offer, dict) or not isinstance(offer.get("offerId"), str):
                raise _bad(f"{at}.offerId is required.")
            self.offer_ids.append(offer["offerId"])
            if "availableQuantity" in offer:
                self.quantity = _quantity(offer["availableQuantity"], f"{at}.availableQuantity")
            if "price" in offer:
                self.price = _price(offer["price"], f"{at}.price", sandbox.store.currency)
        if self.quantity is None and self.price is None:
            raise _bad(f"{where} changes neither quantity nor price.")

    def answers(self, status: int, errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Its `responses` entries: one per offer named, else one for the SKU."""
        base = {"sku": self.sku, "statusCode": status, "errors": errors, "warnings": []}
        if not self.offer_ids:
            return [base]
        return [{"offerId": offer_id, **base} for offer_id in self.offer_ids]


def _refusal(listing: Listing | None, entry: _Entry) -> tuple[int, dict[str, Any]] | None:
    if listing is None:
        return 404, _error(ERR_INVENTORY_NOT_FOUND, f"SKU {entry.sku} is not available.")
    if listing.world is not World.INVENTORY:
        return 400, _error(
            ERR_INVENTORY_INVALID,
            "This listing was not created with the Inventory API; revise it with the Trading "
            "API (ReviseInventoryStatus).",
        )
    if any(offer_id != listing.offer_id for offer_id in entry.offer_ids):
        return 404, _error(ERR_INVENTORY_NOT_FOUND, "This Offer is not available.")
    return None


def _bulk_update(sandbox: EbaySandbox, request: Request, raw: bytes) -> Response:
    body = json_body(raw)
    requests = body.get("requests") if isinstance(body, dict) else None
    maximum = sandbox.options.bulk_update_max
    if not isinstance(requests, list) or not 1 <= len(requests) <= maximum:
        raise _bad(f"requests must hold 1 to {maximum} entries.")
    entries = [_Entry(sandbox, index, item) for index, item in enumerate(requests)]
    store = sandbox.store
    responses: list[dict[str, Any]] = []
    for entry in entries:
        listing = store.listings.get(entry.sku)
        refused = _refusal(listing, entry)
        if refused is not None:
            responses.extend(entry.answers(refused[0], [refused[1]]))
            continue
        assert listing is not None
        (outcome,) = revise(store, sandbox.limits, [Change(listing, entry.quantity, entry.price)])
        if outcome is Outcome.LIMIT:
            error = _error(
                ERR_REVISION_LIMIT_REST,
                "This listing has reached the maximum number of revisions allowed today.",
            )
            responses.extend(entry.answers(400, [error]))
        elif outcome is Outcome.ENDED:
            error = _error(ERR_INVENTORY_INVALID, "The listing has ended.")
            responses.extend(entry.answers(400, [error]))
        else:
            responses.extend(entry.answers(200, []))
    return JSONResponse({"responses": responses})


def _page(request: Request, name: str, default: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) > high:
        raise _bad(f"{name} must be an integer from 0 to {high}.")
    return int(text)


def _inventory_items(sandbox: EbaySandbox, request: Request, raw: bytes) -> Response:
    limit = max(_page(request, "limit", 25, INVENTORY_ITEMS_MAX_LIMIT), 1)
    offset = _page(request, "offset", 0, 10**9)
    items = [
        listing
        for _, listing in sorted(sandbox.store.listings.items())
        if listing.world is World.INVENTORY
    ]
    locale = sandbox.options.locale
    base = f"{sandbox.base_url(request)}/sell/inventory/v1/inventory_item"
    body: dict[str, Any] = {
        "href": f"{base}?{urlencode({'limit': limit, 'offset': offset})}",
        "limit": limit,
        "size": len(items[offset : offset + limit]),
        "total": len(items),
        "inventoryItems": [inventory_item_json(i, locale) for i in items[offset : offset + limit]],
    }
    if offset + limit < len(items):
        body["next"] = f"{base}?{urlencode({'limit': limit, 'offset': offset + limit})}"
    return JSONResponse(body)


def _bulk_get(sandbox: EbaySandbox, request: Request, raw: bytes) -> Response:
    body = json_body(raw)
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not 1 <= len(requests) <= BULK_GET_MAX:
        raise _bad(f"requests must hold 1 to {BULK_GET_MAX} entries.")
    responses: list[dict[str, Any]] = []
    for index, entry in enumerate(requests):
        sku = entry.get("sku") if isinstance(entry, dict) else None
        if not isinstance(sku, str) or not sku:
            raise _bad(f"requests[{index}].sku is required.")
        listing = sandbox.store.listings.get(sku)
        if listing is None or listing.world is not World.INVENTORY:
            error = _error(ERR_INVENTORY_NOT_FOUND, f"SKU {sku} is not available.")
            responses.append({"sku": sku, "statusCode": 404, "errors": [error], "warnings": []})
            continue
        item = inventory_item_json(listing, sandbox.options.locale)
        responses.append({"sku": sku, "statusCode": 200, "inventoryItem": item})
    return JSONResponse({"responses": responses})


def _offers(sandbox: EbaySandbox, request: Request, raw: bytes) -> Response:
    sku = request.query_params.get("sku")
    if not sku:
        raise _bad("sku is required.")
    listing = sandbox.store.listings.get(sku)
    store = sandbox.store
    marketplace = request.query_params.get("marketplace_id", store.marketplace_id)
    if (
        listing is None
        or listing.world is not World.INVENTORY
        or marketplace != store.marketplace_id
    ):
        raise ApiError(404, ERR_INVENTORY_NOT_FOUND, "This Offer is not available.", domain=_DOMAIN)
    offer = offer_json(listing, store.currency, store.marketplace_id)
    return JSONResponse({"offers": [offer], "size": 1, "total": 1, "limit": 25})


def _endpoint(operation: str, apply: Callable[[EbaySandbox, Request, bytes], Response]) -> Any:
    async def endpoint(request: Request) -> Response:
        return await rest_call(request, operation, scope=INVENTORY_SCOPE, apply=apply)

    endpoint.__name__ = operation
    return endpoint


def inventory_routes() -> list[Route]:
    """The Inventory API's routes."""
    base = "/sell/inventory/v1"
    return [
        Route(
            f"{base}/bulk_update_price_quantity",
            _endpoint("bulkUpdatePriceQuantity", _bulk_update),
            methods=["POST"],
        ),
        Route(
            f"{base}/inventory_item",
            _endpoint("getInventoryItems", _inventory_items),
            methods=["GET"],
        ),
        Route(
            f"{base}/bulk_get_inventory_item",
            _endpoint("bulkGetInventoryItem", _bulk_get),
            methods=["POST"],
        ),
        Route(f"{base}/offer", _endpoint("getOffers", _offers), methods=["GET"]),
    ]
