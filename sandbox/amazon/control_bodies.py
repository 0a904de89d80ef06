"""Request bodies of the control API (control.py): strict, so an unknown field or a wrong type
is refused with the field named, and nothing is changed."""

from __future__ import annotations

import json
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictInt, StringConstraints
from pydantic import ValidationError as PydanticValidationError

from sandbox.amazon.errors import StoreError
from sandbox.amazon.model import QUANTITY_LIMIT, Buyer

M = TypeVar("M", bound=BaseModel)
_STRICT = ConfigDict(extra="forbid", frozen=True)
Text = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Units = Annotated[StrictInt, Field(ge=1, le=1_000_000)]
Quantity = Annotated[StrictInt, Field(ge=0, le=QUANTITY_LIMIT)]
Price = Annotated[str, StringConstraints(pattern=r"^\d{1,9}(\.\d{1,2})?$")]


class AddressBody(BaseModel):
    """Where the parcel goes."""

    model_config = _STRICT

    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state_or_region: str | None = None
    postal_code: str | None = None
    country_code: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None


class BuyerBody(BaseModel):
    """A sandbox buyer (buyer data: kept in memory, never logged)."""

    model_config = _STRICT

    name: str | None = None
    email: str | None = None
    phone: str | None = None
    company: str | None = None
    address: AddressBody | None = None

    def buyer(self) -> Buyer:
        """The store's Buyer record."""
        where = self.address or AddressBody()
        return Buyer(
            name=self.name,
            email=self.email,
            phone=self.phone,
            company=self.company,
            address_line1=where.line1,
            address_line2=where.line2,
            city=where.city,
            state_or_region=where.state_or_region,
            postal_code=where.postal_code,
            country_code=where.country_code,
        )


class LineBody(BaseModel):
    """A SKU and how many."""

    model_config = _STRICT

    sku: Text
    quantity: Units


class PlaceOrderBody(BaseModel):
    """Body of `POST /_sandbox/orders`."""

    model_config = _STRICT

    lines: list[LineBody] = Field(min_length=1, max_length=100)
    buyer: BuyerBody | None = None
    marketplace_id: Text | None = None
    pending: bool = Field(
        default=False, description="Payment not yet authorised: no prices, stock not committed."
    )
    shipping_price: Price = "0.00"


class ListingBody(BaseModel):
    """One listing to seed."""

    model_config = _STRICT

    sku: Text
    quantity: Quantity = 0
    price: Price = "10.00"
    title: Text | None = None
    product_type: Text = "PRODUCT"
    fulfillment_channel: Annotated[
        str, StringConstraints(pattern=r"^(DEFAULT|AMAZON_[A-Z]{2})$")
    ] = "DEFAULT"


class ListingsBody(BaseModel):
    """Body of `POST /_sandbox/listings`."""

    model_config = _STRICT

    listings: list[ListingBody] = Field(min_length=1, max_length=100_000)


class InventoryBody(RootModel[dict[str, Quantity]]):
    """Body of `POST /_sandbox/inventory`: SKU -> quantity, as the seller sets it in Seller
    Central."""


class OrderRefBody(BaseModel):
    """Body of `POST /_sandbox/payment`."""

    model_config = _STRICT

    order_id: Text


class CancelBody(BaseModel):
    """Body of `POST /_sandbox/cancel`."""

    model_config = _STRICT

    order_id: Text
    buyer_request: bool = Field(
        default=False, description="Only the buyer's request to cancel (BuyerRequestedChange)."
    )
    reason: Text = "Cancelled by the seller"


class AuthBody(BaseModel):
    """Body of `POST /_sandbox/auth`."""

    model_config = _STRICT

    action: Literal["revoke", "restore", "expire_access_tokens"]


def parse_body(raw: bytes, model: type[M]) -> M:
    """A JSON body validated by `model`; StoreError 400/422 naming what is wrong."""
    try:
        payload = json.loads(raw) if raw else None
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
