"""The admin API over HTTPS: `listeners.admin.tls_certfile`/`tls_keyfile` reach uvicorn, so the
daemon answers TLS (and only TLS) on the admin port, a real subprocess on loopback."""

from __future__ import annotations

import ipaddress
import signal
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.daemon import Daemon, DaemonConfig, wait_for

TOKEN = "test-admin-token-tls-0123456789"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "channel-sync admin test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "admin.crt", directory / "admin.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def test_the_admin_api_is_served_over_tls(tmp_path: Path) -> None:
    config = DaemonConfig(root=tmp_path / "cfg", database_url=None)
    config.write()
    cert, key = _self_signed(config.root)
    daemon = Daemon(
        config,
        {
            config.admin_token_env: TOKEN,
            "CHANNEL_SYNC_LISTENERS__ADMIN__TLS_CERTFILE": str(cert),
            "CHANNEL_SYNC_LISTENERS__ADMIN__TLS_KEYFILE": str(key),
        },
    ).start()
    https = f"https://127.0.0.1:{config.admin_port}"
    trust = ssl.create_default_context(cafile=str(cert))
    try:

        def healthy() -> bool:
            assert daemon.proc is not None and daemon.proc.poll() is None, daemon.output()[-3000:]
            try:
                return httpx.get(f"{https}/healthz", verify=trust, timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=20, what="/healthz over HTTPS")
        status = httpx.get(
            f"{https}/api/status", verify=trust, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert status.status_code == 200
        assert status.json()["channels"] == []
        try:
            plain = httpx.get(f"{config.admin_url}/healthz", timeout=2).status_code
        except httpx.HTTPError:
            plain = None
        assert plain != 200  # no plain HTTP on the admin port
        assert daemon.stop(signal.SIGTERM) == 0
    finally:
        daemon.kill()
    assert TOKEN not in daemon.output()
