"""Request and response helpers shared by the marketplace API and the control API."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from sandbox.reference.channel import ApiError, SandboxChannel

M = TypeVar("M", bound=BaseModel)

CHANNELS_KEY = "channels"
"""Where the app keeps its channels: `app.state.channels`, name -> SandboxChannel."""


def error_response(err: ApiError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """`{"error": code, "message": ...}` with the status, plus any extra fields."""
    return JSONResponse(
        {"error": err.code, "message": err.message, **err.extra},
        status_code=err.status,
        headers=dict(headers or {}),
    )


def channel_of(request: Request) -> SandboxChannel:
    """The channel named by the URL's first segment; ApiError 404 when there is none."""
    name = request.path_params["channel"]
    channels: dict[str, SandboxChannel] = getattr(request.app.state, CHANNELS_KEY)
    channel = channels.get(name)
    if channel is None:
        raise ApiError(404, "not_found", f"no channel {name}")
    return channel


def parse_body(raw: bytes, model: type[M]) -> M:
    """A JSON body validated by `model`; ApiError 400/422 naming what is wrong, never echoing it."""
    try:
        payload = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, "bad_request", "body is not valid UTF-8 JSON") from err
    if not isinstance(payload, dict):
        raise ApiError(400, "bad_request", "body must be a JSON object")
    try:
        return model.model_validate(payload)
    except ValidationError as err:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in err.errors(include_url=False, include_input=False)
        ]
        raise ApiError(422, "invalid", "; ".join(problems)) from err


def query_int(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    """An integer query parameter within bounds; ApiError 422 naming it otherwise."""
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(422, "invalid", f"{name} must be an integer from {low} to {high}")
    return value


def ok(payload: Any, status: int = 200) -> JSONResponse:
    """A JSON success."""
    return JSONResponse(payload, status_code=status)
