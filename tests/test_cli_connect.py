"""`channel-sync shopify connect` and `channel-sync ebay connect` as a seller runs them: the real
command in a subprocess, the marketplace sandbox in another, and the browser step driven with
httpx (open the printed URL, follow the marketplace's redirect to the callback)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from sandbox.shopify.oauth import oauth_hmac
from tests.sandbox.ebay.process import EbayProcess
from tests.sandbox.shopify.process import ShopifyProcess
from tests.support.daemon import CHANNEL_SYNC, DaemonConfig, wait_for

SECRET = "shpss_connect_app_secret_0123456789"
SHOPIFY_ENV = {"T_CONNECT_SHOPIFY_SECRET": SECRET, "TEST_CHANNEL_SYNC_ADMIN_TOKEN": "admin-t-1"}
RU_NAME = "Sandbox_Seller-chsync-SBX-connect1"
VERIFICATION = "connect-verification-token-0123456789abcdef"
GRAPHQL_SHOP = "query { shop { name myshopifyDomain } }"


class ConnectRun:
    """One `channel-sync KIND connect` process, its output in files (nothing blocks on a pipe)."""

    def __init__(self, config: DaemonConfig, env: dict[str, str], *args: str) -> None:
        self.out = config.root / f"connect.{len(list(config.root.glob('connect.*')))}"
        self.args = [CHANNEL_SYNC, *args, "--config", str(config.root)]
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ConnectRun:
        with open(f"{self.out}.stdout", "wb") as out, open(f"{self.out}.stderr", "wb") as err:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=err, env=self.env)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    @property
    def stdout(self) -> str:
        return Path(f"{self.out}.stdout").read_text()

    @property
    def stderr(self) -> str:
        return Path(f"{self.out}.stderr").read_text()

    def url(self) -> str:
        """The address the command tells the seller to open (fails if the command ends first)."""

        def printed() -> str | None:
            assert self.proc is not None
            match = re.search(r"^  (http\S+)$", self.stdout, re.MULTILINE)
            if match is None and self.proc.poll() is not None:
                raise AssertionError(f"connect exited {self.proc.returncode}: {self.stderr}")
            return match[1] if match else None

        return wait_for(printed, timeout=60, what="the connect command's URL")

    def wait(self) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=60)


def browser_redirect(url: str) -> str:
    """What the marketplace's consent page answers a signed-in seller: its redirect target."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 302, response.text
    return response.headers["location"]


