"""`/api/ssl/*`: listing, upload validation, public content only, covered names."""

from __future__ import annotations

import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def make_ca(cn: str = "Test CA") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(
    names: list[str],
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    days: int = 90,
    not_before_days: int = -1,
) -> tuple[str, str]:
    """(certificate + CA chain PEM, key PEM) for `names`, valid for `days`."""
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + timedelta(days=not_before_days))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(ca_key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(
        serialization.Encoding.PEM
    )
    return chain.decode(), _pem_key(key)


@pytest.fixture
def ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return make_ca()


@pytest.fixture
async def ssl_client(make_client: Any, tmp_path: Path) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await make_client(ssl_cert_dir=tmp_path / "ssl")
    return client


@pytest.fixture
async def admin(ssl_client: httpx.AsyncClient) -> dict[str, str]:
    from support import ADMIN_EMAIL, ADMIN_PASSWORD, login

    tokens = await login(ssl_client, ADMIN_EMAIL, ADMIN_PASSWORD)
    return {"Authorization": f"Bearer {tokens['accessToken']}"}


@pytest.fixture
async def viewer(ssl_client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, str]:
    from support import login

    response = await ssl_client.post(
        "/api/v1/users",
        json={"email": "ssl-viewer@example.com", "password": "viewer-password-1", "role": "user"},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    tokens = await login(ssl_client, "ssl-viewer@example.com", "viewer-password-1")
    return {"Authorization": f"Bearer {tokens['accessToken']}"}


async def upload(
    client: httpx.AsyncClient, headers: dict[str, str], domain: str, cert: str, key: str
) -> httpx.Response:
    return await client.post(
        "/api/ssl/upload",
        json={"domain": domain, "cert_content": cert, "key_content": key},
        headers=headers,
    )


async def test_upload_lists_and_serves_the_public_certificate_only(
    ssl_client: httpx.AsyncClient,
    admin: dict[str, str],
    viewer: dict[str, str],
    ca: Any,
    tmp_path: Path,
) -> None:
    cert, key = make_leaf(["app.example.com", "www.app.example.com"], ca)
    response = await upload(ssl_client, admin, "app.example.com", cert, key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["cert_path"] == str(tmp_path / "ssl" / "app.example.com.crt")
    assert body["certificate"]["key_match"] is True
    assert body["certificate"]["chain_length"] == 2
    key_file, cert_file = Path(body["key_path"]), Path(body["cert_path"])
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_file.stat().st_mode) == 0o644
    assert key_file.read_text() == key

    listing = await ssl_client.get("/api/ssl/certificates", headers=viewer)
    assert listing.status_code == 200
    [entry] = listing.json()["certificates"]
    assert entry["domain"] == "app.example.com"
    assert entry["sans"] == ["app.example.com", "www.app.example.com"]
    assert entry["issuer"] == "Test CA"
    assert entry["subject"] == "CN=app.example.com"
    assert entry["status"] == "valid"
    assert 88 <= entry["days_left"] <= 90
    assert entry["key_match"] is True
    assert entry["source"] == "custom" and entry["auto_renew"] is False

    content = await ssl_client.get("/api/ssl/certificate/app.example.com/content", headers=viewer)
    assert content.status_code == 200
    assert content.json()["cert_content"] == cert
    assert "PRIVATE KEY" not in content.text

    # The audit trail has the upload, without key material.
    async with ssl_client.app.state.db.session() as session:  # type: ignore[attr-defined]
        from sqlalchemy import select

        from vpsapi.ops.audit.models import AuditEntry

        [entry_row] = (
            await session.execute(select(AuditEntry).where(AuditEntry.action == "ssl.upload"))
        ).scalars()
    assert entry_row.target == "app.example.com"
    assert "PRIVATE" not in str(entry_row.after)


async def test_the_certificate_file_and_its_content_hold_certificates_only(
    ssl_client: httpx.AsyncClient,
    admin: dict[str, str],
    viewer: dict[str, str],
    ca: Any,
    tmp_path: Path,
) -> None:
    """Text around the PEM blocks is not written; a file stored before keys beside the
    certificate were refused is served without its key."""
    cert, key = make_leaf(["app.example.com"], ca)
    noted = "issued for the app\n" + cert
    assert (await upload(ssl_client, admin, "app.example.com", noted, key)).status_code == 200
    stored = tmp_path / "ssl" / "app.example.com.crt"
    assert stored.read_text() == cert
    # A certificate under the old PEM label, which the parser takes: written again under
    # the usual one (matched as text, it was written as an empty file).
    old_label = cert.replace("BEGIN CERTIFICATE", "BEGIN X509 CERTIFICATE").replace(
        "END CERTIFICATE", "END X509 CERTIFICATE"
    )
    assert (await upload(ssl_client, admin, "app.example.com", old_label, key)).status_code == 200
    assert stored.read_text() == cert
    stored.write_text(key + cert)  # as an upload of before the rule could have left it
    content = await ssl_client.get("/api/ssl/certificate/app.example.com/content", headers=viewer)
    assert content.status_code == 200
    assert content.json()["cert_content"] == cert
    assert "PRIVATE KEY" not in content.text


async def test_a_key_stored_in_a_certificate_file_is_taken_out_at_start(
    make_client: Any, ca: Any, tmp_path: Path
) -> None:
    """A `.crt` uploaded before keys beside certificates were refused is world-readable:
    at start it is written again without the key (and still lists as valid)."""
    from support import ADMIN_EMAIL, ADMIN_PASSWORD, login

    cert, key = make_leaf(["app.example.com"], ca)
    directory = tmp_path / "ssl"
    directory.mkdir()
    (directory / "app.example.com.crt").write_text(key + cert)
    (directory / "app.example.com.key").write_text(key)
    client = await make_client(ssl_cert_dir=directory)
    assert (directory / "app.example.com.crt").read_text() == cert
    assert (directory / "app.example.com.key").read_text() == key
    token = (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))["accessToken"]
    listing = await client.get(
        "/api/ssl/certificates", headers={"Authorization": f"Bearer {token}"}
    )
    [entry] = listing.json()["certificates"]
    assert entry["key_match"] is True


async def test_a_form_with_the_pem_files_uploads_too(
    ssl_client: httpx.AsyncClient, admin: dict[str, str], ca: Any
) -> None:
    cert, key = make_leaf(["app.example.com"], ca)
    response = await ssl_client.post(
        "/api/ssl/upload",
        data={"domain": "app.example.com"},
        files={"cert_file": ("app.crt", cert.encode()), "key_file": ("app.key", key.encode())},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    assert response.json()["certificate"]["key_match"] is True
    # Text fields in the form work as well, and what is missing or not text is named.
    text_form = {"domain": "app.example.com", "cert_content": cert, "key_content": key}
    assert (await ssl_client.post("/api/ssl/upload", data=text_form, headers=admin)).is_success
    for form, files, field in (
        ({"domain": "b.example.com"}, {"cert_file": ("b.crt", cert.encode())}, "key_content"),
        (
            {"domain": "b.example.com"},
            {"cert_file": ("b.crt", b"\xff\xfe"), "key_file": ("b.key", key.encode())},
            "cert_file",  # the form field as sent
        ),
    ):
        refused = await ssl_client.post("/api/ssl/upload", data=form, files=files, headers=admin)
        assert refused.status_code == 422, refused.text
        assert [d["loc"][-1] for d in refused.json()["detail"]] == [field]
    three = {"cert_file": ("b.crt", cert.encode()), "key_file": ("b.key", key.encode())}
    three["chain_file"] = ("c.crt", cert.encode())
    too_many = await ssl_client.post(
        "/api/ssl/upload", data={"domain": "b.example.com"}, files=three, headers=admin
    )
    assert too_many.status_code == 400, too_many.text
    listing = await ssl_client.get("/api/ssl/certificates", headers=admin)
    assert [c["domain"] for c in listing.json()["certificates"]] == ["app.example.com"]


async def test_replacing_a_certificate_and_a_key_that_does_not_match(
    ssl_client: httpx.AsyncClient, admin: dict[str, str], ca: Any
) -> None:
    cert, key = make_leaf(["app.example.com"], ca)
    other_cert, other_key = make_leaf(["app.example.com"], ca)
    assert (await upload(ssl_client, admin, "app.example.com", cert, key)).status_code == 200

    mismatch = await upload(ssl_client, admin, "app.example.com", cert, other_key)
    assert mismatch.status_code == 422
    assert mismatch.json()["detail"] == "the private key does not match the certificate"
    # Nothing changed on disk.
    content = await ssl_client.get("/api/ssl/certificate/app.example.com/content", headers=admin)
    assert content.json()["cert_content"] == cert

    replaced = await upload(ssl_client, admin, "app.example.com", other_cert, other_key)
    assert replaced.status_code == 200
    content = await ssl_client.get("/api/ssl/certificate/app.example.com/content", headers=admin)
    assert content.json()["cert_content"] == other_cert


@pytest.mark.parametrize(
    ("mutate", "status", "message"),
    [
        (lambda c, k: ("not a certificate", k), 422, "the certificate is not valid PEM"),
        (lambda c, k: (c, "not a key"), 422, "the private key is not a valid PEM private key"),
        (
            lambda c, k: (
                c.split("-----END CERTIFICATE-----")[0][:-40] + "\n-----END CERTIFICATE-----\n",
                k,
            ),
            422,
            "the certificate is not valid PEM",
        ),
        # A key pasted into the certificate (either side of it) would be written into
        # the world-readable file and served by the content endpoint.
        (lambda c, k: (k + c, k), 422, "the certificate holds a private key"),
        (lambda c, k: (c + k, k), 422, "the certificate holds a private key"),
    ],
)
async def test_unparseable_uploads_are_refused(
    ssl_client: httpx.AsyncClient,
    admin: dict[str, str],
    ca: Any,
    mutate: Any,
    status: int,
    message: str,
) -> None:
    cert, key = mutate(*make_leaf(["app.example.com"], ca))
    response = await upload(ssl_client, admin, "app.example.com", cert, key)
    assert response.status_code == status, response.text
    assert response.json()["detail"].startswith(message)
    listing = await ssl_client.get("/api/ssl/certificates", headers=admin)
    assert listing.json()["certificates"] == []


@pytest.mark.parametrize(
    ("names", "domain"),
    [
        (["app.example.com"], "other.example.com"),
        (["*.example.com"], "a.b.example.com"),  # a wildcard covers one label
        (["*.example.com"], "example.com"),
    ],
)
async def test_a_certificate_for_another_domain_is_refused(
    ssl_client: httpx.AsyncClient, admin: dict[str, str], ca: Any, names: list[str], domain: str
) -> None:
    """Stored under a name it does not cover, a site using the file would serve a
    certificate every browser rejects."""
    cert, key = make_leaf(names, ca)
    response = await upload(ssl_client, admin, domain, cert, key)
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == f"the certificate is for {names[0]}, not {domain}"
    listing = await ssl_client.get("/api/ssl/certificates", headers=admin)
    assert listing.json()["certificates"] == []
    covered = await upload(
        ssl_client, admin, "app.example.com", *make_leaf(["app.example.com", "*.example.com"], ca)
    )
    assert covered.status_code == 200, covered.text


async def test_broken_chain_encrypted_key_and_expired_certificate_are_refused(
    ssl_client: httpx.AsyncClient, admin: dict[str, str], ca: Any
) -> None:
    cert, key = make_leaf(["app.example.com"], ca)
    leaf_only = cert.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    foreign_ca = make_ca("Other CA")[0].public_bytes(serialization.Encoding.PEM).decode()
    response = await upload(ssl_client, admin, "app.example.com", leaf_only + foreign_ca, key)
    assert response.status_code == 422
    assert "chain is broken" in response.json()["detail"]

    private = serialization.load_pem_private_key(key.encode(), None)
    encrypted = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    ).decode()
    response = await upload(ssl_client, admin, "app.example.com", cert, encrypted)
    assert response.status_code == 422
    assert "encrypted" in response.json()["detail"]

    old_cert, old_key = make_leaf(["app.example.com"], ca, days=-1, not_before_days=-30)
    response = await upload(ssl_client, admin, "app.example.com", old_cert, old_key)
    assert response.status_code == 422
    assert "expired" in response.json()["detail"]


@pytest.mark.parametrize(
    "domain", ["../etc/passwd", "a/b", "-bad.example.com", "bad..example.com", "a b", "x" * 300, ""]
)
async def test_unsafe_domain_names_are_refused(
    ssl_client: httpx.AsyncClient, admin: dict[str, str], ca: Any, domain: str, tmp_path: Path
) -> None:
    cert, key = make_leaf(["app.example.com"], ca)
    response = await upload(ssl_client, admin, domain, cert, key)
    assert response.status_code in (400, 422), response.text
    assert "detail" in response.json()
    assert not (tmp_path / "ssl").exists() or not any((tmp_path / "ssl").iterdir())


async def test_wildcards_cover_one_label_and_the_default_pair_is_marked(
    make_client: Any, tmp_path: Path, ca: Any
) -> None:
    from support import ADMIN_EMAIL, ADMIN_PASSWORD, login

    default_dir = tmp_path / "default"
    default_dir.mkdir()
    default_cert, default_key = make_leaf(["*.example.org"], ca, days=10)
    (default_dir / "wildcard.example.org.crt").write_text(default_cert)
    (default_dir / "wildcard.example.org.key").write_text(default_key)
    client = await make_client(
        ssl_cert_dir=tmp_path / "ssl",
        default_ssl_cert=str(default_dir / "wildcard.example.org.crt"),
        default_ssl_key=str(default_dir / "wildcard.example.org.key"),
    )
    headers = {
        "Authorization": f"Bearer {(await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))['accessToken']}"
    }
    cert, key = make_leaf(["*.example.com", "example.com"], ca)
    response = await upload(client, headers, "*.example.com", cert, key)
    assert response.status_code == 200, response.text
    assert response.json()["domain"] == "wildcard.example.com"

    listing = (await client.get("/api/ssl/certificates", headers=headers)).json()["certificates"]
    by_domain = {entry["domain"]: entry for entry in listing}
    assert by_domain["wildcard.example.org"]["is_default"] is True
    assert by_domain["wildcard.example.org"]["source"] == "default"
    assert by_domain["wildcard.example.org"]["status"] == "expiring"  # 10 days < 30
    assert by_domain["wildcard.example.com"]["is_default"] is False

    domains = (await client.get("/api/ssl/domains", headers=headers)).json()["domains"]
    assert {(d["domain"], d["wildcard"]) for d in domains} == {
        ("*.example.com", True),
        ("example.com", False),
        ("*.example.org", True),
    }

    async def check(name: str) -> dict[str, Any]:
        response = await client.get("/api/ssl/domains", params={"domain": name}, headers=headers)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    covered = await check("a.example.com")
    assert covered["covered"] is True
    assert [d["domain"] for d in covered["domains"]] == ["*.example.com"]
    assert (await check("example.com"))["covered"] is True
    assert (await check("a.b.example.com"))["covered"] is False
    assert (await check("a.example.org"))["domains"][0]["is_default"] is True
    assert (await check("example.net"))["covered"] is False
    bad = await client.get("/api/ssl/domains", params={"domain": "bad name"}, headers=headers)
    assert bad.status_code == 422

    content = await client.get("/api/ssl/certificate/*.example.com/content", headers=headers)
    assert content.status_code == 200 and content.json()["cert_content"] == cert


async def test_unknown_certificates_and_bad_names(
    ssl_client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    missing = await ssl_client.get("/api/ssl/certificate/nope.example.com/content", headers=admin)
    assert missing.status_code == 404
    assert missing.json()["detail"] == "SSL certificate not found for domain nope.example.com"
    traversal = await ssl_client.get("/api/ssl/certificate/..%2F..%2Fetc/content", headers=admin)
    assert traversal.status_code in (400, 404)
    assert (
        await ssl_client.post("/api/ssl/renew/nope.example.com", headers=admin)
    ).status_code == 404
    assert (await ssl_client.post("/api/ssl/renew/a..b", headers=admin)).status_code == 400
    for body in ({}, {"domain": "bad name"}, {"domains": ["ok.example.com", "*.example.com"]}):
        response = await ssl_client.post("/api/ssl/request-letsencrypt", json=body, headers=admin)
        assert response.status_code in (400, 422), response.text
    assert (await ssl_client.get("/api/ssl/certificates")).status_code == 401


async def test_an_order_without_a_domain_is_a_validation_failure_on_domain(
    ssl_client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    missing = "give the domain to certify: {domain} or {domains: [...]}"
    for body in ({}, {"domains": []}, {"email": "ops@example.com"}, None):
        response = await ssl_client.post("/api/ssl/request-letsencrypt", json=body, headers=admin)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"] == [
            {"type": "value_error", "loc": ["body", "domain"], "msg": missing}
        ]


async def test_an_order_for_an_ip_address_is_refused_before_any_job(
    ssl_client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """127.0.0.1 passed as a host name (digits and dots): 202, and a job that failed at
    the CA. Names a URL parser reads as IPv4 (`127.1`) are addresses too."""
    for name in ("127.0.0.1", "::1", "[2001:db8::1]", "127.1", "10.0.0.1."):
        for request in ({"json": {"domain": name}}, {"params": {"domain": name}}):
            response = await ssl_client.post(
                "/api/ssl/request-letsencrypt", headers=admin, **request
            )
            assert response.status_code == 422, (name, response.text)
            assert response.json()["detail"] == (
                f"{name} is an IP address: certificates are requested for host names only, "
                "such as example.com"
            )
    jobs = await ssl_client.get("/api/jobs", headers=admin)
    assert jobs.json()["jobs"] == []


async def test_renewing_an_uploaded_certificate_is_a_conflict(
    ssl_client: httpx.AsyncClient, admin: dict[str, str], ca: Any
) -> None:
    cert, key = make_leaf(["app.example.com"], ca)
    assert (await upload(ssl_client, admin, "app.example.com", cert, key)).status_code == 200
    response = await ssl_client.post("/api/ssl/renew/app.example.com", headers=admin)
    assert response.status_code == 409
    assert "not issued here by ACME" in response.json()["detail"]


async def test_mutations_need_the_admin_role(
    ssl_client: httpx.AsyncClient, viewer: dict[str, str], ca: Any, tmp_path: Path
) -> None:
    cert, key = make_leaf(["app.example.com"], ca)
    assert (await upload(ssl_client, viewer, "app.example.com", cert, key)).status_code == 403
    response = await ssl_client.post(
        "/api/ssl/request-letsencrypt", json={"domain": "app.example.com"}, headers=viewer
    )
    assert response.status_code == 403
    assert (
        await ssl_client.post("/api/ssl/renew/app.example.com", headers=viewer)
    ).status_code == 403
    assert not (tmp_path / "ssl" / "app.example.com.crt").exists()
    # Who asks is checked before what they sent.
    for body in ({}, {"domain": "app.example.com"}):
        anonymous = await ssl_client.post("/api/ssl/upload", json=body)
        assert anonymous.status_code == 401, anonymous.text
        not_admin = await ssl_client.post("/api/ssl/upload", json=body, headers=viewer)
        assert not_admin.status_code == 403, not_admin.text


async def test_an_issuance_waiting_or_running_is_a_conflict(
    make_client: Any, tmp_path: Path
) -> None:
    from support import ADMIN_EMAIL, ADMIN_PASSWORD, login

    # No workers: the first job stays PENDING.
    client = await make_client(ssl_cert_dir=tmp_path / "ssl", jobs_inprocess_workers=False)
    headers = {
        "Authorization": f"Bearer {(await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))['accessToken']}"
    }
    first = await client.post(
        "/api/ssl/request-letsencrypt", json={"domain": "busy.example.com"}, headers=headers
    )
    assert first.status_code == 202, first.text
    job = (await client.get(f"/api/jobs/{first.json()['jobId']}", headers=headers)).json()
    assert job["status"] == "PENDING" and job["processingType"] == "ops.ssl.issue"
    second = await client.post(
        "/api/ssl/request-letsencrypt", params={"domain": "busy.example.com"}, headers=headers
    )
    assert second.status_code == 409
    assert second.json()["detail"] == "a certificate for busy.example.com is already being issued"


async def test_openssls_ca_store_is_never_taken_for_our_certificates(make_client: Any) -> None:
    # Some environments export SSL_CERT_DIR for OpenSSL: its CA store holds no domains of
    # ours, and backups would copy it and restores write into it.
    from support import ADMIN_EMAIL, ADMIN_PASSWORD, login

    ca_store = Path(ssl.get_default_verify_paths().openssl_capath)
    client = await make_client(ssl_cert_dir=ca_store)
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    listed = await client.get("/api/ssl/domains", headers=headers)
    assert listed.status_code == 200
    # (The CA bundle was listed as a "custom" certificate of its first CA's name.)
    paths = [Path(d["cert_path"]).resolve() for d in listed.json()["domains"]]
    assert not [path for path in paths if path.parent == ca_store.resolve()], paths
    settings = client.app.state.settings  # type: ignore[attr-defined]
    assert settings.ssl_cert_dir == Path("/etc/ssl/vpsapi")
    assert "OpenSSL's CA store" in settings.notices[0]
