"""Answers shaped like eBay's, for the connector's unit tests: the REST APIs through an
httpx.MockTransport handler, the Trading API through a requests transport adapter (ebaysdk sends
with requests), and one fake clock for token expiry, pacing and eBay's day.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import requests
from lxml import etree
from requests.adapters import BaseAdapter

from connectors.ebay import EbayConnector, EbaySettings

BASE_URL = "https://api.ebay.test"
TRADING_URL = "https://api.ebay.test/ws/api.dll"
IDENTITY_URL = "https://api.ebay.test/identity/v1/oauth2/token"
TOKEN_PATH = "/identity/v1/oauth2/token"
CLIENT_ID = "Example-Channels-PRD-0123456789"
CLIENT_SECRET = "PRD-secret-client-0f1e2d"
REFRESH_TOKEN = "v^1.1#refresh-token-canary-77"
NS = "urn:ebay:apis:eBLBaseComponents"
# A Wednesday noon in Los Angeles: eBay's day (Pacific time) has 12 hours left.
NOON_PACIFIC = datetime(2026, 3, 4, 20, 0, tzinfo=UTC)

Answer = dict[str, Any] | httpx.Response | Exception


class FakeClock:
    """Monotonic time and wall time that move only when the code under test sleeps (or the
    test says so)."""

    def __init__(self, wall: datetime = NOON_PACIFIC) -> None:
        self.now = 0.0
        self.start = wall
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return self.start + timedelta(seconds=self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)


class FakeEbay:
    """eBay's REST side: answers by (method, path); records every request."""

    def __init__(self) -> None:
        self.handlers: dict[tuple[str, str], Callable[[httpx.Request], Answer] | list[Answer]] = {}
        self.requests: list[httpx.Request] = []
        self.grants = 0
        self.token_lifetime = 7200

    def on(
        self, method: str, path: str, answer: Callable[[httpx.Request], Answer] | Answer
    ) -> None:
        """Answer every `method path` with `answer` (a function of the request, or fixed)."""
        self.handlers[(method, path)] = answer if callable(answer) else (lambda _r: answer)

    def queue(self, method: str, path: str, *answers: Answer) -> None:
        """Answer `method path` with these, one per call, in order."""
        self.handlers[(method, path)] = list(answers)

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]

    def api_calls(self) -> list[httpx.Request]:
        """Every request but the token endpoint's."""
        return [r for r in self.requests if r.url.path != TOKEN_PATH]

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = parse_qs(request.content.decode())
        self.grants += 1
        kind = "app" if form["grant_type"] == ["client_credentials"] else "user"
        return httpx.Response(
            200,
            json={
                "access_token": f"{kind}-token-{self.grants}",
                "expires_in": self.token_lifetime,
                "token_type": "User Access Token",
            },
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.method, request.url.path)
        handler = self.handlers.get(key)
        if handler is None and request.url.path == TOKEN_PATH:
            return self._token(request)
        if handler is None:
            raise AssertionError(f"unexpected call {request.method} {request.url.path}")
        answer = handler.pop(0) if isinstance(handler, list) else handler(request)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, json=answer)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def trading_answer(
    verb: str, body: str = "", *, ack: str = "Success", errors: list[dict[str, Any]] | None = None
) -> bytes:
    """A Trading API answer: `<VerbResponse>` with Ack, Errors and `body` (inner XML)."""
    parts = [f'<?xml version="1.0" encoding="UTF-8"?><{verb}Response xmlns="{NS}">']
    parts.append("<Timestamp>2026-03-04T20:00:00.000Z</Timestamp>")
    parts.append(f"<Ack>{ack}</Ack>")
    for error in errors or ():
        params = "".join(
            f'<ErrorParameters ParamID="{i}"><Value>{value}</Value></ErrorParameters>'
            for i, value in enumerate(error.get("params", ()))
        )
        parts.append(
            "<Errors>"
            f"<ShortMessage>{error.get('short', 'Error.')}</ShortMessage>"
            f"<LongMessage>{error.get('long', 'Error.')}</LongMessage>"
            f"<ErrorCode>{error['code']}</ErrorCode>"
            f"<SeverityCode>{error.get('severity', 'Error')}</SeverityCode>"
            f"{params}"
            f"<ErrorClassification>{error.get('classification', 'RequestError')}</ErrorClassification>"
            "</Errors>"
        )
    parts.append(f"<Version>1423</Version>{body}</{verb}Response>")
    return "".join(parts).encode()


