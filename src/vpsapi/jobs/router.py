"""Seed 000 job API (`/api/jobs`, `/api/sse/job-progress/{id}`) and `/api/v1/jobs`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, BackgroundTasks, Header, Query, Request, Response, status
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy.ext.asyncio import AsyncSession
from sse_starlette.sse import EventSourceResponse

from vpsapi.auth.dependencies import CurrentPrincipal, StreamPrincipal
from vpsapi.core.db import SessionDep, database_failure, shielded_read
from vpsapi.core.errors import NotFound, ValidationFailed, validation_details
from vpsapi.core.openapi import read_by_hand
from vpsapi.core.schemas import V1_ERROR_RESPONSES, Envelope, envelope, parse_json_body
from vpsapi.core.security import Principal
from vpsapi.core.sse import event_stream
from vpsapi.jobs import service
from vpsapi.jobs.engine import FAILED, TERMINAL, JobEngine, job_channel
from vpsapi.jobs.processors import public_processor_names
from vpsapi.jobs.schemas import JobAccepted, JobList, JobOut, JobPage, JobStatus, JobSubmit

router = APIRouter(tags=["jobs"])
v1_router = APIRouter(prefix="/api/v1", tags=["jobs"], responses=V1_ERROR_RESPONSES)

# A stream re-reads its job this often without a message, so a lost one delays no more.
REREAD_SECONDS = 15
# On SIGTERM open streams get this long to say goodbye and end cleanly; clients then
# reconnect (through the proxy, to another process) with Last-Event-ID.
SHUTDOWN_GRACE_SECONDS = 5
_LEGACY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": '`{"error": "Validation failed", "details": [{field, message}]}`'},
    401: {"description": '`{"error": "No token provided" | "Invalid token" | "Token expired"}`'},
    404: {"description": '`{"error": "Job not found"}`'},
}
_REQUIRED_MESSAGES = {
    "processingType": "Processing type is required",
    "data": "Data array is required",
}


def _joi_message(error: ErrorDetails) -> str | None:
    """Seed 000's Joi wording where pydantic's differs."""
    loc, kind = error["loc"], error["type"]
    if kind == "missing":
        return _REQUIRED_MESSAGES.get(str(loc[0])) if len(loc) == 1 else None
    if loc == ("processingType",):
        return "Invalid processing type"  # Joi checks the valid values before the type
    if loc == ("data",) and kind == "list_type":
        return '"data" must be an array'
    if len(loc) == 2 and loc[0] == "data" and kind == "dict_type":
        return f'"data[{loc[1]}]" must be of type object'
    if loc == ("options",) and kind == "dict_type":
        return '"options" must be of type object'
    return None


def _engine(request: Request) -> JobEngine:
    engine: JobEngine = request.app.state.jobs_engine
    return engine


async def _parse_submission(request: Request) -> JobSubmit:
    raw = parse_json_body(await request.body())
    if raw is None:
        raw = {}  # as express.json leaves it: the missing fields are then named
    if not isinstance(raw, dict):
        # Joi's words for a body that is no object (its path is empty).
        raise ValidationFailed([{"field": "", "message": '"value" must be of type object'}])
    try:
        return JobSubmit.model_validate(raw)
    except ValidationError as exc:
        details = []
        for item, error in zip(validation_details(exc.errors()), exc.errors(), strict=True):
            item["message"] = _joi_message(error) or item["message"]
            details.append(item)
            if error["loc"] == ("processingType",) and (second := _joi_type_message(raw)):
                details.append({"field": "processingType", "message": second})
        raise ValidationFailed(details) from exc


def _joi_type_message(raw: dict[str, Any]) -> str | None:
    """Joi (abortEarly: false) says what is wrong with a processingType's type too, after
    "Invalid processing type": not a string, or an empty one."""
    if "processingType" not in raw:
        return None  # "Processing type is required" says it all
    value = raw["processingType"]
    if value == "":
        return '"processingType" is not allowed to be empty'
    return None if isinstance(value, str) else '"processingType" must be a string'


@router.post(
    "/api/jobs",
    response_model=JobAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Submit a processing job (seed 000)",
    responses={
        **_LEGACY_ERRORS,
        409: {"description": "The same Idempotency-Key raced in: `Job could not be created`"},
    },
    openapi_extra=read_by_hand(JobSubmit),
)
async def submit_job(
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    background: BackgroundTasks,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JobAccepted:
    body = await _parse_submission(request)
    job, created = await service.submit_job(
        session, request.app.state.settings, principal, body, idempotency_key
    )
    if created:
        # Background tasks run after the response, i.e. after the commit: a worker
        # never looks for a row that is not there yet.
        background.add_task(_engine(request).dispatch_new, job.id)
    return JobAccepted(jobId=job.id, status=job.status)


@router.get("/api/jobs/types", summary="Processing types a client may submit")
async def job_types(_: CurrentPrincipal) -> dict[str, list[str]]:
    return {"types": public_processor_names()}


@router.get(
    "/api/jobs/{job_id}",
    response_model=JobOut,
    response_model_exclude_none=True,
    summary="Job status (seed 000)",
    responses=_LEGACY_ERRORS,
)
async def get_job(job_id: str, principal: CurrentPrincipal, session: SessionDep) -> JobOut:
    return service.job_out(await service.get_job(session, principal, job_id))


async def _list(
    session: SessionDep,
    principal: Principal,
    status_filter: JobStatus | None,
    processing_type: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[JobOut], str | None]:
    jobs, next_cursor = await service.list_jobs(
        session,
        principal,
        status=status_filter,
        processing_type=processing_type,
        limit=limit,
        cursor=cursor,
    )
    return [service.job_out(job) for job in jobs], next_cursor


StatusQuery = Annotated[JobStatus | None, Query(alias="status")]
TypeQuery = Annotated[str | None, Query(alias="type", max_length=64)]
LimitQuery = Annotated[int, Query(ge=1, le=200)]
CursorQuery = Annotated[str | None, Query(max_length=512)]


@router.get("/api/jobs", response_model=JobList, summary="List your jobs, newest first")
async def list_jobs(
    principal: CurrentPrincipal,
    session: SessionDep,
    status_filter: StatusQuery = None,
    processing_type: TypeQuery = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> JobList:
    jobs, next_cursor = await _list(
        session, principal, status_filter, processing_type, limit, cursor
    )
    return JobList(jobs=jobs, nextCursor=next_cursor)


@v1_router.get(
    "/jobs",
    response_model=Envelope[JobPage],
    summary="List your jobs (envelope)",
    responses={400: {"description": "Invalid cursor"}},
)
async def list_jobs_v1(
    principal: CurrentPrincipal,
    session: SessionDep,
    status_filter: StatusQuery = None,
    processing_type: TypeQuery = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Envelope[JobPage]:
    jobs, next_cursor = await _list(
        session, principal, status_filter, processing_type, limit, cursor
    )
    return envelope(JobPage(items=jobs, nextCursor=next_cursor))


_CANCEL_DOC = {
    "response_model": JobOut,
    "response_model_exclude_none": True,
    "summary": "Cancel a pending or running job (status CANCELLED)",
    "responses": {**_LEGACY_ERRORS, 409: {"description": "job already finished"}},
}


@router.delete("/api/jobs/{job_id}", **_CANCEL_DOC)  # type: ignore[arg-type]
@router.post("/api/jobs/{job_id}/cancel", **_CANCEL_DOC)  # type: ignore[arg-type]
async def cancel_job(
    request: Request, job_id: str, principal: CurrentPrincipal, session: SessionDep
) -> JobOut:
    job = await service.cancel_job(session, principal, job_id)
    await session.commit()
    engine = _engine(request)
    await engine.publish(job)
    await engine.request_cancel(job_id)
    return service.job_out(job)


# ---- SSE ----------------------------------------------------------------------------


async def _has_seen_the_end(
    session: AsyncSession, principal: Principal, job_id: str, last_seen: int
) -> bool:
    try:
        record = await service.get_job(session, principal, job_id)
    except NotFound:
        return False  # the stream says so in its own event
    except Exception as exc:
        if database_failure(exc) is None:
            raise
        # Not a 503 here: an EventSource gives up for good on any status but 200 and
        # 204; the stream tells it to come back instead.
        return False
    return record.status in TERMINAL and record.seq <= last_seen


def _last_event_id(request: Request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("lastEventId") or ""
    # ASCII digits only (`isdigit` takes "²", which int() refuses), as many as an id has.
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else -1


@router.get(
    "/api/sse/job-progress/{job_id}",
    summary="Live job progress as Server-Sent Events (seed 000)",
    response_class=EventSourceResponse,
    response_model=None,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "`event: connected`, then `data:` job JSON on every change "
            "(`id:` = sequence), `event: error` when unknown or failed; ends after the "
            "terminal state. Auth by header or `?access_token=`; resume with `Last-Event-ID`.",
        },
        204: {"description": "`Last-Event-ID` already names the ended job's final event"},
    },
)
async def job_progress(
    request: Request, job_id: str, principal: StreamPrincipal, session: SessionDep
) -> EventSourceResponse | Response:
    last_seen = _last_event_id(request)
    if last_seen >= 0 and await _has_seen_the_end(session, principal, job_id, last_seen):
        # The one answer that stops an EventSource from reconnecting: after a stream
        # that only said `connected` it would come back every few seconds, forever.
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    database = request.app.state.db
    events = request.app.state.events
    shutdown = anyio.Event()
    await session.close()  # a stream may last hours: do not hold a connection

    async def stream() -> AsyncIterator[dict[str, Any]]:
        # Seed 000's two fixed events, byte for byte (its own literals).
        yield {"event": "connected", "data": '{"message": "Connected to job progress stream"}'}
        # Subscribe before reading the snapshot so no change can fall between them.
        async with events.subscribe(job_channel(job_id)) as subscription:
            sent = last_seen
            while True:
                try:
                    # Past SHIELDED_READ_SECONDS: ends with a `reconnect` event.
                    with shielded_read():
                        async with database.session(autocommit=True) as read:
                            record = await service.get_job(read, principal, job_id)
                            job, seq = service.job_out(record), record.seq
                except NotFound:
                    yield {"event": "error", "data": json.dumps({"error": "Job not found"})}
                    return
                except Exception as exc:
                    if database_failure(exc) is None:  # a TimeoutError is one
                        raise
                    # Busy or away: end the stream cleanly rather than break it; the
                    # client comes back with Last-Event-ID and misses nothing.
                    yield _reconnect_event(job_id, "database busy or unavailable", 1000)
                    return
                if seq > sent:
                    sent = seq
                    yield {
                        "event": "message",  # explicit, as seed 000 documents it
                        "id": str(seq),
                        "data": job.model_dump_json(exclude_none=True),
                    }
                if job.status in TERMINAL:
                    if job.status == FAILED:
                        # What went wrong is the data event's `error`, just sent.
                        yield {"event": "error", "id": str(seq), "data": '{"error":"Job failed"}'}
                    return
                # Any message, a lost one, or a quiet heartbeat period: re-read the row.
                # A burst of progress events thus collapses into one snapshot.
                change = asyncio.ensure_future(subscription.get(timeout=REREAD_SECONDS))
                stopping = asyncio.ensure_future(shutdown.wait())
                try:
                    await asyncio.wait({change, stopping}, return_when=asyncio.FIRST_COMPLETED)
                finally:  # a client gone while waiting leaves no waiter behind
                    for waiter in (change, stopping):
                        waiter.cancel()
                if shutdown.is_set():
                    yield _reconnect_event(job_id, "server shutting down", 500)
                    return
                while not subscription.queue.empty():
                    subscription.queue.get_nowait()
                subscription.lost = False

    # Seed 000 sends `origin || '*'`; with an Origin the CORS layer answers for it.
    any_origin = {} if "origin" in request.headers else {"Access-Control-Allow-Origin": "*"}
    return event_stream(
        stream(),
        headers=any_origin,
        shutdown_event=shutdown,
        shutdown_grace_period=SHUTDOWN_GRACE_SECONDS,
    )


def _reconnect_event(job_id: str, reason: str, retry_ms: int) -> dict[str, Any]:
    """The stream's last event when it ends before the job does: why, and when to retry."""
    return {
        "event": "reconnect",
        "retry": retry_ms,
        "data": json.dumps({"reason": reason, "jobId": job_id}),
    }
