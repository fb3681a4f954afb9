"""Long ops operations (certificate issuance, backups) run as jobs of the job engine:
progress on `/api/jobs/{id}` and `/api/sse/job-progress/{id}`, retries, any worker."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.config import Settings
from vpsapi.core.db import Database
from vpsapi.core.errors import Forbidden
from vpsapi.core.events import EventBus
from vpsapi.core.security import Principal
from vpsapi.jobs.engine import PENDING, TERMINAL, JobEngine, job_channel
from vpsapi.jobs.schemas import JobSubmit
from vpsapi.jobs.service import JobView, job_status, submit_job

SEAL = "ops_seal"

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
    timeout: int | None = None,
) -> JobView:
    """Store the job in the caller's transaction; dispatch it once that has committed."""
    sealed = {**payload, SEAL: _mac(settings, processing_type, payload)}
    options: dict[str, Any] = {"attempts": attempts}
    if timeout is not None:
        options["timeout"] = timeout
    # Ops types are not public (POST /api/jobs refuses them): skip that check here.
    body = JobSubmit.model_construct(processingType=processing_type, data=[sealed], options=options)
    job, _ = await submit_job(session, settings, principal, body, None)
    return job


def _mac(settings: Settings, processing_type: str, payload: dict[str, Any]) -> str:
    message = json.dumps([processing_type, payload], sort_keys=True, separators=(",", ":"))
    key = hashlib.sha256(b"vpsapi-ops-job:" + settings.jwt_signing_key().encode()).digest()
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def unseal(settings: Settings, processing_type: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The payload of a job submitted through `submit_ops_job`.

    The generic `/api/jobs` accepts every registered processing type from any client;
    ops jobs act with admin rights (nginx, certificates, backups), so a processor runs
    only a payload sealed by this module with the service's secret."""
    payload = dict(items[0]) if items and isinstance(items[0], dict) else {}
    seal = payload.pop(SEAL, None)
    expected = _mac(settings, processing_type, payload)
    if not isinstance(seal, str) or not hmac.compare_digest(seal, expected):
        raise Forbidden(f"{processing_type} jobs are started through the ops API only")
    return payload


async def dispatch_job(engine: JobEngine, job_id: str) -> None:
    """Hand a committed job to a worker now (else the sweeper finds it a moment later)."""
    if engine.dispatcher is not None:
        try:
            await engine.dispatcher.dispatch(job_id, 1)
        except Exception:  # the sweeper dispatches it
            return


async def wait_for_job(
    db: Database,
    events: EventBus,
    job_id: str,
    timeout: float,
    *,
    engine: JobEngine | None = None,
) -> str:
    """Wait up to `timeout` seconds for a job to end (dispatching it first when `engine`
    is given: its row must be committed); returns its status then. Woken by the job's
    events, and the row is re-read every half second, so a lost event costs nothing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    # Subscribed before the dispatch, so the end of a quick job cannot be missed.
    async with events.subscribe(job_channel(job_id)) as subscription:
        if engine is not None:
            await dispatch_job(engine, job_id)
        while True:
            async with db.session(autocommit=True) as read:
                status = await job_status(read, job_id) or PENDING
            remaining = deadline - loop.time()
            if status in TERMINAL or remaining <= 0:
                return status
            await subscription.get(timeout=min(remaining, 0.5))
            while not subscription.queue.empty():  # a burst of progress: one re-read
                subscription.queue.get_nowait()


def accepted(job: JobView, **extra: Any) -> dict[str, Any]:
    """The 202 body: the job id under both spellings the seeds use, and where to follow it."""
    return {
        "job_id": job.id,
        "jobId": job.id,
        "status": job.status,
        "status_url": f"/api/jobs/{job.id}",
        "progress_url": f"/api/sse/job-progress/{job.id}",
        **extra,
    }
