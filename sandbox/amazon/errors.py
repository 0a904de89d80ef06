"""The sandbox's two refusals: an SP-API error answer in Amazon's shape, and a control-API one.

ApiError     -> HTTP status + `{"errors": [{"code", "message", "details"?}]}` (the models'
                ErrorList; v0's ConfirmShipmentErrorResponse has the same shape)
StoreError   -> HTTP status + `{"error": message}` on `/_sandbox/` routes
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An SP-API call refused, in Amazon's error shape."""

    def __init__(self, status: int, code: str, message: str, details: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        """`{"errors": [...]}`."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"errors": [error]}


def invalid_input(message: str, details: str | None = None) -> ApiError:
    """A 400 InvalidInput naming what is wrong."""
    return ApiError(400, "InvalidInput", message, details)


def not_found(message: str) -> ApiError:
    """A 404 NotFound."""
    return ApiError(404, "NotFound", message)


class StoreError(Exception):
    """A control-API request refused (bad body 400/422, unknown thing 404, refused change 409)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
