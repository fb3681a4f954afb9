"""Long ops operations (certificate issuance, backups) run as jobs of the job engine:
progress on `/api/jobs/{id}` and `/api/sse/job-progress/{id}`, retries, any worker."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.config import Settings
from vpsapi.core.security import Principal
from vpsapi.jobs.engine import JobEngine
from vpsapi.jobs.models import JobRecord
from vpsapi.jobs.schemas import JobSubmit
from vpsapi.jobs.service import submit_job

# Scheduled work (renewals, retention) runs on behalf of the service itself.
SYSTEM_PRINCIPAL = Principal(kind="client", subject="system:ops", role="admin", username="system")


async def submit_ops_job(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    processing_type: str,
    payload: dict[str, Any],
    *,
    attempts: int,
) -> JobRecord:
    """Store the job in the caller's transaction; dispatch it once that has committed."""
    body = JobSubmit(processingType=processing_type, data=[payload], options={"attempts": attempts})
    job, _ = await submit_job(session, settings, principal, body, None)
    return job


async def dispatch_job(engine: JobEngine, job_id: str) -> None:
    """Hand a committed job to a worker now (else the sweeper finds it a moment later)."""
    if engine.dispatcher is not None:
        try:
            await engine.dispatcher.dispatch(job_id, 1)
        except Exception:  # the sweeper dispatches it
            return


def accepted(job: JobRecord, **extra: Any) -> dict[str, Any]:
    """The 202 body: the job id under both spellings the seeds use, and where to follow it."""
    return {
        "job_id": job.id,
        "jobId": job.id,
        "status": job.status,
        "status_url": f"/api/jobs/{job.id}",
        "progress_url": f"/api/sse/job-progress/{job.id}",
        **extra,
    }
