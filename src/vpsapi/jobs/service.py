"""Job submission, reads, listing, cancellation and retention: no HTTP here."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Protocol

from sqlalchemy import Integer, Select, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.config import Settings
from vpsapi.core.db import utcnow
from vpsapi.core.errors import BadRequest, Conflict, NotFound, ValidationFailed
from vpsapi.core.pagination import cursor_params, encode_cursor, older_than_cursor
from vpsapi.core.search import SearchHit, text_matches
from vpsapi.core.security import Principal
from vpsapi.jobs.engine import (
    CANCELLED,
    COMPLETED,
    FAILED,
    JOBS,
    PENDING,
    PROCESSING,
    TERMINAL,
    JobState,
    decode_blob,
    encode_blob,
)
from vpsapi.jobs.models import JobRecord
from vpsapi.jobs.schemas import JobOut, JobSubmit

IDEMPOTENCY_WINDOW = timedelta(hours=24)


def new_job_id() -> str:
    return f"job_{uuid.uuid4().hex}"


def _int_option(options: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = options.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        field = f"options.{name}"
        raise ValidationFailed(
            [{"field": field, "message": f"must be an integer from {low} to {high}"}]
        )
    return value


class JobView(JobState, Protocol):
    """What a job's answer is made of: a `JobRecord`, or a row of `VIEW_COLUMNS`."""

    @property
    def owner(self) -> str: ...
    @property
    def processing_type(self) -> str: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def result(self) -> bytes | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def lease_owner(self) -> str | None: ...
    @property
    def run_at(self) -> datetime: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def data_count(self) -> int | None: ...


# Reads for answers select these columns as plain rows, with statements built once: the
# ORM's entity loading and statement construction cost more than the query itself.
VIEW_COLUMNS = tuple(column for column in JOBS.c if column.name != "payload")
_BY_ID = select(*VIEW_COLUMNS).where(JOBS.c.id == bindparam("job_id"))
_STATUS_BY_ID = select(JOBS.c.status).where(JOBS.c.id == bindparam("job_id"))
_BY_IDEMPOTENCY_KEY = select(*VIEW_COLUMNS).where(
    JOBS.c.owner == bindparam("owner"), JOBS.c.idempotency_key == bindparam("key")
)
_FORGET_IDEMPOTENCY_KEY = (
    update(JOBS).where(JOBS.c.id == bindparam("job_id")).values(idempotency_key=None)
)
_INSERT = insert(JOBS).returning(*VIEW_COLUMNS)


@cache
def _page_statement(owned: bool, by_status: bool, by_type: bool, after: bool) -> Select[Any]:
    """A list page's query for one combination of filters (16 at most)."""
    query = select(*VIEW_COLUMNS)
    if owned:
        query = query.where(JOBS.c.owner == bindparam("owner"))
    if by_status:
        query = query.where(JOBS.c.status == bindparam("status"))
    if by_type:
        query = query.where(JOBS.c.processing_type == bindparam("processing_type"))
    if after:
        query = query.where(older_than_cursor(JOBS.c.created_at, JOBS.c.id))
    return query.order_by(JOBS.c.created_at.desc(), JOBS.c.id.desc()).limit(
        bindparam("limit", type_=Integer)
    )


def job_out(job: JobView) -> JobOut:
    waiting = job.status == PROCESSING and job.lease_owner is None and job.error is not None
    return JobOut(
        jobId=job.id,
        status=job.status,
        progress=job.progress,
        processingType=job.processing_type,
        createdAt=job.created_at,
        updatedAt=job.updated_at,
        startedAt=job.started_at,
        # Only a success completes (seed 000 writes `completedAt` then, `failedAt` else).
        completedAt=job.finished_at if job.status == COMPLETED else None,
        attempts=job.attempts,
        maxAttempts=job.max_attempts,
        nextAttemptAt=job.run_at if waiting else None,
        lastError=job.error if job.status not in TERMINAL else None,
        result=decode_blob(job.result) if job.result is not None else None,
        error=job.error if job.status in (FAILED, CANCELLED) else None,
        dataCount=job.data_count,
        processingTime=(
            _milliseconds(job.finished_at - job.created_at)
            if job.status == COMPLETED and job.finished_at is not None
            else None
        ),
        failedAt=job.finished_at if job.status == FAILED else None,
        cancelledAt=job.finished_at if job.status == CANCELLED else None,
    )


def _milliseconds(span: timedelta) -> int:
    return int(span.total_seconds() * 1000)


