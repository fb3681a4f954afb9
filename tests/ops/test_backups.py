"""`/api/backup/*` with a real private nginx: backup -> delete a site -> restore -> the
site is back (database row, certificate, nginx serving it); tampered archives and unsafe
names refused; rollback when nginx rejects; retention."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import stat
import tarfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from ops_support import NamedBackend, site_body
from support import free_port
from vpsapi.ops.audit.models import AuditEntry

SITE_FILE = "vpsapi-site-shop.conf"  # as the nginx module names it


def self_signed(name: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


@pytest.fixture
async def backup_client(make_client: Any, private_nginx: Any, tmp_path: Path) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await make_client(
        **private_nginx.settings(),
        ssl_cert_dir=tmp_path / "ssl",
        backup_dir=tmp_path / "backups",
        jobs_inprocess_workers=True,
    )
    return client


@pytest.fixture
async def admin(backup_client: httpx.AsyncClient) -> dict[str, str]:
    from support import ADMIN_EMAIL, ADMIN_PASSWORD, login

    tokens = await login(backup_client, ADMIN_EMAIL, ADMIN_PASSWORD)
    return {"Authorization": f"Bearer {tokens['accessToken']}"}


@pytest.fixture
async def viewer(backup_client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, str]:
    from support import login

    response = await backup_client.post(
        "/api/v1/users",
        json={
            "email": "backup-viewer@example.com",
            "password": "viewer-password-1",
            "role": "user",
        },
        headers=admin,
    )
    assert response.status_code == 201, response.text
    tokens = await login(backup_client, "backup-viewer@example.com", "viewer-password-1")
    return {"Authorization": f"Bearer {tokens['accessToken']}"}


async def create_site(
    client: httpx.AsyncClient, headers: dict[str, str], backend: NamedBackend
) -> int:
    """A TLS site through the API: its certificate, then the site proxying to `backend`."""
    cert, key = self_signed("shop.example.com")
    response = await client.post(
        "/api/ssl/upload",
        json={"domain": "shop.example.com", "cert_content": cert, "key_content": key},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    paths = response.json()
    port = free_port()
    site = site_body(
        "shop",
        port,
        f"http://{backend.address}",
        server_name="shop.example.com",
        ssl_cert=paths["cert_path"],
        ssl_key=paths["key_path"],
    )
    response = await client.post("/api/configs", json=site, headers=headers)
    assert response.status_code == 201, response.text
    return port


async def served(port: int, expected: bool) -> None:
    """Wait until nginx serves the site (or stops serving it): a reload only signals nginx."""
    last: Any = None
    async with httpx.AsyncClient(verify=False, timeout=5) as http:
        for _ in range(200):
            try:
                response = await http.get(
                    f"https://127.0.0.1:{port}/", headers={"Host": "shop.example.com"}
                )
                last = (response.status_code, response.text)
                if expected and last == (200, "backend one"):
                    return
            except httpx.HTTPError as exc:
                last = exc
                if not expected:
                    return
            await asyncio.sleep(0.05)
    raise AssertionError(f"site served={expected} never reached; last {last!r}")


async def create_backup(
    client: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> dict[str, Any]:
    response = await client.post("/api/backup/create", json=body or None, headers=headers)
    accepted = response.json()
    # 201 once written (the answer waits up to 10 s), 202 while it still is being written.
    written = accepted["status"] == "COMPLETED"
    assert response.status_code == (201 if written else 202), response.text
    for _ in range(1200):
        job = (await client.get(f"/api/jobs/{accepted['job_id']}", headers=headers)).json()
        if job["status"] in ("COMPLETED", "FAILED"):
            break
        await asyncio.sleep(0.05)
    assert job["status"] == "COMPLETED", job
    assert job["result"]["filename"] == accepted["filename"]
    result: dict[str, Any] = job["result"]
    return result


async def site_ids(client: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    return [site["id"] for site in (await client.get("/api/configs", headers=headers)).json()]


async def test_backup_delete_site_restore_brings_it_back(
    backup_client: httpx.AsyncClient,
    admin: dict[str, str],
    private_nginx: Any,
    backends: list[NamedBackend],
    tmp_path: Path,
) -> None:
    port = await create_site(backup_client, admin, backends[0])
    await served(port, expected=True)
    pool = {"name": "shop_pool", "servers": [{"address": backends[1].address, "weight": 2}]}
    response = await backup_client.post("/api/load-balancer/pools", json=pool, headers=admin)
    assert response.status_code == 201, response.text
    site_file = (private_nginx.conf_dir / SITE_FILE).read_text()

    backup = await create_backup(backup_client, admin, description="before the cleanup")
    archive_path = tmp_path / "backups" / backup["filename"]
    assert stat.S_IMODE(archive_path.stat().st_mode) == 0o600

    [entry] = (await backup_client.get("/api/backup/list", headers=admin)).json()["backups"]
    assert entry["filename"] == backup["filename"]
    assert entry["sha256"] == hashlib.sha256(archive_path.read_bytes()).hexdigest()
    assert entry["size"] == archive_path.stat().st_size
    assert entry["config_count"] == 2 and entry["cert_count"] == 2  # site + upstream
    assert entry["kind"] == "backup" and entry["description"] == "before the cleanup"
    assert entry["database"] == (
        "sqlite" if backup_client.app.state.settings.is_sqlite else "postgresql"
    )  # type: ignore[attr-defined]

    download = await backup_client.get(f"/api/backup/download/{backup['filename']}", headers=admin)
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/gzip"
    assert backup["filename"] in download.headers["content-disposition"]
    assert hashlib.sha256(download.content).hexdigest() == entry["sha256"]
    with tarfile.open(fileobj=io.BytesIO(download.content)) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        key_member = tar.getmember("certs/shop.example.com.key")
    assert names[0] == "manifest.json"
    assert f"nginx/{SITE_FILE}" in names
    assert manifest["members"]["certs/shop.example.com.key"]["mode"] == "0600"
    assert stat.S_IMODE(key_member.mode) == 0o600
    assert set(manifest["members"]) == set(names[1:])

    # Delete the site, its certificate and the pool.
    assert (await backup_client.delete("/api/configs/shop", headers=admin)).status_code == 200
    response = await backup_client.delete("/api/load-balancer/pools/shop_pool", headers=admin)
    assert response.status_code == 200
    for suffix in (".crt", ".key"):
        (tmp_path / "ssl" / f"shop.example.com{suffix}").unlink()
    await served(port, expected=False)
    assert await site_ids(backup_client, admin) == []

    restored = await backup_client.post(f"/api/backup/restore/{backup['filename']}", headers=admin)
    assert restored.status_code == 200, restored.text
    body = restored.json()
    assert body["restored"] == {
        "nginx_files": 2,
        "certificates": 2,
        "tables": {"ops_nginx_sites": 1, "ops_upstream_pools": 1},
    }
    await served(port, expected=True)
    assert await site_ids(backup_client, admin) == ["shop"]
    pools = (await backup_client.get("/api/load-balancer/pools", headers=admin)).json()["pools"]
    assert [(p["name"], p["servers"][0]["weight"]) for p in pools] == [("shop_pool", 2)]
    key_file = tmp_path / "ssl" / "shop.example.com.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert (private_nginx.conf_dir / SITE_FILE).read_text() == site_file

    # The state before the restore was kept as a safety backup.
    listing = (await backup_client.get("/api/backup/list", headers=admin)).json()["backups"]
    safety = [b for b in listing if b["filename"] == body["safety_backup"]]
    assert safety and safety[0]["kind"] == "safety" and safety[0]["config_count"] == 0

    async with backup_client.app.state.db.session() as session:  # type: ignore[attr-defined]
        actions = [
            row.action
            for row in (await session.execute(select(AuditEntry))).scalars()
            if row.action.startswith("backup.")
        ]
    assert sorted(actions) == ["backup.create", "backup.restore"]

    deleted = await backup_client.delete(f"/api/backup/delete/{backup['filename']}", headers=admin)
    assert deleted.status_code == 200
    assert not archive_path.exists()
    again = await backup_client.delete(f"/api/backup/delete/{backup['filename']}", headers=admin)
    assert again.status_code == 404


def rewrite(path: Path, change: Any) -> None:
    """Rewrite the archive keeping its manifest; `change(members)` edits {name: bytes}."""
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    change(members)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda m: m.update({f"nginx/{SITE_FILE}": m[f"nginx/{SITE_FILE}"] + b"# evil\n"}),
            "size mismatch",
        ),
        (
            lambda m: m.update(
                {f"nginx/{SITE_FILE}": m[f"nginx/{SITE_FILE}"].replace(b"server", b"SERVER", 1)}
            ),
            "checksum mismatch",
        ),
        (lambda m: m.pop(f"nginx/{SITE_FILE}"), "members missing"),
        (lambda m: m.update({"nginx/vpsapi-extra.conf": b"server {}\n"}), "not in its manifest"),
        (lambda m: m.update({"../escape.conf": b"x"}), "not in its manifest"),
        (lambda m: m.pop("manifest.json"), "no manifest"),
        (
            lambda m: m.update(
                {
                    "manifest.json": m["manifest.json"]
                    .replace(b'"sqlite"', b'"other"')
                    .replace(b'"postgresql"', b'"other"')
                }
            ),
            "holds a database dump for 'other'",
        ),
    ],
)
async def test_a_changed_archive_is_refused_and_nothing_restored(
    backup_client: httpx.AsyncClient,
    admin: dict[str, str],
    private_nginx: Any,
    tmp_path: Path,
    change: Any,
    message: str,
    backends: list[NamedBackend],
) -> None:
    port = await create_site(backup_client, admin, backends[0])
    backup = await create_backup(backup_client, admin)
    archive_path = tmp_path / "backups" / backup["filename"]
    rewrite(archive_path, change)
    assert (await backup_client.delete("/api/configs/shop", headers=admin)).status_code == 200

    response = await backup_client.post(f"/api/backup/restore/{backup['filename']}", headers=admin)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert not (private_nginx.conf_dir / SITE_FILE).exists()
    assert await site_ids(backup_client, admin) == []
    await served(port, expected=False)
    # No safety backup either: the archive was refused before anything happened.
    listing = (await backup_client.get("/api/backup/list", headers=admin)).json()["backups"]
    assert [b["filename"] for b in listing] == [backup["filename"]]


async def test_a_damaged_archive_is_refused(
    backup_client: httpx.AsyncClient, admin: dict[str, str], tmp_path: Path
) -> None:
    backup = await create_backup(backup_client, admin)
    archive_path = tmp_path / "backups" / backup["filename"]
    archive_path.write_bytes(archive_path.read_bytes()[: archive_path.stat().st_size // 2])
    response = await backup_client.post(f"/api/backup/restore/{backup['filename']}", headers=admin)
    assert response.status_code == 422
    assert (
        "nothing was restored" in response.json()["detail"]
        or "not a readable" in response.json()["detail"]
    )
    # The listing still answers, with the reason.
    [entry] = (await backup_client.get("/api/backup/list", headers=admin)).json()["backups"]
    assert entry["filename"] == backup["filename"]


async def test_restore_rolls_back_when_nginx_rejects_the_backup(
    backup_client: httpx.AsyncClient,
    admin: dict[str, str],
    private_nginx: Any,
    backends: list[NamedBackend],
    tmp_path: Path,
) -> None:
    port = await create_site(backup_client, admin, backends[0])
    # A broken file slipped into the managed directory when the backup was taken.
    broken = private_nginx.conf_dir / "vpsapi-broken.conf"
    broken.write_text("server { listen 127.0.0.1:1; nonsense_directive on; }\n")
    backup = await create_backup(backup_client, admin)
    broken.unlink()
    # Changes after the backup: another certificate, the site is gone.
    cert, key = self_signed("later.example.com")
    await backup_client.post(
        "/api/ssl/upload",
        json={"domain": "later.example.com", "cert_content": cert, "key_content": key},
        headers=admin,
    )
    assert (await backup_client.delete("/api/configs/shop", headers=admin)).status_code == 200
    await served(port, expected=False)

    response = await backup_client.post(f"/api/backup/restore/{backup['filename']}", headers=admin)
    assert response.status_code == 422
    assert "nonsense_directive" in response.json()["detail"]
    # Everything is as before the attempt.
    certs = sorted(p.name for p in (tmp_path / "ssl").iterdir())
    assert certs == [
        "later.example.com.crt",
        "later.example.com.key",
        "shop.example.com.crt",
        "shop.example.com.key",
    ]
    assert list(private_nginx.conf_dir.glob("*.conf")) == []
    assert await site_ids(backup_client, admin) == []
    await served(port, expected=False)


@pytest.mark.parametrize(
    "filename",
    [
        "../../etc/passwd",
        "..%2F..%2Fetc%2Fpasswd.tar.gz",
        "..",
        "backup.zip",
        "a b.tar.gz",
        ".hidden.tar.gz",
        "x..tar.gz",
        "%00.tar.gz",
        "a" * 293 + ".tar.gz",  # past NAME_MAX: was a 503 from ENAMETOOLONG
    ],
)
async def test_unsafe_filenames_are_refused(
    backup_client: httpx.AsyncClient, admin: dict[str, str], filename: str, tmp_path: Path
) -> None:
    (tmp_path / "outside.tar.gz").write_bytes(b"not yours")
    refused_changes = 0
    for method, path in (
        ("GET", f"/api/backup/download/{filename}"),
        ("POST", f"/api/backup/restore/{filename}"),
        ("DELETE", f"/api/backup/delete/{filename}"),
    ):
        response = await backup_client.request(method, path, headers=admin)
        if filename == "%00.tar.gz":
            # Refused at the service's front door (a NUL anywhere in a request), before
            # any route: in the seed-002 validation shape, and nothing to audit.
            assert response.status_code == 422, (path, response.status_code)
            continue
        assert response.status_code in (400, 404, 405), (path, response.status_code)
        refused_changes += method != "GET" and response.status_code == 400
    assert (tmp_path / "outside.tar.gz").exists()
    # Each refused change (a 400; 404 and 405 reached no handler) is audited as a failure.
    async with backup_client.app.state.db.session() as session:  # type: ignore[attr-defined]
        entries = (await session.execute(select(AuditEntry))).scalars().all()
    assert len(entries) == refused_changes
    assert all(entry.outcome == "failure" and "\x00" not in entry.target for entry in entries)
    if len(filename) > 200:
        assert refused_changes == 2


async def test_an_over_long_filename_is_a_400_not_a_503(
    backup_client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    name = "a" * 293 + ".tar.gz"
    for method, path in (
        ("GET", f"/api/backup/download/{name}"),
        ("POST", f"/api/backup/restore/{name}"),
        ("DELETE", f"/api/backup/delete/{name}"),
    ):
        response = await backup_client.request(method, path, headers=admin)
        assert response.status_code == 400, (path, response.text)
        assert "at most 200 characters" in response.json()["detail"]


async def test_unknown_backup_is_404(
    backup_client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    for method, path in (
        ("GET", "/api/backup/download/missing.tar.gz"),
        ("POST", "/api/backup/restore/missing.tar.gz"),
        ("DELETE", "/api/backup/delete/missing.tar.gz"),
    ):
        response = await backup_client.request(method, path, headers=admin)
        assert response.status_code == 404
        assert response.json()["detail"] == "Backup file not found: missing.tar.gz"


async def test_mutations_and_download_need_the_admin_role(
    backup_client: httpx.AsyncClient, admin: dict[str, str], viewer: dict[str, str], tmp_path: Path
) -> None:
    backup = await create_backup(backup_client, admin)
    name = backup["filename"]
    assert (await backup_client.post("/api/backup/create", headers=viewer)).status_code == 403
    assert (
        await backup_client.post(f"/api/backup/restore/{name}", headers=viewer)
    ).status_code == 403
    assert (
        await backup_client.delete(f"/api/backup/delete/{name}", headers=viewer)
    ).status_code == 403
    assert (
        await backup_client.get(f"/api/backup/download/{name}", headers=viewer)
    ).status_code == 403
    listing = await backup_client.get("/api/backup/list", headers=viewer)
    assert listing.status_code == 200 and len(listing.json()["backups"]) == 1
    assert (await backup_client.get("/api/backup/list")).status_code == 401
    assert (tmp_path / "backups" / name).exists()


async def test_retention_keeps_the_newest_and_the_recent(
    make_client: Any, private_nginx: Any, tmp_path: Path
) -> None:
    from support import ADMIN_EMAIL, ADMIN_PASSWORD, login
    from vpsapi.ops.backups.service import apply_retention

    client = await make_client(
        **private_nginx.settings(),
        ssl_cert_dir=tmp_path / "ssl",
        backup_dir=tmp_path / "backups",
        backup_keep_last=2,
        backup_keep_days=1,
        jobs_inprocess_workers=True,
    )
    headers = {
        "Authorization": f"Bearer {(await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))['accessToken']}"
    }
    first = [(await create_backup(client, headers))["filename"] for _ in range(3)]
    # All recent: nothing deleted although there are more than 2.
    assert len((await client.get("/api/backup/list", headers=headers)).json()["backups"]) == 3
    # Three days later, a new backup: only the newest two survive.
    old = time.time() - 3 * 86400
    for index, name in enumerate(first):
        os.utime(tmp_path / "backups" / name, (old + index, old + index))
    latest = await create_backup(client, headers)
    assert sorted(latest["retention_deleted"]) == sorted(first[:2])
    remaining = [
        b["filename"]
        for b in (await client.get("/api/backup/list", headers=headers)).json()["backups"]
    ]
    assert sorted(remaining) == sorted([latest["filename"], first[2]])
    # The scheduled run finds nothing more to do.
    assert apply_retention(client.app.state.settings) == []  # type: ignore[attr-defined]


async def test_ops_jobs_cannot_be_forged_through_the_generic_jobs_api(
    backup_client: httpx.AsyncClient, admin: dict[str, str], tmp_path: Path
) -> None:
    from support import SHARED_API_KEY

    token = (
        await backup_client.post("/api/auth/token", headers={"X-API-Key": SHARED_API_KEY})
    ).json()["token"]
    client_headers = {"Authorization": f"Bearer {token}"}
    for processing_type, item in (
        ("ops.backup.create", {"filename": "forged.tar.gz"}),
        ("ops.ssl.issue", {"names": ["forged.example.com"]}),
    ):
        response = await backup_client.post(
            "/api/jobs",
            json={"processingType": processing_type, "data": [item], "options": {"attempts": 1}},
            headers=client_headers,
        )
        # Not a public job type: refused at the door (the job seal is a second lock).
        assert response.status_code == 400, response.text
        assert "processingType" in response.text
    assert not (tmp_path / "backups" / "forged.tar.gz").exists()
    assert not (tmp_path / "ssl").exists() or not any((tmp_path / "ssl").iterdir())


async def test_restore_rolls_back_nginx_and_certificates_when_the_database_fails(
    backup_client: httpx.AsyncClient,
    admin: dict[str, str],
    private_nginx: Any,
    backends: list[NamedBackend],
    tmp_path: Path,
) -> None:
    port = await create_site(backup_client, admin, backends[0])
    backup = await create_backup(backup_client, admin)
    archive_path = tmp_path / "backups" / backup["filename"]

    def break_the_dump(members: dict[str, bytes]) -> None:
        """A well-formed archive (manifest agrees) whose database dump is garbage."""
        manifest = json.loads(members["manifest.json"])
        [dump] = [name for name in members if name.startswith("database/")]
        members[dump] = b"this is not a database dump" * 100
        manifest["members"][dump].update(
            sha256=hashlib.sha256(members[dump]).hexdigest(), size=len(members[dump])
        )
        members["manifest.json"] = json.dumps(manifest).encode()

    rewrite(archive_path, break_the_dump)
    assert (await backup_client.delete("/api/configs/shop", headers=admin)).status_code == 200
    cert, key = self_signed("later.example.com")
    response = await backup_client.post(
        "/api/ssl/upload",
        json={"domain": "later.example.com", "cert_content": cert, "key_content": key},
        headers=admin,
    )
    assert response.status_code == 200
    await served(port, expected=False)

    response = await backup_client.post(f"/api/backup/restore/{backup['filename']}", headers=admin)
    assert response.status_code == 422, response.text
    assert "the database dump could not be restored" in response.json()["detail"]
    # nginx had the site again for a moment; now everything is as before the attempt.
    assert list(private_nginx.conf_dir.glob("*.conf")) == []
    assert (tmp_path / "ssl" / "later.example.com.crt").exists()
    assert await site_ids(backup_client, admin) == []
    await served(port, expected=False)


async def test_a_created_backup_is_usable_as_soon_as_create_answers(
    backup_client: httpx.AsyncClient, admin: dict[str, str], tmp_path: Path
) -> None:
    """Create answers once the job has written the archive: the filename it names can be
    listed, downloaded and deleted right away (no polling of the job first)."""
    response = await backup_client.post(
        "/api/backup/create", json={"description": "at once"}, headers=admin
    )
    assert response.status_code == 201, response.text  # created, not merely accepted
    accepted = response.json()
    assert accepted["status"] == "COMPLETED" and accepted["message"] == "Backup created"
    name = accepted["filename"]
    listing = (await backup_client.get("/api/backup/list", headers=admin)).json()["backups"]
    assert [(b["filename"], b["description"]) for b in listing] == [(name, "at once")]
    download = await backup_client.get(f"/api/backup/download/{name}", headers=admin)
    assert download.status_code == 200
    assert download.content == (tmp_path / "backups" / name).read_bytes()
    deleted = await backup_client.delete(f"/api/backup/delete/{name}", headers=admin)
    assert deleted.status_code == 200, deleted.text


async def test_a_backup_still_being_written_is_a_409_naming_its_job(
    make_client: Any, private_nginx: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No worker runs here, so the job stays queued: create answers after its bounded wait
    with the job's status, and the archive's endpoints wait as long, then answer 409."""
    from support import ADMIN_EMAIL, ADMIN_PASSWORD, login
    from vpsapi.ops.backups import service

    monkeypatch.setattr(service, "BACKUP_WAIT_S", 0.3)
    client = await make_client(
        **private_nginx.settings(),
        ssl_cert_dir=tmp_path / "ssl",
        backup_dir=tmp_path / "backups",
        jobs_inprocess_workers=False,
    )
    token = (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))["accessToken"]
    headers = {"Authorization": f"Bearer {token}"}
    response = await client.post("/api/backup/create", headers=headers)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "PENDING" and accepted["message"] == "Backup started"
    name = accepted["filename"]
    for method, path in (
        ("GET", f"/api/backup/download/{name}"),
        ("POST", f"/api/backup/restore/{name}"),
        ("DELETE", f"/api/backup/delete/{name}"),
    ):
        refused = await client.request(method, path, headers=headers)
        assert refused.status_code == 409, (path, refused.text)
        assert accepted["job_id"] in refused.json()["detail"]
        assert refused.json()["job_id"] == accepted["job_id"]
    assert (await client.get("/api/backup/list", headers=headers)).json()["backups"] == []
    # Any other unknown name is still a plain 404.
    missing = await client.get("/api/backup/download/other.tar.gz", headers=headers)
    assert missing.status_code == 404


