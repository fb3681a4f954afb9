"""`/api/ssl/*` (seed 002): certificates in SSL_CERT_DIR, uploads, ACME issuance jobs."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Body, Depends, Query, Request, status

from vpsapi.auth.dependencies import AdminUser, CurrentUser
from vpsapi.core.db import SessionDep
from vpsapi.core.schemas import read_body_fields, validated_body
from vpsapi.ops.audit.service import record_audit
from vpsapi.ops.jobs import accepted, dispatch_job
from vpsapi.ops.ssl import service, store
from vpsapi.ops.ssl.schemas import (
    CertificateContent,
    CertificateJobAccepted,
    CertificateList,
    CertificateUpload,
    DomainList,
    LetsEncryptRequest,
    UploadResult,
)

router = APIRouter(prefix="/api/ssl", tags=["ops: TLS certificates"])


@router.get("/certificates", response_model=CertificateList, summary="List certificates")
async def list_certificates(request: Request, _: CurrentUser) -> CertificateList:
    settings = request.app.state.settings
    return CertificateList(
        certificates=await asyncio.to_thread(service.list_certificates, settings)
    )


_FORM_FIELDS = {"cert_file": "cert_content", "key_file": "key_content"}
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": CertificateUpload.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["domain"],
                    "properties": {
                        "domain": {"type": "string"},
                        "cert_file": {
                            "type": "string",
                            "format": "binary",
                            "description": "certificate, then its chain (PEM); or the text "
                            "field cert_content",
                        },
                        "key_file": {
                            "type": "string",
                            "format": "binary",
                            "description": "private key (PEM); or the text field key_content",
                        },
                    },
                }
            },
        },
    }
}


async def _read_upload(request: Request) -> CertificateUpload:
    """The original's JSON body, or the same as a form with the PEM files attached."""
    raw = await read_body_fields(request, max_files=2)
    if isinstance(raw, dict):
        raw = {_FORM_FIELDS.get(name, name): value for name, value in raw.items()}
    return validated_body(CertificateUpload, raw)


@router.post(
    "/upload",
    response_model=UploadResult,
    summary="Upload a certificate and its key (JSON, or a form with the PEM files)",
    responses={
        400: {"description": "Invalid domain"},
        422: {"description": "Validation failed, or the certificate or key is unusable"},
        503: {"description": "The certificate directory cannot be written"},
    },
    openapi_extra=_UPLOAD_BODY,
)
async def upload_certificate(
    request: Request,
    principal: AdminUser,  # before the body: a stranger hears 401, not what the body lacks
    body: Annotated[CertificateUpload, Depends(_read_upload)],
    session: SessionDep,
) -> UploadResult:
    settings = request.app.state.settings
    saved, replaced = await asyncio.to_thread(
        service.upload, settings, body.domain, body.cert_content, body.key_content
    )
    await record_audit(
        session,
        principal,
        "ssl.upload",
        saved.domain,
        before=service.summary(replaced),
        after=service.summary(saved),
    )
    return UploadResult(
        message="SSL certificate uploaded successfully",
        domain=saved.domain,
        cert_path=str(saved.cert_path),
        key_path=str(saved.key_path),
        certificate=service.certificate_out(saved, settings),
    )


@router.get(
    "/certificate/{domain}/content",
    response_model=CertificateContent,
    summary="The public certificate (PEM); never the key",
    responses={400: {"description": "Invalid domain"}},
)
async def certificate_content(domain: str, request: Request, _: CurrentUser) -> CertificateContent:
    item = await asyncio.to_thread(store.find, request.app.state.settings, domain)
    return CertificateContent(
        domain=item.domain,
        cert_content=await asyncio.to_thread(service.public_certificate, item),
        source=item.source,
        cert_path=str(item.cert_path),
    )


@router.get("/domains", response_model=DomainList, summary="Names covered by certificates")
async def list_domains(
    request: Request,
    _: CurrentUser,
    domain: Annotated[
        str | None,
        Query(max_length=253, description="only certificates that cover this host name"),
    ] = None,
) -> DomainList:
    return await asyncio.to_thread(service.domains, request.app.state.settings, domain)


@router.post(
    "/request-letsencrypt",
    response_model=CertificateJobAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Issue a certificate with ACME (HTTP-01) as a job",
    responses={
        400: {"description": "Too many names, or an invalid domain"},
        409: {"description": "A certificate for the domain is already being issued"},
    },
)
async def request_certificate(
    request: Request,
    principal: AdminUser,
    session: SessionDep,
    background: BackgroundTasks,
    body: Annotated[LetsEncryptRequest | None, Body()] = None,
    domain: Annotated[
        str | None, Query(max_length=253, description="the original's query parameter")
    ] = None,
) -> CertificateJobAccepted:
    names = service.requested_names(body, domain)
    email = str(body.email) if body and body.email else None
    job = await service.submit_issuance(
        session, request.app.state.settings, principal, names, email
    )
    await record_audit(
        session, principal, "ssl.request", names[0], after={"names": names, "job_id": job.id}
    )
    background.add_task(dispatch_job, request.app.state.jobs_engine, job.id)
    return CertificateJobAccepted(
        **accepted(
            job,
            message=f"Certificate requested for {', '.join(names)}",
            domain=names[0],
            domains=names,
        )
    )


@router.post(
    "/renew/{domain}",
    response_model=CertificateJobAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Renew an ACME-issued certificate as a job",
    responses={
        400: {"description": "Invalid domain"},
        409: {"description": "Not issued by ACME, or already being issued"},
    },
)
async def renew_certificate(
    domain: str,
    request: Request,
    principal: AdminUser,
    session: SessionDep,
    background: BackgroundTasks,
) -> CertificateJobAccepted:
    settings = request.app.state.settings
    item = await asyncio.to_thread(store.find, settings, domain)
    names, email = service.renewal_names(item)
    job = await service.submit_issuance(session, settings, principal, names, email)
    await record_audit(
        session,
        principal,
        "ssl.renew",
        item.domain,
        before=service.summary(item),
        after={"job_id": job.id},
    )
    background.add_task(dispatch_job, request.app.state.jobs_engine, job.id)
    return CertificateJobAccepted(
        **accepted(
            job, message=f"Renewal of {item.domain} started", domain=item.domain, domains=names
        )
    )