async def submit_job(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    body: JobSubmit,
    idempotency_key: str | None,
) -> tuple[JobView, bool]:
    """Store a new PENDING job; returns (job, created). An Idempotency-Key seen in the
    last 24 h returns the job it created instead."""
    options = body.options
    max_attempts = _int_option(options, "attempts", settings.job_max_attempts, 1, 20)
    timeout = _int_option(options, "timeout", settings.job_timeout_seconds, 1, 86_400)
    if idempotency_key is not None:
        if not 1 <= len(idempotency_key) <= 255:
            raise BadRequest("Idempotency-Key must be 1 to 255 characters")
        existing = await _by_idempotency_key(session, principal.subject, idempotency_key)
        if existing is not None:
            if existing.created_at > utcnow() - IDEMPOTENCY_WINDOW:
                return existing, False
            # Expired: the key may be used again.
            await session.execute(_FORGET_IDEMPOTENCY_KEY, {"job_id": existing.id})
    now = utcnow()
    values = {
        "id": new_job_id(),
        "owner": principal.subject,
        "processing_type": body.processingType,
        "status": PENDING,
        "progress": 0,
        "seq": 0,
        "payload": encode_blob({"data": body.data, "options": options}, 0),
        "data_count": len(body.data),
        "attempts": 0,
        "max_attempts": max_attempts,
        "timeout_seconds": timeout,
        "run_at": now,
        "created_at": now,
        "updated_at": now,
        "idempotency_key": idempotency_key,
    }
    try:
        job: JobView = (await session.execute(_INSERT, values)).one()
    except IntegrityError as exc:  # the same key raced in from another request
        await session.rollback()
        existing = await _by_idempotency_key(session, principal.subject, idempotency_key or "")
        if existing is None:
            raise Conflict("Job could not be created, try again") from exc
        return existing, False
    return job, True


async def _by_idempotency_key(session: AsyncSession, owner: str, key: str) -> JobView | None:
    found: JobView | None = (
        await session.execute(_BY_IDEMPOTENCY_KEY, {"owner": owner, "key": key})
    ).one_or_none()
    return found


async def job_status(session: AsyncSession, job_id: str) -> str | None:
    """A job's status, None for an unknown id; unchecked, for the code that submitted it."""
    status: str | None = (
        await session.execute(_STATUS_BY_ID, {"job_id": job_id})
    ).scalar_one_or_none()
    return status


async def get_job(session: AsyncSession, principal: Principal, job_id: str) -> JobView:
    """The caller's job (admins: any job); 404 for unknown and foreign ids alike."""
    job: JobView | None = (await session.execute(_BY_ID, {"job_id": job_id})).one_or_none()
    if job is None or not (principal.is_admin or job.owner == principal.subject):
        raise NotFound("Job not found")
    return job


async def list_jobs(
    session: AsyncSession,
    principal: Principal,
    *,
    status: str | None,
    processing_type: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[JobView], str | None]:
    params: dict[str, Any] = {"limit": limit + 1}
    if not principal.is_admin:
        params["owner"] = principal.subject
    if status is not None:
        params["status"] = status
    if processing_type is not None:
        params["processing_type"] = processing_type
    if cursor is not None:
        params.update(cursor_params(cursor))
    query = _page_statement(
        not principal.is_admin, status is not None, processing_type is not None, cursor is not None
    )
    jobs: list[JobView] = list(await session.execute(query, params))
    next_cursor = (
        encode_cursor(jobs[limit - 1].created_at, jobs[limit - 1].id) if len(jobs) > limit else None
    )
    return jobs[:limit], next_cursor


async def cancel_job(session: AsyncSession, principal: Principal, job_id: str) -> JobView:
    job = await get_job(session, principal, job_id)
    if job.status in TERMINAL:
        if job.status == CANCELLED:
            return job
        raise Conflict(f"Job already {job.status.lower()}")
    now = utcnow()
    result = await session.execute(
        update(JobRecord)
        .where(JobRecord.id == job_id, JobRecord.status.in_((PENDING, PROCESSING)))
        .values(
            status=CANCELLED,
            error="Cancelled by request",
            finished_at=now,
            updated_at=now,
            lease_until=None,
            seq=JobRecord.seq + 1,
        )
        .execution_options(synchronize_session=False)
    )
    job = await get_job(session, principal, job_id)
    if result.rowcount != 1 and job.status != CANCELLED:  # type: ignore[attr-defined]
        raise Conflict(f"Job already {job.status.lower()}")
    return job


async def purge_finished(session: AsyncSession, before: datetime) -> int:
    result = await session.execute(
        delete(JobRecord).where(JobRecord.status.in_(TERMINAL), JobRecord.finished_at < before)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


class JobSearch:
    kind = "jobs"

    async def search(
        self, session: AsyncSession, principal: Principal, query: str, limit: int
    ) -> list[SearchHit]:
        statement = select(JobRecord).where(
            text_matches(query, JobRecord.id, JobRecord.processing_type)
        )
        if not principal.is_admin:
            statement = statement.where(JobRecord.owner == principal.subject)
        statement = statement.order_by(JobRecord.created_at.desc()).limit(limit)
        return [
            SearchHit(
                kind=self.kind,
                id=job.id,
                title=f"{job.processing_type} job {job.id}",
                url=f"/api/jobs/{job.id}",
                snippet=f"{job.status} {job.progress}%",
            )
            for job in (await session.execute(statement)).scalars()
        ]