def write_archive(path: Path, manifest: Any) -> None:
    """An archive whose first member is `manifest` (any JSON, or its text), and nothing
    else."""
    data = manifest.encode() if isinstance(manifest, str) else json.dumps(manifest).encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize(
    ("manifest", "reason"),
    [
        (["not", "an", "object"], "not a vpsapi backup"),
        (json.dumps("just text"), "not a vpsapi backup"),
        ({"config_count": "abc"}, "config_count is not a count"),
        ({"cert_count": -1}, "cert_count is not a count"),
        ({"created_at": "yesterday"}, "created_at is not an ISO time"),
        ({"created_at": "2024-01-01T00:00:00"}, "created_at has no time zone"),
        ({"description": {"x": 1}}, "description is not text"),
        ({"database": "sqlite"}, "database.backend is missing"),
        ({"members": {"nginx/vpsapi-x.conf": "abc"}}, "is not described by"),
        ({"members": {"nginx/vpsapi-x.conf": {"sha256": "0" * 64, "size": "1"}}}, "described"),
        (
            {"members": {"nginx/vpsapi-x.conf": {"sha256": "0" * 64, "size": 1, "mode": "zz"}}},
            "is not described by",
        ),
        # The real manifest's text spoiled: deeper than the parser follows, and an
        # unpaired surrogate no answer can carry (each was a 500).
        (
            lambda text: text[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}",
            "not a readable backup",
        ),
        (lambda text: text[:-1] + ', "description": "\\ud800"}', "description is not text"),
    ],
)
async def test_a_malformed_manifest_is_listed_as_damaged_and_not_restored(
    backup_client: httpx.AsyncClient,
    admin: dict[str, str],
    tmp_path: Path,
    manifest: Any,
    reason: str,
) -> None:
    good = await create_backup(backup_client, admin)
    if isinstance(manifest, dict) or callable(manifest):  # the real manifest, spoiled
        with tarfile.open(tmp_path / "backups" / good["filename"]) as tar:
            real = tar.extractfile("manifest.json").read().decode()  # type: ignore[union-attr]
        manifest = manifest(real) if callable(manifest) else {**json.loads(real), **manifest}
    write_archive(tmp_path / "backups" / "damaged.tar.gz", manifest)

    listing = await backup_client.get("/api/backup/list", headers=admin)
    assert listing.status_code == 200, listing.text
    entries = {entry["filename"]: entry for entry in listing.json()["backups"]}
    assert entries[good["filename"]]["error"] is None
    damaged = entries["damaged.tar.gz"]
    assert reason in damaged["error"] and damaged["config_count"] == 0

    response = await backup_client.post("/api/backup/restore/damaged.tar.gz", headers=admin)
    assert response.status_code == 422, response.text
    assert reason in response.json()["detail"]
    # Refused before anything happened: no safety backup was taken.
    listing = (await backup_client.get("/api/backup/list", headers=admin)).json()["backups"]
    assert len(listing) == 2


async def test_a_certificate_file_name_that_is_not_utf8_backs_up_and_restores(
    backup_client: httpx.AsyncClient, admin: dict[str, str], tmp_path: Path
) -> None:
    """Its name is kept as its bytes (an unpaired surrogate in the manifest): the archive
    lists as sound and restores."""
    odd = os.fsencode(tmp_path / "ssl") + b"/caf\xe9.pem"
    os.makedirs(tmp_path / "ssl", exist_ok=True)
    with open(odd, "wb") as handle:
        handle.write(b"not a certificate\n")
    created = await create_backup(backup_client, admin)
    listing = (await backup_client.get("/api/backup/list", headers=admin)).json()["backups"]
    [entry] = [item for item in listing if item["filename"] == created["filename"]]
    assert entry["error"] is None, entry
    restored = await backup_client.post(f"/api/backup/restore/{created['filename']}", headers=admin)
    assert restored.status_code == 200, restored.text
