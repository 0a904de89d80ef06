"""How every SP-API call is served, in the order Amazon's gateway decides things:

1. `x-amz-access-token` must be a live seller token from the sandbox's LWA: 403 Unauthorized
   otherwise (not counted as a call).
2. The call is counted under its operation and charged to the operation's token bucket: an empty
   bucket answers 429 QuotaExceeded, counted as `throttled` (a call over the bucket).
3. It suffers its planned fault (5xx, a forced 429, latency, a held answer, a lost write),
   counted as `faulted`.
4. A request matching one of the model's `x-amzn-api-sandbox` static examples gets that example.
5. Its parameters and body are checked against the model (when ../shared/specs has it): 400
   InvalidInput naming what is wrong.
6. The operation runs; with `check_responses` its answer is checked against the model, and a
   mismatch becomes a loud 500 (a sandbox bug, never hidden).

Every answer carries `x-amzn-RequestId`, and `x-amzn-RateLimit-Limit` with the operation's rate.
Array query parameters are read both comma-separated (Amazon's way) and repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.amazon.errors import ApiError, invalid_input
from sandbox.amazon.faults import Fault
from sandbox.amazon.specs import OperationSpec
from sandbox.amazon.throttle import rate_header

if TYPE_CHECKING:
    from sandbox.amazon.app import AmazonSandbox

log = logging.getLogger(__name__)


class Query:
    """A request's query parameters, arrays read comma-separated or repeated."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items

    def has(self, name: str) -> bool:
        """Whether the parameter was given at all."""
        return any(key == name for key, _ in self._items)

    def one(self, name: str) -> str | None:
        """The parameter's last value; None when absent."""
        values = [value for key, value in self._items if key == name]
        return values[-1] if values else None

    def strings(self, name: str) -> list[str]:
        """An array parameter's values (empty when absent)."""
        return [
            part
            for key, value in self._items
            if key == name
            for part in value.split(",")
            if part != ""
        ]


@dataclass
class Call:
    """One SP-API request, read."""

    path: dict[str, str]
    query: Query
    body: Any
    base_url: str
    """`http://host:port` of the socket that took the request (not the Host header: the SDK
    sends a mangled one for http:// endpoints)."""
    apply: bool = True
    """False when the call's fault is a lost write: answer success, change nothing."""


@dataclass
class Answer:
    """What an operation answers: a status and a JSON body (None: no body)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[["AmazonSandbox", Call], Answer]


def parse_time(name: str, value: str) -> datetime:
    """An ISO 8601 date-time with a zone; 400 naming the parameter otherwise."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise invalid_input(f"{name} must be an ISO 8601 date-time with a time zone, not {value!r}")
    return parsed


def _typed_values(spec: OperationSpec | None, call: Call) -> dict[str, Any]:
    """Parameter name -> value as the model types it (for matching static examples)."""
    values: dict[str, Any] = dict(call.path)
    if spec is None:
        return values
    for param in spec.parameters:
        name, where = param["name"], param["in"]
        if where == "query" and call.query.has(name):
            if param.get("type") == "array":
                values[name] = call.query.strings(name)
            elif param.get("type") == "integer":
                text = call.query.one(name) or ""
                values[name] = int(text) if text.lstrip("-").isdigit() else text
            else:
                values[name] = call.query.one(name)
        elif where == "body":
            values[name] = call.body
            values["body"] = call.body  # the examples name the body `body` whatever the model says
    return values


def _parameter_problems(spec: OperationSpec, call: Call) -> list[str]:
    problems = []
    for param in spec.parameters:
        name, where = param["name"], param["in"]
        if where == "body":
            if call.body is None:
                problems.append("the request needs a JSON body")
            else:
                problems.extend(f"body {p}" for p in spec.body_problems(call.body))
            continue
        if where != "query":
            continue
        if not call.query.has(name):
            if param.get("required"):
                problems.append(f"missing required parameter {name}")
            continue
        kind = param.get("type")
        values = call.query.strings(name) if kind == "array" else [call.query.one(name) or ""]
        allowed = param.get("items", {}).get("enum") if kind == "array" else param.get("enum")
        if kind == "array" and "maxItems" in param and len(values) > param["maxItems"]:
            problems.append(f"{name} takes at most {param['maxItems']} values")
        for value in values:
            if allowed and value not in allowed:
                problems.append(f"{name} value {value!r} is not one of {', '.join(allowed)}")
            elif kind == "integer" and not value.lstrip("-").isdigit():
                problems.append(f"{name} must be an integer, not {value!r}")
            elif kind == "boolean" and value not in ("true", "false"):
                problems.append(f"{name} must be true or false, not {value!r}")
            elif param.get("format") == "date-time":
                try:
                    parse_time(name, value)
                except ApiError as err:
                    problems.append(err.message)
    return problems


