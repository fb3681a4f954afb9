"""Certificate files in SSL_CERT_DIR: `<domain>.crt` (0644, chain), `<domain>.key` (0600)
and, for certificates issued here by ACME, `<domain>.acme.json` (names and account
e-mail, what a renewal needs). The default pair (DEFAULT_SSL_CERT/KEY) is listed too."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from vpsapi.config import Settings
from vpsapi.core.errors import NotFound, ServiceUnavailable
from vpsapi.ops.ssl.certs import (
    CertificateInfo,
    cert_stem,
    certificate_blocks,
    check_covers,
    holds_private_key,
    inspect_files,
    validate_pair,
)

log = structlog.get_logger(__name__)

CERT_SUFFIX = ".crt"
KEY_SUFFIX = ".key"
ACME_SUFFIX = ".acme.json"
CERT_MODE = 0o644
KEY_MODE = 0o600


@dataclass
class StoredCertificate:
    domain: str  # the file stem
    cert_path: Path
    key_path: Path | None
    info: CertificateInfo | None
    error: str | None = None
    is_default: bool = False
    acme: dict[str, Any] | None = None

    @property
    def source(self) -> str:
        if self.acme is not None:
            return "letsencrypt"
        return "default" if self.is_default else "custom"


def stem_for(domain: str) -> str:
    return cert_stem(domain)


def _load(
    domain: str, cert_path: Path, key_path: Path | None, *, is_default: bool
) -> StoredCertificate:
    key = key_path if key_path is not None and key_path.is_file() else None
    acme_path = cert_path.with_name(domain + ACME_SUFFIX)
    acme = None
    if acme_path.is_file():
        try:
            acme = json.loads(acme_path.read_text())
        except ValueError:
            acme = None
    try:
        info: CertificateInfo | None = inspect_files(cert_path, key)
        error = None
    except (OSError, ValueError) as exc:
        info, error = None, f"unreadable certificate: {exc}"
    return StoredCertificate(domain, cert_path, key, info, error, is_default, acme)


def scan(settings: Settings) -> list[StoredCertificate]:
    """Every certificate of SSL_CERT_DIR plus the default pair, sorted by domain."""
    default_cert = Path(settings.default_ssl_cert) if settings.default_ssl_cert else None
    default_key = Path(settings.default_ssl_key) if settings.default_ssl_key else None
    found: list[StoredCertificate] = []
    directory = settings.ssl_cert_dir
    if directory.is_dir():
        for cert_path in sorted(directory.glob("*" + CERT_SUFFIX)):
            if not cert_path.is_file() or cert_path.name.startswith("."):
                continue
            domain = cert_path.name.removesuffix(CERT_SUFFIX)
            is_default = default_cert is not None and _same(cert_path, default_cert)
            key_path = default_key if is_default and default_key else None
            key_path = key_path or cert_path.with_name(domain + KEY_SUFFIX)
            found.append(_load(domain, cert_path, key_path, is_default=is_default))
    listed = any(item.is_default for item in found)
    if default_cert is not None and default_cert.is_file() and not listed:
        domain = default_cert.name.removesuffix(CERT_SUFFIX).removesuffix(".pem")
        found.append(_load(domain, default_cert, default_key, is_default=True))
    return found


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def find(settings: Settings, domain: str) -> StoredCertificate:
    stem = stem_for(domain)
    for item in scan(settings):
        if item.domain == stem:
            return item
    raise NotFound(f"SSL certificate not found for domain {domain}")


def save_pair(
    settings: Settings,
    stem: str,
    cert_pem: bytes,
    key_pem: bytes,
    *,
    acme: dict[str, Any] | None = None,
    domain: str | None = None,
) -> StoredCertificate:
    """Validate (for `domain`, when given), then write key (0600) and certificate (0644),
    each atomically.

    An uploaded pair replaces an ACME-issued one: it is no longer renewed automatically."""
    info = validate_pair(cert_pem, key_pem)
    if domain is not None:
        check_covers(info, domain)
    directory = settings.ssl_cert_dir
    cert_path = directory / (stem + CERT_SUFFIX)
    key_path = directory / (stem + KEY_SUFFIX)
    acme_path = directory / (stem + ACME_SUFFIX)
    try:
        write_atomic(key_path, key_pem, KEY_MODE)
        write_atomic(cert_path, certificate_blocks(cert_pem), CERT_MODE)
        if acme is None:
            acme_path.unlink(missing_ok=True)
        else:
            write_atomic(acme_path, json.dumps(acme, indent=2).encode(), CERT_MODE)
    except OSError as exc:
        raise ServiceUnavailable(f"cannot write to {directory}: {exc.strerror}") from exc
    return StoredCertificate(stem, cert_path, key_path, info, acme=acme)


def strip_private_keys(settings: Settings) -> list[Path]:
    """Certificate files of SSL_CERT_DIR holding a private key (an upload made before such
    certificates were refused), written again with their certificates only: the files are
    world-readable. Returns the files rewritten; one that cannot be is left and logged."""
    directory = settings.ssl_cert_dir
    rewritten: list[Path] = []
    for cert_path in sorted(directory.glob("*" + CERT_SUFFIX)) if directory.is_dir() else []:
        try:
            pem = cert_path.read_bytes()
            if not holds_private_key(pem):
                continue
            write_atomic(cert_path, certificate_blocks(pem), CERT_MODE)
        except OSError as exc:
            log.warning("ssl_certificate_holds_key", path=str(cert_path), error=exc.strerror)
            continue
        log.warning("ssl_key_removed_from_certificate", path=str(cert_path))
        rewritten.append(cert_path)
    return rewritten


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write under a temporary name created with `mode` (never wider), then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(staging, mode)  # the umask may have narrowed it
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def due_for_renewal(settings: Settings) -> list[StoredCertificate]:
    """ACME-issued certificates with fewer than CERT_RENEW_BEFORE_DAYS days left."""
    return [
        item
        for item in scan(settings)
        if item.acme is not None
        and item.info is not None
        and item.info.days_left < settings.cert_renew_before_days
    ]
