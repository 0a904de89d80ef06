"""`channel-sync sandbox`: both sandbox marketplaces on loopback, their addresses printed."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
from pathlib import Path

import httpx

from tests.support.daemon import CHANNEL_SYNC, wait_for


def test_sandbox_serves_shopify_and_reference_and_prints_where(tmp_path: Path) -> None:
    ready = tmp_path / "sandboxes.json"
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [CHANNEL_SYNC, "sandbox", "--ready-file", str(ready)], stdout=stdout, stderr=stderr
        )
    try:
        wait_for(
            lambda: ready.exists() or proc.poll() is not None,
            timeout=60,
            what="the sandboxes' ready file",
        )
        assert proc.poll() is None, err.read_text()
        assert stat.S_IMODE(ready.stat().st_mode) == 0o600
        info = json.loads(ready.read_text())["sandboxes"]
        shopify, reference = info["shopify"], info["reference"]

        shop = httpx.get(f"{shopify['sandbox_url']}/_sandbox/shop", timeout=10).json()
        assert shop["domain"] == shopify["shop"] == "sandbox.myshopify.com"
        inventory = httpx.get(f"{shopify['sandbox_url']}/_sandbox/inventory", timeout=10).json()
        assert inventory == {"MUG-BLUE": 25, "POSTER-A2": 10, "TEE-M": 40}
        api = httpx.post(
            f"{shopify['api_base_url']}/admin/api/2026-04/graphql.json",
            json={"query": "{ shop { name } }"},
            headers={"X-Shopify-Access-Token": shopify["token"]},
            timeout=10,
        )
        assert api.status_code == 200 and "errors" not in api.json(), api.text
        calls = httpx.get(f"{reference['sandbox_url']}/_sandbox/calls", timeout=10)
        assert calls.status_code == 200, calls.text

        printed = out.read_text()
        assert shopify["sandbox_url"] in printed and reference["sandbox_url"] in printed
        for secret in (shopify["token"], shopify["secret"], reference["token"]):
            assert secret not in printed
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    assert code == 0, err.read_text()


def test_sandbox_refuses_a_non_loopback_address(tmp_path: Path) -> None:
    done = subprocess.run(
        [CHANNEL_SYNC, "sandbox", "--host", "0.0.0.0"],  # refused, never bound
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert b"loopback" in done.stderr
