"""ACME end to end: pebble (Let's Encrypt's test CA) validates HTTP-01 through the
private nginx; issuance, renewal and the scheduled renewal run as jobs."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ops_support import NamedBackend, site_body
from support import ADMIN_EMAIL, ADMIN_PASSWORD, free_port, login

PEBBLE = shutil.which("pebble")
CHALLTESTSRV = shutil.which("pebble-challtestsrv")
pytestmark = pytest.mark.skipif(
    PEBBLE is None or CHALLTESTSRV is None,
    reason="pebble is not installed (CI installs the Debian package)",
)


@dataclass
class Pebble:
    directory_url: str
    ca_bundle: Path  # what pebble's own HTTPS listener is signed by
    http_port: int  # where pebble's VA connects for HTTP-01
    management_url: str

    def issuing_root(self) -> str:
        """The root pebble signs certificates with (random per run)."""
        return httpx.get(f"{self.management_url}/roots/0", verify=str(self.ca_bundle)).text


def _write_tls_pair(directory: Path) -> Path:
    """A CA and a 127.0.0.1/localhost server certificate for pebble's HTTPS listener."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble listener CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return directory / "ca.pem"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    directory = tmp_path_factory.mktemp("pebble")
    ca_bundle = _write_tls_pair(directory)
    dns_port, challtest_mgmt = free_port(), free_port()
    acme_port, mgmt_port, http_port = free_port(), free_port(), free_port()
    (directory / "config.json").write_text(
        json.dumps(
            {
                "pebble": {
                    "listenAddress": f"127.0.0.1:{acme_port}",
                    "managementListenAddress": f"127.0.0.1:{mgmt_port}",
                    "certificate": str(directory / "cert.pem"),
                    "privateKey": str(directory / "key.pem"),
                    "httpPort": http_port,
                    "tlsPort": free_port(),  # unused: HTTP-01 only
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": False,
                }
            }
        )
    )
    dns_log = open(directory / "challtestsrv.log", "wb")  # noqa: SIM115 - closed below
    dns = subprocess.Popen(
        [
            str(CHALLTESTSRV),
            "-defaultIPv6",
            "",
            "-defaultIPv4",
            "127.0.0.1",
            "-dns01",
            f"127.0.0.1:{dns_port}",
            "-management",
            f"127.0.0.1:{challtest_mgmt}",
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
        ],
        stdout=dns_log,
        stderr=subprocess.STDOUT,
    )
    env = {
        **os.environ,
        "PEBBLE_VA_NOSLEEP": "1",
        "PEBBLE_WFE_NONCEREJECT": "0",
        "PEBBLE_AUTHZREUSE": "0",  # every order is validated through nginx
    }
    pebble_log = open(directory / "pebble.log", "wb")  # noqa: SIM115 - closed below
    ca = subprocess.Popen(
        [
            str(PEBBLE),
            "-config",
            str(directory / "config.json"),
            "-dnsserver",
            f"127.0.0.1:{dns_port}",
        ],
        env=env,
        stdout=pebble_log,
        stderr=subprocess.STDOUT,
        cwd=directory,
    )
    try:
        directory_url = f"https://127.0.0.1:{acme_port}/dir"
        deadline = time.monotonic() + 30
        while True:
            assert ca.poll() is None, (directory / "pebble.log").read_text()
            try:
                if httpx.get(directory_url, verify=str(ca_bundle)).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "pebble did not start"
            time.sleep(0.1)
        yield Pebble(directory_url, ca_bundle, http_port, f"https://127.0.0.1:{mgmt_port}")
    finally:
        _stop(ca)
        _stop(dns)
        pebble_log.close()
        dns_log.close()


@pytest.fixture
async def acme_client(
    make_client: Any, private_nginx: Any, pebble: Pebble, tmp_path: Path
) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await make_client(
        **private_nginx.settings(),
        ssl_cert_dir=tmp_path / "ssl",
        acme_directory_url=pebble.directory_url,
        acme_ca_bundle=str(pebble.ca_bundle),
        acme_http_port=pebble.http_port,
        letsencrypt_email="ops@example.com",
        jobs_inprocess_workers=True,
    )
    return client


@pytest.fixture
async def admin(acme_client: httpx.AsyncClient) -> dict[str, str]:
    tokens = await login(acme_client, ADMIN_EMAIL, ADMIN_PASSWORD)
    return {"Authorization": f"Bearer {tokens['accessToken']}"}


