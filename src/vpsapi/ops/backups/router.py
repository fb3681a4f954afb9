"""`/api/backup/*` (seed 002): create (a job), list, download, restore, delete."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Body, Request, Response, status

from vpsapi.auth.dependencies import AdminUser, CurrentUser
from vpsapi.core.db import SessionDep
from vpsapi.core.downloads import Download
from vpsapi.ops.audit.service import actor_name, record_audit
from vpsapi.ops.backups import service
from vpsapi.ops.backups.schemas import (
    BackupAccepted,
    BackupCreate,
    BackupList,
    DeleteResult,
    RestoreResult,
)
from vpsapi.ops.dependencies import NginxDep
from vpsapi.ops.jobs import accepted, submit_ops_job, wait_for_job

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/api/backup", tags=["ops: backups"])

# An archive named in the path (`_find`): a name that is no archive's, or one a backup job
# still writes.
_FOUND_BY_NAME: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid backup filename: expected name.tar.gz"},
    409: {"description": "Still being written: follow the job it names"},
}


async def _find(request: Request, filename: str) -> Path:
    """The archive, waiting for one that is still being written (404 / 409 otherwise)."""
    state = request.app.state
    return await service.find_backup(state.settings, state.db, state.events, filename)


@router.get("/list", response_model=BackupList, summary="Backups, newest first")
async def list_backups(request: Request, _: CurrentUser) -> BackupList:
    settings = request.app.state.settings
    return BackupList(backups=await asyncio.to_thread(service.list_backups, settings))


@router.post(
    "/create",
    response_model=BackupAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Write a backup archive (a job; answers once it is written, or after 10 s)",
    responses={
        201: {"model": BackupAccepted, "description": "Written: `status` COMPLETED"},
        202: {"description": "Still being written (or failed): follow the job"},
    },
)
async def create_backup(
    request: Request,
    response: Response,
    principal: AdminUser,
    session: SessionDep,
    body: Annotated[BackupCreate | None, Body()] = None,
) -> BackupAccepted:
    state = request.app.state
    filename = service.new_filename()
    job = await submit_ops_job(
        session,
        request.app.state.settings,
        principal,
        service.BACKUP_JOB,
        {
            "filename": filename,
            "created_by": actor_name(principal),
            "description": body.description if body else None,
        },
        attempts=2,
    )
    await record_audit(session, principal, "backup.create", filename, after={"job_id": job.id})
    await session.commit()  # a worker must find the row
    # Clients use the filename at once: answer when the archive is there (a large one
    # answers while still being written; its status says so).
    try:
        job_status = await wait_for_job(
            state.db, state.events, job.id, service.BACKUP_WAIT_S, engine=state.jobs_engine
        )
    except Exception as exc:  # the job is queued all the same: answer with it, not an error
        log.warning("ops.backup.wait_failed", job_id=job.id, error=str(exc))
        job_status = job.status
    message = {"COMPLETED": "Backup created", "FAILED": "Backup failed"}.get(
        job_status, "Backup started"
    )
    if job_status == "COMPLETED":  # the archive exists now, not just the request
        response.status_code = status.HTTP_201_CREATED
    return BackupAccepted(**accepted(job, message=message, filename=filename, status=job_status))


@router.get(
    "/download/{filename}",
    response_class=Download,
    summary="Download an archive (admins: it holds private keys)",
    responses={200: {"content": {"application/gzip": {}}}, **_FOUND_BY_NAME},
)
async def download_backup(filename: str, request: Request, _: AdminUser) -> Download:
    path = await _find(request, filename)
    return Download(path, filename=path.name, media_type="application/gzip")


@router.post(
    "/restore/{filename}",
    response_model=RestoreResult,
    summary="Restore nginx files, certificates and the ops tables from a backup",
    responses={
        **_FOUND_BY_NAME,
        409: {"description": "Still being written, or another restore is running"},
        422: {"description": "Validation failed, or the file is no (intact) backup"},
        503: {"description": "nginx cannot be run, or its main config is unreadable"},
    },
)
async def restore_backup(
    filename: str,
    request: Request,
    principal: AdminUser,
    session: SessionDep,
    nginx: NginxDep,
) -> RestoreResult:
    await _find(request, filename)
    result = await service.restore_backup(
        request.app.state.settings, nginx, filename, restored_by=actor_name(principal)
    )
    await record_audit(
        session,
        principal,
        "backup.restore",
        filename,
        before={"safety_backup": result.safety_backup},
        after=result.restored.model_dump(),
    )
    return result


@router.delete(
    "/delete/{filename}",
    response_model=DeleteResult,
    summary="Delete a backup",
    responses={400: _FOUND_BY_NAME[400]},
)
async def delete_backup(
    filename: str, request: Request, principal: AdminUser, session: SessionDep
) -> DeleteResult:
    await _find(request, filename)
    entry = await asyncio.to_thread(service.delete_backup, request.app.state.settings, filename)
    await record_audit(session, principal, "backup.delete", filename, before=service.summary(entry))
    return DeleteResult(message="Backup deleted successfully", filename=filename)
