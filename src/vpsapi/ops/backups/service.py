"""Backups of what the ops module manages: the managed nginx files, SSL_CERT_DIR (keys
included, modes kept) and a consistent database dump, in one verified archive."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi import __version__
from vpsapi.config import Settings
from vpsapi.core.db import Database
from vpsapi.core.errors import Conflict, NotFound, Unprocessable
from vpsapi.core.events import EventBus
from vpsapi.jobs.engine import PENDING, PROCESSING, decode_blob
from vpsapi.jobs.models import JobRecord
from vpsapi.ops.backups import archive, database
from vpsapi.ops.backups.archive import Member
from vpsapi.ops.backups.schemas import BackupOut, Restored, RestoreResult
from vpsapi.ops.jobs import wait_for_job
from vpsapi.ops.nginx.control import MANAGED_PREFIX, NginxControl
from vpsapi.ops.ssl.acme import CHALLENGE_CONF_PREFIX
from vpsapi.ops.ssl.store import write_atomic

log = structlog.get_logger(__name__)

BACKUP_JOB = "ops.backup.create"
# How long a request waits for a backup job (create answers once the archive is there;
# a download, restore or delete of an archive still being written waits for it).
BACKUP_WAIT_S = 10.0
NGINX_DIR = "nginx"
CERTS_DIR = "certs"

Report = Callable[[int], Awaitable[None]]
Files = dict[str, tuple[bytes, int]]  # relative path -> (content, mode)


def new_filename(kind: str = "backup") -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
    return f"vpsapi-{kind}_{stamp}_{secrets.token_hex(3)}.tar.gz"


def backup_dir(settings: Settings) -> Path:
    directory = settings.effective_backup_dir
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return directory


def backup_path(settings: Settings, filename: str) -> Path:
    path = settings.effective_backup_dir / archive.check_filename(filename)
    if not path.is_file():
        raise NotFound(f"Backup file not found: {filename}")
    return path


async def unfinished_job(session: AsyncSession, filename: str) -> str | None:
    """The id of the waiting or running job that writes `filename`, if any."""
    query = select(JobRecord.id, JobRecord.payload).where(
        JobRecord.processing_type == BACKUP_JOB, JobRecord.status.in_((PENDING, PROCESSING))
    )
    for job_id, payload in (await session.execute(query)).all():
        items = (decode_blob(payload) or {}).get("data") or [{}]
        if isinstance(items[0], dict) and items[0].get("filename") == filename:
            return str(job_id)
    return None


async def find_backup(settings: Settings, db: Database, events: EventBus, filename: str) -> Path:
    """The archive; one that a backup job still writes is waited for (BACKUP_WAIT_S), then
    409 naming the job if it is still not there."""
    try:
        return backup_path(settings, filename)
    except NotFound:
        async with db.session(autocommit=True) as session:
            job_id = await unfinished_job(session, filename)
        if job_id is None:
            raise
    await wait_for_job(db, events, job_id, BACKUP_WAIT_S)
    try:
        return backup_path(settings, filename)
    except NotFound:
        raise Conflict(
            f"Backup {filename} is still being written: follow /api/jobs/{job_id}",
            extra={"job_id": job_id},
        ) from None


def _managed_nginx(nginx: NginxControl) -> dict[str, str]:
    """The managed files, without ACME challenge blocks (they live only during an order)."""
    return {
        name: content
        for name, content in nginx.managed_files().items()
        if not name.startswith(CHALLENGE_CONF_PREFIX)
    }


def _read_tree(directory: Path) -> Files:
    """Regular files under `directory` (temporary dot files skipped), modes kept."""
    files: Files = {}
    if not directory.is_dir():
        return files
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if (
            path.is_symlink()
            or not path.is_file()
            or any(p.startswith(".") for p in relative.parts)
        ):
            continue
        files[relative.as_posix()] = (path.read_bytes(), path.stat().st_mode & 0o777)
    return files


def _replace_tree(directory: Path, files: Files) -> None:
    """Make `directory` hold exactly `files`: each written atomically with its mode."""
    for relative, (content, mode) in files.items():
        write_atomic(directory / relative, content, mode)
    for relative in set(_read_tree(directory)) - set(files):
        (directory / relative).unlink(missing_ok=True)


async def create_backup(
    settings: Settings,
    nginx: NginxControl,
    filename: str,
    *,
    kind: str = "backup",
    created_by: str | None = None,
    description: str | None = None,
    report: Report | None = None,
) -> BackupOut:
    async def progress(percent: int) -> None:
        if report is not None:
            await report(percent)

    directory = backup_dir(settings)
    target = directory / archive.check_filename(filename)
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=directory) as staging:
        root = Path(staging)
        members: list[Member] = []
        nginx_files = _managed_nginx(nginx)
        for name, content in nginx_files.items():
            path = root / NGINX_DIR / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            members.append(Member(f"{NGINX_DIR}/{name}", path, 0o644))
        await progress(10)
        dump_path = root / database.member_name(settings)
        dump_path.parent.mkdir(parents=True, exist_ok=True)
        await database.dump(settings, dump_path)
        members.append(Member(database.member_name(settings), dump_path, 0o600))
        await progress(60)
        certs = await asyncio.to_thread(_read_tree, settings.ssl_cert_dir)
        for relative, (data, mode) in certs.items():
            path = root / CERTS_DIR / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            members.append(Member(f"{CERTS_DIR}/{relative}", path, mode))
        await progress(70)
        info = {
            "created_at": datetime.now(UTC).isoformat(),
            "created_by": created_by,
            "description": description,
            "kind": kind,
            "service_version": __version__,
            "database": {"backend": database.backend(settings)},
            "config_count": len(nginx_files),
            "cert_count": len(certs),
        }
        await asyncio.to_thread(archive.write, target, members, info)
    await progress(95)
    log.info("ops.backup.created", filename=filename, kind=kind)
    return await asyncio.to_thread(describe, target)


# sha256 of an archive, by (name, size, mtime): a listing does not re-read every archive.
_checksums: dict[tuple[str, int, int], str] = {}


def describe(path: Path) -> BackupOut:
    stat = path.stat()
    key = (path.name, stat.st_size, stat.st_mtime_ns)
    if key not in _checksums:
        _checksums[key] = archive.sha256_file(path)
    fallback = datetime.fromtimestamp(stat.st_mtime, UTC)
    try:
        manifest = archive.read_manifest(path)
    except Unprocessable as exc:
        # Listed all the same (it can be downloaded and deleted), with the reason.
        return BackupOut(
            filename=path.name,
            size=stat.st_size,
            sha256=_checksums[key],
            created_at=fallback,
            config_count=0,
            cert_count=0,
            kind="backup",
            error=exc.message,
        )
    created = manifest.get("created_at")  # read_manifest checked its shape
    return BackupOut(
        filename=path.name,
        size=stat.st_size,
        sha256=_checksums[key],
        created_at=datetime.fromisoformat(created) if created else fallback,
        config_count=manifest.get("config_count") or 0,
        cert_count=manifest.get("cert_count") or 0,
        database=manifest["database"]["backend"],
        kind="safety" if manifest.get("kind") == "safety" else "backup",
        description=manifest.get("description"),
        created_by=manifest.get("created_by"),
        version=manifest.get("version"),
    )


def _archives(settings: Settings) -> list[Path]:
    directory = settings.effective_backup_dir
    if not directory.is_dir():
        return []
    return [
        path
        for path in directory.iterdir()
        if archive.FILENAME.match(path.name) and not path.name.startswith(".") and path.is_file()
    ]


def list_backups(settings: Settings) -> list[BackupOut]:
    """Newest first."""
    entries = []
    for path in _archives(settings):
        try:
            entries.append(describe(path))
        except FileNotFoundError:
            continue  # deleted while the listing was made
    names = {entry.filename for entry in entries}
    for key in [key for key in _checksums if key[0] not in names]:
        del _checksums[key]  # deleted archives
    return sorted(entries, key=lambda entry: entry.created_at, reverse=True)


def delete_backup(settings: Settings, filename: str) -> BackupOut:
    path = backup_path(settings, filename)
    entry = describe(path)
    path.unlink()
    return entry


def apply_retention(settings: Settings) -> list[str]:
    """Delete the archives that are neither among the newest BACKUP_KEEP_LAST nor younger
    than BACKUP_KEEP_DAYS (so the newest N always survive, however old)."""
    archives = sorted(_archives(settings), key=lambda p: p.stat().st_mtime, reverse=True)
    cutoff = time.time() - settings.backup_keep_days * 86400
    deleted = []
    for index, path in enumerate(archives):
        if index >= settings.backup_keep_last and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            deleted.append(path.name)
    if deleted:
        log.info("ops.backup.retention", deleted=deleted)
    return deleted


@contextlib.contextmanager
def _restore_lock(settings: Settings) -> Iterator[None]:
    fd = os.open(backup_dir(settings) / ".restore.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise Conflict("another restore is running") from exc
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _nginx_files(root: Path) -> dict[str, str]:
    files = {}
    for path in sorted((root / NGINX_DIR).glob("*")):
        if not path.name.startswith(MANAGED_PREFIX) or not path.name.endswith(".conf"):
            raise Unprocessable(f"backup holds an unexpected nginx file {path.name!r}")
        files[path.name] = path.read_text()
    return files


async def restore_backup(
    settings: Settings, nginx: NginxControl, filename: str, *, restored_by: str | None
) -> RestoreResult:
    """Verify, take a safety backup, then put back certificates, nginx files (validated by
    nginx -t and reloaded) and the ops tables; any failure puts everything back."""
    path = backup_path(settings, filename)
    with (
        _restore_lock(settings),
        tempfile.TemporaryDirectory(prefix=".restore-", dir=backup_dir(settings)) as staging,
    ):
        root = Path(staging)
        manifest = await asyncio.to_thread(archive.extract_verified, path, root)
        kind = (manifest.get("database") or {}).get("backend")
        dump_file = root / (
            database.SQLITE_MEMBER if kind == "sqlite" else database.POSTGRES_MEMBER
        )
        if kind != database.backend(settings) or not dump_file.is_file():
            raise Unprocessable(
                f"{filename} holds a database dump for {kind!r}; the service runs on "
                f"{database.backend(settings)}"
            )
        nginx_files = _nginx_files(root)
        certs = await asyncio.to_thread(_read_tree, root / CERTS_DIR)

        safety = new_filename("safety")
        await create_backup(
            settings,
            nginx,
            safety,
            kind="safety",
            created_by=restored_by,
            description=f"state before restoring {filename}",
        )
        previous_certs = await asyncio.to_thread(_read_tree, settings.ssl_cert_dir)
        # One lock from the files to the tables: no site or pool change can fall between.
        async with nginx.exclusive():
            previous_nginx = _managed_nginx(nginx)
            nginx_changed = False
            try:
                # Certificates first: the restored nginx files may point at them.
                await asyncio.to_thread(_replace_tree, settings.ssl_cert_dir, certs)
                await nginx.replace_all(nginx_files, locked=True)
                nginx_changed = True
                tables = await database.restore_tables(settings, dump_file, kind)
            except BaseException as exc:
                log.warning("ops.backup.restore_failed", filename=filename, error=str(exc))
                await asyncio.to_thread(_replace_tree, settings.ssl_cert_dir, previous_certs)
                if nginx_changed:
                    with contextlib.suppress(Exception):
                        await nginx.replace_all(previous_nginx, locked=True)
                raise
    log.info("ops.backup.restored", filename=filename, safety_backup=safety)
    return RestoreResult(
        message="Backup restored successfully",
        filename=filename,
        safety_backup=safety,
        restored=Restored(nginx_files=len(nginx_files), certificates=len(certs), tables=tables),
    )


def summary(entry: BackupOut) -> dict[str, Any]:
    """What the audit log keeps of a backup."""
    return {"filename": entry.filename, "sha256": entry.sha256, "size": entry.size}