TradingAnswer = bytes | tuple[int, bytes] | Exception


class FakeTrading(BaseAdapter):
    """The Trading API endpoint as a requests adapter: answers by call name; records each call's
    headers and parsed XML body."""

    def __init__(self) -> None:
        super().__init__()
        self.handlers: dict[str, Callable[[Any], TradingAnswer] | list[TradingAnswer]] = {
            "ReviseInventoryStatus": self.echo_revision
        }
        self.calls: list[tuple[str, dict[str, str], Any]] = []

    def on(self, verb: str, answer: Callable[[Any], TradingAnswer] | TradingAnswer) -> None:
        self.handlers[verb] = answer if callable(answer) else (lambda _root: answer)

    def queue(self, verb: str, *answers: TradingAnswer) -> None:
        self.handlers[verb] = list(answers)

    def of(self, verb: str) -> list[Any]:
        """The parsed request bodies of every `verb` call."""
        return [root for name, _h, root in self.calls if name == verb]

    @staticmethod
    def echo_revision(root: Any) -> bytes:
        """Success, confirming each InventoryStatus as sent."""
        body = "".join(
            etree.tostring(status, encoding="unicode")
            for status in root.findall(f"{{{NS}}}InventoryStatus")
        )
        return trading_answer("ReviseInventoryStatus", body.replace(f' xmlns="{NS}"', ""))

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        verb = str(request.headers["X-EBAY-API-CALL-NAME"])
        body = request.body if isinstance(request.body, bytes) else str(request.body).encode()
        root = etree.fromstring(body)
        self.calls.append((verb, dict(request.headers), root))
        handler = self.handlers.get(verb)
        if handler is None:
            raise AssertionError(f"unexpected Trading call {verb}")
        answer = handler.pop(0) if isinstance(handler, list) else handler(root)
        if isinstance(answer, Exception):
            raise answer
        status, content = answer if isinstance(answer, tuple) else (200, answer)
        response = requests.Response()
        response.status_code = status
        response._content = content
        response.headers["Content-Type"] = "text/xml"
        response.url = str(request.url)
        response.request = request
        response.reason = "OK" if status == 200 else "Error"
        return response

    def close(self) -> None:
        pass


def statuses(root: Any) -> list[dict[str, str]]:
    """The InventoryStatus containers of a ReviseInventoryStatus request, as dicts."""
    return [
        {etree.QName(child).localname: str(child.text) for child in status}
        for status in root.findall(f"{{{NS}}}InventoryStatus")
    ]


def connect(
    ebay: FakeEbay,
    trading: FakeTrading | None = None,
    clock: FakeClock | None = None,
    attempts: int = 4,
    **settings: Any,
) -> EbayConnector:
    """A connector against the fakes, with the fake clock driving it."""
    clock = clock or FakeClock()
    values: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
        "api_base_url": BASE_URL,
        "trading_api_url": TRADING_URL,
        "identity_url": IDENTITY_URL,
        **settings,
    }
    adapter = trading or FakeTrading()
    return EbayConnector(
        "ebay-main",
        EbaySettings(**values),
        transport=ebay.transport(),
        trading_adapter=lambda: adapter,
        attempts=attempts,
        sleep=clock.sleep,
        clock=clock,
        now=clock.wall,
    )


def json_of(request: httpx.Request) -> Any:
    return json.loads(request.content)
