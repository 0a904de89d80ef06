"""Request bodies of the control API (control.py): strict, so an unknown field or a wrong type
is refused with the field named, and nothing is changed."""

from __future__ import annotations

import json
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictInt, StringConstraints
from pydantic import ValidationError as PydanticValidationError

from sandbox.shopify.model import QUANTITY_LIMIT, Buyer
from sandbox.shopify.store import StoreError

M = TypeVar("M", bound=BaseModel)
_STRICT = ConfigDict(extra="forbid", frozen=True)
Text = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Units = Annotated[StrictInt, Field(ge=1, le=1_000_000)]
Quantity = Annotated[StrictInt, Field(ge=0, le=QUANTITY_LIMIT)]
Price = Annotated[str, StringConstraints(pattern=r"^\d{1,9}(\.\d{1,2})?$")]


class AddressBody(BaseModel):
    """Where the parcel goes."""

    model_config = _STRICT

    address1: str | None = None
    address2: str | None = None
    city: str | None = None
    province: str | None = None
    province_code: str | None = None
    zip: str | None = None
    country: str | None = None
    country_code: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None


class BuyerBody(BaseModel):
    """A sandbox buyer (buyer data: kept in memory, never logged)."""

    model_config = _STRICT

    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    company: str | None = None
    address: AddressBody | None = None

    def buyer(self) -> Buyer:
        """The store's Buyer record."""
        first, last = self.first_name, self.last_name
        if self.name and not (first or last):
            first, _, last = self.name.partition(" ")
        where = self.address or AddressBody()
        return Buyer(
            first_name=first or None,
            last_name=last or None,
            email=self.email,
            phone=self.phone,
            company=self.company,
            **where.model_dump(),
        )


class LineBody(BaseModel):
    """A SKU and how many."""

    model_config = _STRICT

    sku: Text
    quantity: Units


class PlaceOrderBody(BaseModel):
    """Body of `POST /_sandbox/orders`."""

    model_config = _STRICT

    lines: list[LineBody] = Field(min_length=1, max_length=250)
    buyer: BuyerBody | None = None
    shipping_price: Price = "0.00"


class RaceBody(BaseModel):
    """Body of `POST /_sandbox/sell-before-next-set`."""

    model_config = _STRICT

    sku: Text
    quantity: Units
    buyer: BuyerBody | None = None


class ProductBody(BaseModel):
    """One variant to seed."""

    model_config = _STRICT

    sku: Text
    price: Price = "10.00"
    title: Text = "Default Title"
    product_title: Text | None = None
    stock: Quantity | dict[str, Quantity] = 0
    oversell: bool = False


class ProductsBody(BaseModel):
    """Body of `POST /_sandbox/products`."""

    model_config = _STRICT

    products: list[ProductBody] = Field(min_length=1, max_length=10_000)


class LocationBody(BaseModel):
    """Body of `POST /_sandbox/locations`."""

    model_config = _STRICT

    name: Text


class InventoryBody(RootModel[dict[str, Quantity | dict[str, Quantity]]]):
    """Body of `POST /_sandbox/inventory`: SKU -> units (at its first location) or per location."""


class TrackingBody(BaseModel):
    """Tracking of an admin fulfilment."""

    model_config = _STRICT

    company: Text | None = None
    number: Text | None = None
    url: Annotated[str, StringConstraints(max_length=1024)] | None = None


class ShipBody(BaseModel):
    """Body of `POST /_sandbox/ship`."""

    model_config = _STRICT

    order_id: Text
    tracking: TrackingBody | None = None
    notify_customer: bool = False


class CancelBody(BaseModel):
    """Body of `POST /_sandbox/cancel`."""

    model_config = _STRICT

    order_id: Text
    restock: bool = True
    refund: bool = True
    reason: Literal["CUSTOMER", "DECLINED", "FRAUD", "INVENTORY", "STAFF", "OTHER"] = "CUSTOMER"


class BucketBody(BaseModel):
    """Body of `POST /_sandbox/bucket`."""

    model_config = _STRICT

    restore_rate: float | None = Field(default=None, gt=0, le=100_000)
    maximum_available: float | None = Field(default=None, gt=0, le=1_000_000)
    currently_available: float | None = Field(default=None, ge=0, le=1_000_000)


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