def _run(sandbox: AmazonSandbox, name: str, handler: Handler, call: Call) -> Answer:
    """Static example, checks, the operation; ApiError becomes its answer."""
    spec = sandbox.specs.operations.get(name) if sandbox.specs else None
    if spec is not None:
        values = _typed_values(spec, call)
        matching = [example for example in spec.examples if example.matches(values)]
        if matching:  # the example naming the most values wins (a NextToken page over page 1)
            example = max(matching, key=lambda e: len(e.parameters))
            sandbox.examples_served[name] += 1
            return Answer(example.status, example.response if example.response != {} else None)
    try:
        if spec is not None:
            problems = _parameter_problems(spec, call)
            if problems:
                raise invalid_input("; ".join(problems[:5]))
        sandbox.settle()
        answer = handler(sandbox, call)
    except ApiError as err:
        answer = Answer(err.status, err.body())
    if spec is not None and sandbox.options.check_responses:
        problems = spec.response_problems(answer.status, answer.body)
        if problems:
            log.error("sandbox answer to %s breaks Amazon's model: %s", name, problems)
            detail = "; ".join(problems)
            message = f"sandbox answer to {name} does not match Amazon's model: {detail}"
            return Answer(500, ApiError(500, "InternalFailure", message).body())
    return answer


async def _hold(request: Request, delay_s: float) -> None:
    """Keep the answer until the client gives up (disconnects) or `delay_s` passes."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay_s):
            while (await request.receive())["type"] != "http.disconnect":
                pass


def _respond(answer: Answer, headers: dict[str, str]) -> Response:
    merged = {**headers, **answer.headers}
    if answer.body is None:
        return Response(status_code=answer.status, headers=merged)
    return JSONResponse(answer.body, status_code=answer.status, headers=merged)


def _error(status: int, code: str, message: str, headers: dict[str, str]) -> Response:
    return _respond(Answer(status, ApiError(status, code, message).body()), headers)


def socket_base_url(request: Request) -> str:
    """`http://host:port` of the socket that took the request (the Host header may lie)."""
    server = request.scope.get("server")
    if server:
        host, port = server[0], server[1]
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}" if port is not None else f"http://{shown}"
    return str(request.base_url).rstrip("/")


def operation_route(path: str, method: str, name: str, handler: Handler) -> Route:
    """The route of one SP-API operation."""

    async def endpoint(request: Request) -> Response:
        sandbox: AmazonSandbox = request.app.state.sandbox
        headers = {"x-amzn-RequestId": str(uuid.uuid4())}
        denial = sandbox.issuer.denial(request.headers.get("x-amz-access-token"))
        if denial is not None:
            sandbox.unauthorized[name] += 1
            return _respond(
                Answer(
                    403,
                    ApiError(
                        403, "Unauthorized", "Access to requested resource is denied.", denial
                    ).body(),
                ),
                headers,
            )
        sandbox.calls[name] += 1
        plan = sandbox.throttle.plan(name)
        if plan is not None:
            headers["x-amzn-RateLimit-Limit"] = rate_header(plan)
        if not sandbox.throttle.take(name):
            sandbox.throttled[name] += 1
            return _error(
                429, "QuotaExceeded", "You exceeded your quota for the requested resource.", headers
            )
        faults = sandbox.faults
        fault = faults.plan(name, sandbox.fault_rng)
        latency_ms = faults.rates_for(name).latency_ms
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)
        settings = faults.settings
        if fault is not Fault.NONE:
            sandbox.faulted[name] += 1
        if fault is Fault.TOO_MANY:
            return _error(
                429, "QuotaExceeded", "You exceeded your quota for the requested resource.", headers
            )
        if fault is Fault.SERVER_ERROR:
            return _error(
                settings.error_status,
                "InternalFailure",
                "We encountered an internal error. Please try again.",
                headers,
            )
        if fault is Fault.TIMEOUT and not settings.timeout_applies:
            await _hold(request, settings.timeout_delay_s)
            return _error(503, "ServiceUnavailable", "Gateway timeout.", headers)
        raw = await request.body()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return _error(
                    400, "InvalidInput", "The request body is not valid UTF-8 JSON.", headers
                )
        call = Call(
            path=dict(request.path_params),
            query=Query(list(request.query_params.multi_items())),
            body=body,
            base_url=socket_base_url(request),
            apply=fault is not Fault.LOST,
        )
        answer = _run(sandbox, name, handler, call)
        if fault is Fault.TIMEOUT:
            await _hold(request, settings.timeout_delay_s)
        return _respond(answer, headers)

    endpoint.__name__ = name
    return Route(path, endpoint, methods=[method])
