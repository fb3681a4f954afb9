"""TLS certificates: list, upload, covered names, ACME issuance and renewal as jobs."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.config import Settings
from vpsapi.core.db import Database
from vpsapi.core.errors import BadRequest, Conflict, Forbidden, Unprocessable, ValidationFailed
from vpsapi.core.security import Principal
from vpsapi.jobs.engine import PENDING, PROCESSING, JobEngine, decode_blob
from vpsapi.jobs.models import JobRecord
from vpsapi.jobs.service import JobView
from vpsapi.ops.jobs import SYSTEM_PRINCIPAL, dispatch_job, submit_ops_job, unseal
from vpsapi.ops.ssl import store
from vpsapi.ops.ssl.certs import certificate_blocks, covers, is_hostname, is_ip_address
from vpsapi.ops.ssl.schemas import CertificateOut, DomainEntry, DomainList, LetsEncryptRequest
from vpsapi.ops.ssl.store import StoredCertificate

log = structlog.get_logger(__name__)

ISSUE_JOB = "ops.ssl.issue"
MAX_NAMES = 100


def status_of(item: StoredCertificate, settings: Settings) -> str:
    if item.info is None:
        return "invalid"
    if item.info.days_left < 0:
        return "expired"
    return "expiring" if item.info.days_left < settings.cert_renew_before_days else "valid"


def certificate_out(item: StoredCertificate, settings: Settings) -> CertificateOut:
    info = item.info
    return CertificateOut(
        domain=item.domain,
        names=info.names if info else [],
        subject=info.subject if info else None,
        common_name=info.common_name if info else None,
        sans=info.sans if info else [],
        issuer=info.issuer_name if info else None,
        issuer_dn=info.issuer if info else None,
        not_before=info.not_before if info else None,
        not_after=info.not_after if info else None,
        expires=info.not_after if info else None,
        days_left=info.days_left if info else None,
        status=status_of(item, settings),
        key_match=info.key_match if info else None,
        cert_path=str(item.cert_path),
        key_path=str(item.key_path) if item.key_path else None,
        is_default=item.is_default,
        auto_renew=item.acme is not None,
        source=item.source,
        serial=info.serial if info else None,
        fingerprint_sha256=info.fingerprint_sha256 if info else None,
        chain_length=info.chain_length if info else None,
        error=item.error,
    )


def list_certificates(settings: Settings) -> list[CertificateOut]:
    return [certificate_out(item, settings) for item in store.scan(settings)]


def summary(item: StoredCertificate | None) -> dict[str, Any] | None:
    """What the audit log keeps of a certificate (never key material)."""
    if item is None or item.info is None:
        return None
    return {
        "names": item.info.names,
        "fingerprint_sha256": item.info.fingerprint_sha256,
        "not_after": item.info.not_after.isoformat(),
    }


def existing(settings: Settings, stem: str) -> StoredCertificate | None:
    return next((item for item in store.scan(settings) if item.domain == stem), None)


def upload(
    settings: Settings, domain: str, cert_pem: str, key_pem: str
) -> tuple[StoredCertificate, StoredCertificate | None]:
    """Validate and store a pair; returns (new, replaced)."""
    domain = domain.strip()
    stem = store.stem_for(domain)
    before = existing(settings, stem)
    saved = store.save_pair(settings, stem, cert_pem.encode(), key_pem.encode(), domain=domain)
    return saved, before


def public_certificate(item: StoredCertificate) -> str:
    """What a content request gets: the certificates only, even from a file uploaded
    before a key beside them was refused."""
    return certificate_blocks(item.cert_path.read_bytes()).decode()


def domains(settings: Settings, query: str | None) -> DomainList:
    if query is not None and not is_hostname(query.strip().lower()):
        raise Unprocessable(f"invalid domain {query!r}: use a host name such as a.example.com")
    entries = []
    for item in store.scan(settings):
        for name in item.info.names if item.info else []:
            if query is not None and not covers(name, query.strip()):
                continue
            entries.append(
                DomainEntry(
                    domain=name,
                    wildcard=name.startswith("*."),
                    certificate=item.domain,
                    source=item.source,
                    cert_path=str(item.cert_path),
                    key_path=str(item.key_path) if item.key_path else None,
                    not_after=item.info.not_after if item.info else None,
                    days_left=item.info.days_left if item.info else None,
                    status=status_of(item, settings),
                    is_default=item.is_default,
                )
            )
    if query is None:
        return DomainList(domains=entries)
    usable = any(entry.status in ("valid", "expiring") for entry in entries)
    return DomainList(domains=entries, domain=query.strip().lower(), covered=usable)


def requested_names(body: LetsEncryptRequest | None, query_domain: str | None) -> list[str]:
    """The names of an order, checked: host names only (HTTP-01 cannot prove a wildcard,
    and an IP address would fail only at the CA, a job later)."""
    names: list[str] = []
    for name in [
        query_domain,
        body.domain if body else None,
        *((body.domains or []) if body else []),
    ]:
        if name is not None and name.strip().lower() not in names:
            names.append(name.strip().lower())
    if not names:
        # Reported as FastAPI reports a missing required field: 422 naming `domain`.
        missing = "give the domain to certify: {domain} or {domains: [...]}"
        raise ValidationFailed([{"field": "domain", "message": missing}])
    if len(names) > MAX_NAMES:
        raise BadRequest(f"at most {MAX_NAMES} names per certificate")
    for name in names:
        if name.startswith("*."):
            raise Unprocessable(
                f"{name}: wildcard names need the DNS-01 challenge; "
                "upload a wildcard certificate instead"
            )
        if is_ip_address(name):
            raise Unprocessable(
                f"{name} is an IP address: certificates are requested for host names "
                "only, such as example.com"
            )
        if not is_hostname(name):
            raise Unprocessable(f"invalid domain {name!r}: use a host name such as example.com")
    return names


async def _active_issuances(session: AsyncSession, settings: Settings) -> set[str]:
    """Certificate stems with an issuance job waiting or running."""
    rows = await session.execute(
        select(JobRecord.payload).where(
            JobRecord.processing_type == ISSUE_JOB,
            JobRecord.status.in_((PENDING, PROCESSING)),
        )
    )
    stems = set()
    for (payload,) in rows:
        try:  # only genuine ops jobs: /api/jobs lets anyone queue a (failing) forgery
            order = unseal(settings, ISSUE_JOB, decode_blob(payload)["data"])
        except Forbidden:
            continue
        stems.add(store.stem_for(order["names"][0]))
    return stems


async def submit_issuance(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    names: list[str],
    email: str | None,
) -> JobView:
    stem = store.stem_for(names[0])
    if stem in await _active_issuances(session, settings):
        raise Conflict(f"a certificate for {names[0]} is already being issued")
    return await submit_ops_job(
        session,
        settings,
        principal,
        ISSUE_JOB,
        {"names": names, "email": email or settings.letsencrypt_email or None},
        # A failed validation fails again the same way and counts against CA limits.
        attempts=1,
    )


def renewal_names(item: StoredCertificate) -> tuple[list[str], str | None]:
    if item.acme is None:
        raise Conflict(
            f"{item.domain} was not issued here by ACME; upload its renewed certificate "
            "or request a new one with /api/ssl/request-letsencrypt"
        )
    names = [str(name) for name in item.acme.get("names") or (item.info.names if item.info else [])]
    email = item.acme.get("email")
    return names, str(email) if email else None


async def renew_due(db: Database, settings: Settings, engine: JobEngine) -> list[str]:
    """The scheduled renewal: one issuance job per ACME certificate that is due.

    Processes sharing the data directory take turns (file lock); a certificate whose
    issuance job is already waiting or running is skipped."""
    with _exclusive(settings) as acquired:
        if not acquired:
            return []
        due = store.due_for_renewal(settings)
        if not due:
            return []
        job_ids = []
        async with db.session() as session:
            active = await _active_issuances(session, settings)
            for item in due:
                if item.domain in active:
                    continue
                names, email = renewal_names(item)
                job = await submit_ops_job(
                    session,
                    settings,
                    SYSTEM_PRINCIPAL,
                    ISSUE_JOB,
                    {"names": names, "email": email, "renewal": True},
                    attempts=1,
                )
                job_ids.append(job.id)
        for job_id in job_ids:
            await dispatch_job(engine, job_id)
        log.info("ops.ssl.renewals_submitted", count=len(job_ids))
        return job_ids


@contextlib.contextmanager
def _exclusive(settings: Settings) -> Iterator[bool]:
    path = settings.ensure_data_dir() / ".ssl-renewal.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