async def finished(
    client: httpx.AsyncClient, headers: dict[str, str], job_id: str
) -> dict[str, Any]:
    """Poll the job until it ends (bounded; not a timing assertion)."""
    for _ in range(1200):
        job: dict[str, Any] = (await client.get(f"/api/jobs/{job_id}", headers=headers)).json()
        if job["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


async def certificate(
    client: httpx.AsyncClient, headers: dict[str, str], domain: str
) -> dict[str, Any]:
    listing = (await client.get("/api/ssl/certificates", headers=headers)).json()
    [entry] = [c for c in listing["certificates"] if c["domain"] == domain]
    return entry


def _connect(port: int) -> socket.socket:
    # `nginx -s reload` only signals the master: the new listener appears a moment later.
    for _ in range(200):
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except ConnectionRefusedError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


def handshake(port: int, name: str, root_pem: str) -> dict[str, Any]:
    """A TLS handshake that verifies the served certificate against pebble's root."""
    context = ssl.create_default_context(cadata=root_pem)
    with _connect(port) as raw, context.wrap_socket(raw, server_hostname=name) as tls:
        peer: dict[str, Any] = tls.getpeercert()
        return peer


async def test_issue_serve_and_renew_through_nginx(
    acme_client: httpx.AsyncClient,
    admin: dict[str, str],
    private_nginx: Any,
    pebble: Pebble,
    backends: list[NamedBackend],
    tmp_path: Path,
) -> None:
    response = await acme_client.post(
        "/api/ssl/request-letsencrypt",
        json={"domains": ["app.example.com", "www.app.example.com"]},
        headers=admin,
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["jobId"] == body["job_id"] and body["domain"] == "app.example.com"
    job = await finished(acme_client, admin, body["job_id"])
    assert job["status"] == "COMPLETED", job
    assert job["progress"] == 100
    assert job["result"]["names"] == ["app.example.com", "www.app.example.com"]

    entry = await certificate(acme_client, admin, "app.example.com")
    assert entry["source"] == "letsencrypt" and entry["auto_renew"] is True
    assert entry["key_match"] is True
    assert entry["sans"] == ["app.example.com", "www.app.example.com"]
    assert "Pebble" in entry["issuer_dn"]
    assert stat.S_IMODE(os.stat(entry["key_path"]).st_mode) == 0o600
    # The challenge server block and the challenge files are gone again.
    assert not list(private_nginx.conf_dir.glob("vpsapi--acme-*"))
    assert not [p for p in (tmp_path / "data" / "acme-webroot").rglob("*") if p.is_file()]

    # A site uses it: nginx serves it and it verifies against pebble's root.
    tls_port = free_port()
    site = site_body(
        "app",
        tls_port,
        f"http://{backends[0].address}",
        server_name="app.example.com www.app.example.com",
        ssl_cert=entry["cert_path"],
        ssl_key=entry["key_path"],
    )
    response = await acme_client.post("/api/configs", json=site, headers=admin)
    assert response.status_code == 201, response.text
    root = pebble.issuing_root()
    peer = await asyncio.to_thread(handshake, tls_port, "www.app.example.com", root)
    assert format(int(peer["serialNumber"], 16), "x") == entry["serial"]

    renewed = await acme_client.post("/api/ssl/renew/app.example.com", headers=admin)
    assert renewed.status_code == 202, renewed.text
    job = await finished(acme_client, admin, renewed.json()["job_id"])
    assert job["status"] == "COMPLETED", job
    after = await certificate(acme_client, admin, "app.example.com")
    assert after["serial"] != entry["serial"]
    assert after["names"] == entry["names"]
    # The renewal reloaded nginx: the new certificate is served (once the old workers
    # have handed over, which a reload does not wait for).
    served = []
    for _ in range(100):
        peer = await asyncio.to_thread(handshake, tls_port, "app.example.com", root)
        served.append(format(int(peer["serialNumber"], 16), "x"))
        if served[-1] == after["serial"]:
            break
        await asyncio.sleep(0.05)
    assert served[-1] == after["serial"], served


async def test_scheduled_renewal_picks_certificates_close_to_expiry(
    acme_client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    from vpsapi.ops.ssl.schedule import renew_due

    app = acme_client.app  # type: ignore[attr-defined]
    response = await acme_client.post(
        "/api/ssl/request-letsencrypt", params={"domain": "sched.example.com"}, headers=admin
    )
    assert response.status_code == 202, response.text
    assert (await finished(acme_client, admin, response.json()["job_id"]))["status"] == "COMPLETED"
    first = await certificate(acme_client, admin, "sched.example.com")

    # pebble's certificates last years: not due with the default 30 days.
    assert await renew_due(app) == []
    # With a threshold beyond its lifetime the certificate is due.
    app.state.settings.cert_renew_before_days = first["days_left"] + 1
    [job_id] = await renew_due(app)
    job = await finished(acme_client, admin, job_id)
    assert job["status"] == "COMPLETED", job
    assert job["result"]["renewal"] is True
    assert (await certificate(acme_client, admin, "sched.example.com"))["serial"] != first["serial"]


async def test_a_failed_validation_fails_the_job_and_cleans_up(
    make_client: Any, private_nginx: Any, pebble: Pebble, tmp_path: Path
) -> None:
    # nginx answers challenges on another port than the one pebble connects to.
    client = await make_client(
        **private_nginx.settings(),
        ssl_cert_dir=tmp_path / "ssl",
        acme_directory_url=pebble.directory_url,
        acme_ca_bundle=str(pebble.ca_bundle),
        acme_http_port=free_port(),
        jobs_inprocess_workers=True,
    )
    headers = {
        "Authorization": f"Bearer {(await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))['accessToken']}"
    }
    response = await client.post(
        "/api/ssl/request-letsencrypt", json={"domain": "fail.example.com"}, headers=headers
    )
    assert response.status_code == 202
    job = await finished(client, headers, response.json()["job_id"])
    assert job["status"] == "FAILED"
    assert "fail.example.com" in job["error"] and "validation failed" in job["error"]
    assert not list(private_nginx.conf_dir.glob("vpsapi--acme-*"))
    assert (await client.get("/api/ssl/certificates", headers=headers)).json()["certificates"] == []
