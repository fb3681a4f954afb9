"""The backup archive: a `.tar.gz` whose first member is `manifest.json` (format version,
creation time, sha256 + size + mode of every other member). Reading one back checks
every member against the manifest before anything is used."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import tarfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from vpsapi.core.errors import BadRequest, Unprocessable

FORMAT = "vpsapi-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FILENAME = re.compile(r"^[A-Za-z0-9._-]+\.tar\.gz$")
# Ours are ~45 characters; the file system refuses names over 255 (ENAMETOOLONG), and
# the staging name `.<name>.<hex>.partial` needs room too.
FILENAME_MAX = 200
ARCHIVE_MODE = 0o600  # it holds private keys and the database
_CHUNK = 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MODE = re.compile(r"^0?[0-7]{3,4}$")


def check_filename(filename: str) -> str:
    """Only plain names of our pattern: nothing that could leave BACKUP_DIR."""
    if len(filename) > FILENAME_MAX:
        raise BadRequest(
            f"invalid backup filename {filename[:40]!r}...: at most {FILENAME_MAX} characters"
        )
    if not FILENAME.match(filename) or filename.startswith(".") or ".." in filename:
        raise BadRequest(f"invalid backup filename {filename!r}: expected name.tar.gz")
    return filename


@dataclass(frozen=True)
class Member:
    name: str  # path inside the archive, e.g. `nginx/vpsapi-site.conf`
    source: Path
    mode: int


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write(target: Path, members: list[Member], info: dict[str, Any]) -> dict[str, Any]:
    """Write the archive under a temporary name, then rename it into place."""
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        **info,
        "members": {
            member.name: {
                "sha256": sha256_file(member.source),
                "size": member.source.stat().st_size,
                "mode": f"{member.mode:04o}",
            }
            for member in members
        },
    }
    staging = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, ARCHIVE_MODE)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            data = json.dumps(manifest, indent=2).encode()
            entry = tarfile.TarInfo(MANIFEST)
            entry.size, entry.mode, entry.mtime = len(data), 0o644, int(time.time())
            tar.addfile(entry, io.BytesIO(data))
            for member in members:
                entry = tar.gettarinfo(str(member.source), arcname=member.name)
                entry.mode, entry.uid, entry.gid, entry.uname, entry.gname = (
                    member.mode,
                    0,
                    0,
                    "",
                    "",
                )
                with member.source.open("rb") as handle:
                    tar.addfile(entry, handle)
            tar.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(staging, target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return manifest


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest alone (the first member: cheap even for a large archive)."""
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile():
                raise Unprocessable(f"{path.name} is not a vpsapi backup (no manifest)")
            handle = tar.extractfile(first)
            assert handle is not None
            manifest: Any = json.loads(handle.read())
    # RecursionError: nesting json.loads cannot follow (a hand-made manifest).
    except (tarfile.TarError, OSError, EOFError, ValueError, RecursionError) as exc:
        raise Unprocessable(f"{path.name} is not a readable backup: {exc}") from exc
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or not isinstance(manifest.get("members"), dict)
    ):
        raise Unprocessable(f"{path.name} is not a vpsapi backup (unknown manifest)")
    if manifest.get("version") != FORMAT_VERSION:
        raise Unprocessable(f"{path.name} has backup format {manifest.get('version')!r}")
    problem = _manifest_problem(manifest)
    if problem is not None:
        raise Unprocessable(f"{path.name} has a damaged manifest: {problem}")
    return manifest


def _manifest_problem(manifest: dict[str, Any]) -> str | None:
    """What in a manifest does not have the shape `write` gives it, or None. Everything
    read from it later (listing, restore) may then rely on its types."""
    for field in ("config_count", "cert_count"):
        value = manifest.get(field, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"{field} is not a count"
    for field in ("created_at", "created_by", "description", "kind"):
        # Text a listing shows: no unpaired surrogate, which no answer can carry (member
        # names may hold some: a file name that is not UTF-8, kept as its bytes).
        if not _is_text(manifest.get(field, "")):
            return f"{field} is not text"
    try:
        created = datetime.fromisoformat(manifest.get("created_at") or "2000-01-01T00:00:00Z")
    except ValueError:
        return "created_at is not an ISO time"
    if created.tzinfo is None:
        return "created_at has no time zone"
    database = manifest.get("database")
    if (
        not isinstance(database, dict)
        or not isinstance(database.get("backend"), str)
        or not _is_text(database["backend"])
    ):
        return "database.backend is missing"
    for name, member in manifest["members"].items():
        if (
            not isinstance(member, dict)
            or not isinstance(member.get("sha256"), str)
            or not _SHA256.match(member["sha256"])
            or not isinstance(member.get("size"), int)
            or isinstance(member.get("size"), bool)
            or member["size"] < 0
            or not _MODE.match(str(member.get("mode", "0600")))
        ):
            return f"member {name!r} is not described by sha256, size and mode"
    return None


def _is_text(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _safe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and "\\" not in name and bool(name)


def extract_verified(path: Path, dest: Path) -> dict[str, Any]:
    """Extract into `dest`, checking every member against the manifest; raise
    Unprocessable on any difference (changed, missing, extra or unsafe members)."""
    manifest = read_manifest(path)
    expected: dict[str, dict[str, Any]] = manifest["members"]
    seen: set[str] = set()
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for entry in tar:
                if entry.name == MANIFEST:
                    continue
                if entry.name not in expected or not _safe_name(entry.name):
                    raise Unprocessable(f"backup member {entry.name!r} is not in its manifest")
                if not entry.isfile():
                    raise Unprocessable(f"backup member {entry.name!r} is not a regular file")
                if entry.name in seen:
                    raise Unprocessable(f"backup member {entry.name!r} appears twice")
                seen.add(entry.name)
                want = expected[entry.name]
                if entry.size != want.get("size"):  # before reading: no unbounded extraction
                    raise Unprocessable(
                        f"size mismatch for {entry.name!r}: the backup was changed or is "
                        "damaged; nothing was restored"
                    )
                target = dest / entry.name
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                source = tar.extractfile(entry)
                assert source is not None
                with target.open("wb") as out:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                if digest.hexdigest() != want.get("sha256"):
                    raise Unprocessable(
                        f"checksum mismatch for {entry.name!r}: the backup was changed or is "
                        "damaged; nothing was restored"
                    )
                target.chmod(int(str(want.get("mode", "0600")), 8) & 0o777)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise Unprocessable(f"{path.name} is damaged: {exc}; nothing was restored") from exc
    missing = sorted(set(expected) - seen)
    if missing:
        raise Unprocessable(f"backup members missing: {', '.join(missing)}; nothing was restored")
    return manifest