def with_query(url: str, **changes: str) -> dict[str, str]:
    """The query of `url` as a dict, with `changes` applied."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()} | changes


def at(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(params), ""))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---- Shopify ----------------------------------------------------------------------------------


def shopify_config(root: Path, sandbox: ShopifyProcess, client_id: str) -> DaemonConfig:
    config = DaemonConfig(
        root=root,
        database_url=None,
        channels={
            "shop": (
                'kind = "shopify"\n'
                f'shop = "{sandbox.info["domain"]}"\n'
                f'access_token = "file:{root / "state" / "credentials" / "shop.access_token"}"\n'
                f'client_id = "{client_id}"\n'
                'webhook_secrets = ["env:T_CONNECT_SHOPIFY_SECRET"]\n'
                f'api_base_url = "{sandbox.info["url"]}"\n'
            )
        },
    )
    config.write()
    return config


def shopify_accepts(sandbox: ShopifyProcess, token: str) -> int:
    response = httpx.post(
        f"{sandbox.info['url']}/admin/api/2026-04/graphql.json",
        json={"query": GRAPHQL_SHOP},
        headers={"X-Shopify-Access-Token": token},
        timeout=10,
    )
    if response.status_code == 200:
        assert response.json()["data"]["shop"]["myshopifyDomain"] == sandbox.info["domain"]
    return response.status_code


def test_shopify_connect_installs_the_app_and_stores_the_token_0600(tmp_path: Path) -> None:
    with ShopifyProcess(tmp_path, ["--shop", "connect-demo", "--secret", SECRET]) as sandbox:
        client_id = sandbox.control("GET", "/oauth")["client_id"]
        sandbox.control("POST", "/uninstall")  # a fresh install: the old token stops working
        old_token = sandbox.info["token"]
        config = shopify_config(tmp_path / "cfg", sandbox, client_id)
        token_file = config.root / "state" / "credentials" / "shop.access_token"
        with ConnectRun(
            config, SHOPIFY_ENV, "shopify", "connect", "--channel", "shop", "--port", "0"
        ) as run:
            install = run.url()
            asked = with_query(install)
            assert asked["client_id"] == client_id
            assert {"write_inventory", "write_orders"} <= set(asked["scope"].split(","))
            callback = browser_redirect(install)
            assert callback.startswith(asked["redirect_uri"])

            # A callback whose code was swapped breaks Shopify's HMAC: refused, nothing stored.
            forged = httpx.get(at(callback, with_query(callback, code="f" * 32)), timeout=10)
            assert forged.status_code == 403
            assert "HMAC does not match" in forged.text
            # Correctly signed, but for another run (state): refused too.
            other_run = with_query(callback, state="someone-elses-state")
            del other_run["hmac"]
            other_run["hmac"] = oauth_hmac(SECRET, other_run)
            stale = httpx.get(at(callback, other_run), timeout=10)
            assert stale.status_code == 403
            assert "state does not match" in stale.text
            assert not token_file.exists()

            done = httpx.get(callback, timeout=10)
            assert done.status_code == 200, done.text
            assert "connected" in done.text
            assert run.wait() == 0, run.stderr
            output = run.stdout + run.stderr

        assert mode(token_file) == 0o600
        assert mode(token_file.parent) == 0o700
        token = token_file.read_text().strip()
        assert token and token not in output and SECRET not in output
        assert shopify_accepts(sandbox, token) == 200
        assert shopify_accepts(sandbox, old_token) == 401
        assert output.count("refused a callback") == 2
        assert f'access_token = "file:{token_file}"' in run.stdout
        assert "already has access_token" in run.stdout  # the file refers to it already
        assert sandbox.control("GET", "/oauth")["installed"] is True

        # The channel file now loads as it is, token and all.
        check = subprocess.run(
            [CHANNEL_SYNC, "check-config", str(config.root)],
            env={**os.environ, **SHOPIFY_ENV},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, check.stderr
        assert token not in check.stdout + check.stderr


def test_shopify_connect_stores_nothing_when_no_genuine_callback_comes(tmp_path: Path) -> None:
    with ShopifyProcess(tmp_path, ["--secret", SECRET]) as sandbox:
        client_id = sandbox.control("GET", "/oauth")["client_id"]
        config = shopify_config(tmp_path / "cfg", sandbox, client_id)
        token_file = config.root / "state" / "credentials" / "shop.access_token"
        with ConnectRun(
            config,
            SHOPIFY_ENV,
            *("shopify", "connect", "--channel", "shop", "--port", "0", "--timeout", "3"),
        ) as run:
            callback = browser_redirect(run.url())
            forged = with_query(callback)
            forged["hmac"] = oauth_hmac("not-the-app-secret", forged)
            assert httpx.get(at(callback, forged), timeout=10).status_code == 403
            assert run.wait() == 1
        assert "no callback within 3 s: nothing was stored" in run.stderr
        assert not token_file.exists()


def test_shopify_connect_needs_the_apps_client_id(tmp_path: Path) -> None:
    config = DaemonConfig(
        root=tmp_path / "cfg",
        database_url=None,
        channels={
            "shop": 'kind = "shopify"\nshop = "a.myshopify.com"\n'
            'webhook_secrets = ["env:T_CONNECT_SHOPIFY_SECRET"]\n'
        },
    )
    config.write()
    result = subprocess.run(
        [CHANNEL_SYNC, "shopify", "connect", "--channel", "shop", "--config", str(config.root)],
        env={**os.environ, **SHOPIFY_ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "shop.toml: client_id: set the app's client id" in result.stderr
    missing = subprocess.run(
        [CHANNEL_SYNC, "ebay", "connect", "--channel", "nope", "--config", str(config.root)],
        env={**os.environ, **SHOPIFY_ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "no channel 'nope'" in missing.stderr


# ---- eBay -------------------------------------------------------------------------------------


def ebay_config(root: Path, sandbox: EbayProcess) -> DaemonConfig:
    info = sandbox.info
    config = DaemonConfig(
        root=root,
        database_url=None,
        channels={
            "ebay-us": (
                'kind = "ebay"\n'
                f'client_id = "{info["client_id"]}"\n'
                'client_secret = "env:T_CONNECT_EBAY_SECRET"\n'
                'verification_token = "env:T_CONNECT_EBAY_VERIFICATION"\n'
                f'ru_name = "{RU_NAME}"\n'
                f'api_base_url = "{info["api_base_url"]}"\n'
                f'identity_url = "{info["identity_url"]}"\n'
                f'trading_api_url = "{info["trading_url"]}"\n'
            )
        },
    )
    config.write()
    return config


def ebay_env(sandbox: EbayProcess) -> dict[str, str]:
    return {
        "T_CONNECT_EBAY_SECRET": sandbox.info["client_secret"],
        "T_CONNECT_EBAY_VERIFICATION": VERIFICATION,
        "TEST_CHANNEL_SYNC_ADMIN_TOKEN": "admin-t-1",
    }


def ebay_accepts(sandbox: EbayProcess, refresh_token: str) -> int:
    """Renew the refresh token into an access token and read orders with it."""
    sandbox.info["refresh_token"] = refresh_token
    access = sandbox.token()
    response = httpx.get(
        f"{sandbox.info['api_base_url']}/sell/fulfillment/v1/order",
        headers={"Authorization": f"Bearer {access}"},
        timeout=10,
    )
    return response.status_code


def test_ebay_connect_takes_the_consent_callback_and_stores_the_refresh_token(
    tmp_path: Path,
) -> None:
    with EbayProcess(tmp_path, []) as sandbox:
        config = ebay_config(tmp_path / "cfg", sandbox)
        callback_url = f"{config.webhooks_url}/oauth/ebay/ebay-us/callback"
        sandbox.control("POST", "/ru-name", {"ru_name": RU_NAME, "accept_url": callback_url})
        token_file = config.root / "state" / "credentials" / "ebay-us.refresh_token"
        with ConnectRun(
            config, ebay_env(sandbox), "ebay", "connect", "--channel", "ebay-us"
        ) as run:
            consent = run.url()
            asked = with_query(consent)
            assert asked["redirect_uri"] == RU_NAME
            assert consent.startswith(f"{sandbox.info['url']}/oauth2/authorize?")
            callback = browser_redirect(consent)
            assert callback.startswith(callback_url)

            stale = httpx.get(at(callback, with_query(callback, state="earlier")), timeout=10)
            assert stale.status_code == 403
            assert "state does not match" in stale.text
            assert not token_file.exists()

            done = httpx.get(callback, timeout=10)
            assert done.status_code == 200, done.text
            assert run.wait() == 0, run.stderr
            output = run.stdout + run.stderr

        assert mode(token_file) == 0o600
        refresh_token = token_file.read_text().strip()
        assert refresh_token and refresh_token not in output
        assert sandbox.info["client_secret"] not in output
        assert sandbox.info["refresh_token"] != refresh_token  # a new consent, not the seeded one
        assert ebay_accepts(sandbox, refresh_token) == 200
        assert f'refresh_token = "file:{token_file}"' in run.stdout
        assert "lasts until about" in run.stdout


def test_ebay_connect_exchanges_a_pasted_code(tmp_path: Path) -> None:
    with EbayProcess(tmp_path, []) as sandbox:
        config = ebay_config(tmp_path / "cfg", sandbox)
        sandbox.control(
            "POST", "/ru-name", {"ru_name": RU_NAME, "accept_url": "https://example.invalid/ok"}
        )
        token_file = config.root / "state" / "credentials" / "ebay-us.refresh_token"
        env = ebay_env(sandbox)
        args = ("ebay", "connect", "--channel", "ebay-us", "--code")

        with ConnectRun(config, env, *args, "v^1.1#not-a-code-ebay-issued") as refused:
            assert refused.wait() == 1
        assert "not connected" in refused.stderr and "grant code is invalid" in refused.stderr
        assert not token_file.exists()

        consent = f"{sandbox.info['url']}/oauth2/authorize?" + urlencode(
            {
                "client_id": sandbox.info["client_id"],
                "redirect_uri": RU_NAME,
                "response_type": "code",
                "scope": "https://api.ebay.com/oauth/api_scope/sell.inventory",
            }
        )
        landing = browser_redirect(consent)  # the page the seller copies the address of
        with ConnectRun(config, env, *args, landing) as run:
            assert run.wait() == 0, run.stderr
        refresh_token = token_file.read_text().strip()
        assert mode(token_file) == 0o600
        assert refresh_token not in run.stdout + run.stderr
        assert ebay_accepts(sandbox, refresh_token) == 200


@pytest.mark.parametrize("kind", ["shopify", "ebay"])
def test_connect_says_so_when_the_listener_address_is_taken(tmp_path: Path, kind: str) -> None:
    import socket

    config = DaemonConfig(
        root=tmp_path / "cfg",
        database_url=None,
        channels={
            "c": (
                'kind = "shopify"\nshop = "a.myshopify.com"\nclient_id = "id"\n'
                'webhook_secrets = ["env:T_CONNECT_SHOPIFY_SECRET"]\n'
                if kind == "shopify"
                else 'kind = "ebay"\nclient_id = "id"\nclient_secret = "env:T_CONNECT_SHOPIFY_SECRET"\n'
                'verification_token = "env:T_CONNECT_SHOPIFY_SECRET"\nru_name = "r"\n'
            )
        },
    )
    config.write()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", config.webhooks_port))
        taken.listen(1)
        result = subprocess.run(
            [CHANNEL_SYNC, kind, "connect", "--channel", "c", "--config", str(config.root)],
            env={**os.environ, **SHOPIFY_ENV},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"127.0.0.1:{config.webhooks_port}" in result.stderr
    assert "pass --port" in result.stderr
