"""Request bodies of the control API (control.py): strict, so an unknown field or a wrong type
is refused with the field named, and nothing is changed."""

from __future__ import annotations

import json
from typing import Annotated, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictInt, StringConstraints
from pydantic import ValidationError as PydanticValidationError

from sandbox.ebay.model import QUANTITY_LIMIT
from sandbox.ebay.notifications import TOPICS
from sandbox.ebay.store import BuyerDetails, StoreError

M = TypeVar("M", bound=BaseModel)
_STRICT = ConfigDict(extra="forbid", frozen=True)
Text = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Sku = Annotated[str, StringConstraints(min_length=1, max_length=50)]  # eBay's SKU maximum
Units = Annotated[StrictInt, Field(ge=1, le=QUANTITY_LIMIT)]
Quantity = Annotated[StrictInt, Field(ge=0, le=QUANTITY_LIMIT)]
Count = Annotated[StrictInt, Field(ge=0, le=10**9)]
Price = Annotated[str, StringConstraints(pattern=r"^\d{1,9}(\.\d{1,2})?$")]
Topic = Literal["ORDER_CONFIRMATION", "ITEM_MARKED_SHIPPED", "MARKETPLACE_ACCOUNT_DELETION"]
Api = Literal["fulfillment", "inventory", "notification", "trading"]
assert set(get_args(Topic)) == TOPICS


class ListingBody(BaseModel):
    """One SKU to put on sale."""

    model_config = _STRICT

    sku: Sku
    quantity: Quantity
    price: Price = "10.00"
    world: Literal["trading", "inventory"] = "trading"
    title: Text | None = None
    group: Text | None = Field(
        default=None, description="Trading only: SKUs of one group are variations of a listing."
    )
    out_of_stock_control: bool = True


class ListingsBody(BaseModel):
    """Body of `POST /_sandbox/listings`."""

    model_config = _STRICT

    listings: list[ListingBody] = Field(min_length=1, max_length=10_000)


class AddressBody(BaseModel):
    """Where the parcel goes."""

    model_config = _STRICT

    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    state_or_province: str | None = None
    postal_code: str | None = None
    country_code: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None


class BuyerBody(BaseModel):
    """A sandbox buyer (buyer data: kept in memory, never logged)."""

    model_config = _STRICT

    username: Text | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    address: AddressBody | None = None

    def details(self) -> BuyerDetails:
        """The store's view of what the buyer typed."""
        where = self.address or AddressBody()
        return BuyerDetails(
            username=self.username,
            full_name=self.name,
            email=self.email,
            phone=self.phone,
            **where.model_dump(),
        )


class LineBody(BaseModel):
    """A SKU and how many."""

    model_config = _STRICT

    sku: Sku
    quantity: Units


class PlaceOrderBody(BaseModel):
    """Body of `POST /_sandbox/orders`."""

    model_config = _STRICT

    lines: list[LineBody] = Field(min_length=1, max_length=100)
    buyer: BuyerBody | None = None
    delivery_cost: Price = "0.00"


class InventoryBody(RootModel[dict[Sku, Quantity]]):
    """Body of `POST /_sandbox/inventory`: SKU -> quantity, as the seller sets it in Seller Hub."""


class ShipBody(BaseModel):
    """Body of `POST /_sandbox/ship`."""

    model_config = _STRICT

    order_id: Text
    carrier: Text | None = None
    tracking: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{1,40}$")] | None = None


class OrderRefBody(BaseModel):
    """Body of `POST /_sandbox/cancel`."""

    model_config = _STRICT

    order_id: Text


class NotificationsBody(BaseModel):
    """Body of `POST /_sandbox/notifications`: where to push, checked by eBay's challenge."""

    model_config = _STRICT

    endpoint: Annotated[str, StringConstraints(pattern=r"^https?://\S{1,2000}$")]
    verification_token: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{32,80}$")]
    topics: list[Topic] | None = Field(default=None, description="All topics when omitted.")


class AccountDeletionBody(BaseModel):
    """Body of `POST /_sandbox/account-deletion`."""

    model_config = _STRICT

    user_id: Text


class QuotasBody(BaseModel):
    """Body of `POST /_sandbox/quotas`."""

    model_config = _STRICT

    quotas: dict[Api, Count] | None = None
    used: dict[Api, Count] | None = None
    revisions_per_listing: Count | None = None
    revisions: dict[Text, Count] | None = Field(
        default=None, description="Item id -> revisions made today."
    )


def parse_body(raw: bytes, model: type[M]) -> M:
    """A JSON body validated by `model`; StoreError 400/422 naming what is wrong."""
    try:
        payload = json.loads(raw) if raw else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StoreError(400, "body is not valid UTF-8 JSON") from err
    if not isinstance(payload, dict):
        raise StoreError(400, "body must be a JSON object")
    try:
        return model.model_validate(payload)
    except PydanticValidationError as err:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in err.errors(include_url=False, include_input=False)
        ]
        raise StoreError(422, "; ".join(problems)) from err
