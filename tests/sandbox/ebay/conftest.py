"""A sandbox eBay account driven in-process through httpx.ASGITransport, with a fake clock and a
recording notification endpoint (an httpx.MockTransport the dispatcher calls) that answers
eBay's challenge the way a receiver must."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest

from sandbox.ebay import EbayOptions, EbaySandbox, create_app

CLIENT_ID = "Sandbox-chsync-SBX-test01"
CLIENT_SECRET = "SBX-test-client-secret"
REFRESH_TOKEN = "v^1.1#i^1#r^1#test-refresh-token"
VERIFICATION_TOKEN = "sandbox-verification-token-0123456789abcdef"
HOOK_URL = "https://sync.test/webhooks/ebay-main"
TRADING_HEADERS = {"X-EBAY-API-SITEID": "0", "X-EBAY-API-COMPATIBILITY-LEVEL": "1423"}
NS = "{urn:ebay:apis:eBLBaseComponents}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    """Wall and monotonic time that move only when told."""

    def __init__(self) -> None:
        self.wall = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


@dataclass
class Receiver:
    """A notification endpoint: answers challenges (right unless told otherwise), records
    POSTs, answers them with `statuses` in turn, then 204."""

    token: str = VERIFICATION_TOKEN
    url: str = HOOK_URL
    challenges: list[str] = field(default_factory=list)
    posts: list[httpx.Request] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    wrong_challenge: bool = False

    async def handle(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        if request.method == "GET":
            code = request.url.params["challenge_code"]
            self.challenges.append(code)
            digest = hashlib.sha256((code + self.token + self.url).encode()).hexdigest()
            return httpx.Response(
                200, json={"challengeResponse": "0" * 64 if self.wrong_challenge else digest}
            )
        self.posts.append(request)
        return httpx.Response(self.statuses.pop(0) if self.statuses else 204)

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.posts]


@dataclass
class Account:
    """One sandbox account and an HTTP client on it."""

    http: httpx.AsyncClient
    sandbox: EbaySandbox
    clock: FakeClock
    receiver: Receiver

    async def control(self, method: str, path: str, body: object = None, status: int = 0) -> Any:
        """Call `/_sandbox{path}`; its JSON, checking the status (any 2xx when 0)."""
        response = await self.http.request(method, f"/_sandbox{path}", json=body)
        if status:
            assert response.status_code == status, response.text
        else:
            assert response.is_success, response.text
        return response.json()

    async def token(self, grant: str = "refresh_token", **form: str) -> str:
        """A fresh access token (user token by default)."""
        data = {"grant_type": grant, **form}
        if grant == "refresh_token":
            data.setdefault("refresh_token", REFRESH_TOKEN)
        response = await self.http.post(
            "/identity/v1/oauth2/token", data=data, headers={"Authorization": basic()}
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    async def rest(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """A REST call with the seller's user token (fetched when not given)."""
        token = token or await self.token()
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        return await self.http.request(method, path, headers=headers, **kwargs)

    async def trading(self, call: str, inner: str, *, token: str | None = None) -> httpx.Response:
        """A Trading call: `<{call}Request>inner</…>` with the IAF token."""
        token = token or await self.token()
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<{call}Request xmlns="urn:ebay:apis:eBLBaseComponents">{inner}</{call}Request>'
        )
        headers = {**TRADING_HEADERS, "X-EBAY-API-CALL-NAME": call, "X-EBAY-API-IAF-TOKEN": token}
        return await self.http.post("/ws/api.dll", content=body, headers=headers)

    async def seed(self, *listings: dict[str, Any]) -> dict[str, Any]:
        """Put these listings on sale; their ids by SKU."""
        created: dict[str, Any] = await self.control(
            "POST", "/listings", {"listings": list(listings)}, status=201
        )
        return created

    async def order(self, buyer: dict[str, Any] | None = None, /, **lines: int) -> dict[str, Any]:
        """A buyer orders these SKUs; the control API's answer."""
        body = {
            "lines": [{"sku": sku, "quantity": n} for sku, n in lines.items()],
            "buyer": buyer
            if buyer is not None
            else {
                "username": "jo_buyer",
                "name": "Jo Buyer",
                "email": "jo@example.com",
                "address": {
                    "address_line1": "1 Main St",
                    "city": "Springfield",
                    "country_code": "US",
                },
            },
        }
        placed: dict[str, Any] = await self.control("POST", "/orders", body, status=201)
        return placed

    async def subscribe(self) -> dict[str, Any]:
        """Point notifications at the receiver (eBay's challenge runs)."""
        answer: dict[str, Any] = await self.control(
            "POST",
            "/notifications",
            {"endpoint": HOOK_URL, "verification_token": VERIFICATION_TOKEN},
        )
        return answer

    async def settle(self, timeout_s: float = 10.0) -> None:
        """Until every notification delivery is done."""
        with anyio.fail_after(timeout_s):
            await self.sandbox.notifier.wait_idle()


def basic(client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> str:
    """The token endpoint's Basic Authorization value."""
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


AccountFactory = Callable[..., Any]


@pytest.fixture
async def make_account() -> AsyncIterator[AccountFactory]:
    """Build accounts: `await make_account(**EbayOptions fields)`; closed at the end."""
    opened: list[Account] = []

    async def build(**options: Any) -> Account:
        clock = FakeClock()
        receiver = Receiver()
        app = create_app(
            EbayOptions(
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                refresh_token=REFRESH_TOKEN,
                **options,
            ),
            clock=clock,
            notify_transport=httpx.MockTransport(receiver.handle),
        )
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ebay")
        account = Account(http, app.state.sandbox, clock, receiver)
        opened.append(account)
        return account

    yield build
    for account in opened:
        await account.sandbox.aclose()
        await account.http.aclose()


@pytest.fixture
async def account(make_account: AccountFactory) -> Account:
    """An account with default options."""
    built: Account = await make_account()
    return built
