"""The job engine: claims, runs, retries and finishes jobs.

The `jobs` row is the truth. A worker owns a job only while it holds its lease
(`lease_owner`, `lease_until`), taken with one conditional UPDATE and renewed while
it runs; every later write is conditioned on still holding it, so a job that was
re-claimed after a lost lease, or cancelled, can never be overwritten by a stale
worker. Dispatch is a hint ("look at job X"): in-process wake-ups on the embedded
default, a saq queue on Redis when scaled out. Either way a sweeper re-dispatches
due rows, so a lost hint or a killed worker costs a delay, never a job.

Every read and write here is one statement, atomic by itself, so it runs without
BEGIN/COMMIT (autocommit on PostgreSQL): one round trip per write instead of three.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import time
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, NamedTuple, Protocol, cast

import structlog
from sqlalchemy import Table, Update, and_, bindparam, func, or_, select, update
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from vpsapi.config import Settings
from vpsapi.core.db import Database, UTCDateTime, utcnow
from vpsapi.core.events import EventBus
from vpsapi.jobs.models import JobRecord
from vpsapi.jobs.processors import JobContext, get_processor, number_option, set_job_context

log = structlog.get_logger("vpsapi.jobs")

PENDING, PROCESSING, COMPLETED, FAILED, CANCELLED = (
    "PENDING",
    "PROCESSING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
)
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})
CONTROL_CHANNEL = "jobs:control"
_COMPRESSED = b"z:"
PROGRESS_MIN_INTERVAL = 0.1  # seconds between progress writes of one job


def job_channel(job_id: str) -> str:
    return f"job:{job_id}"


def encode_blob(value: Any, compress_over: int) -> bytes:
    raw = json.dumps(value, separators=(",", ":"), default=str).encode()
    if len(raw) > compress_over:
        return _COMPRESSED + zlib.compress(raw, 6)
    return raw


def decode_blob(blob: bytes | None) -> Any:
    if blob is None:
        return None
    if blob.startswith(_COMPRESSED):
        blob = zlib.decompress(blob[len(_COMPRESSED) :])
    return json.loads(blob)


class JobState(Protocol):
    """What a job event tells: a `JobRecord`, or a row of `EVENT_COLUMNS`."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def progress(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def attempts(self) -> int: ...


def job_event(job: JobState) -> dict[str, Any]:
    return {
        "jobId": job.id,
        "status": job.status,
        "progress": job.progress,
        "seq": job.seq,
        "attempts": job.attempts,
    }


class Dispatcher(Protocol):
    async def dispatch(self, job_id: str, attempt: int, at: datetime | None = None) -> None: ...


class DueJob(NamedTuple):
    id: str
    attempts: int
    run_at: datetime


class JobCancelled(Exception):
    pass


class LeaseLost(Exception):
    pass


@dataclass
class ClaimedJob:
    id: str
    owner: str
    processing_type: str
    payload: bytes
    attempts: int
    max_attempts: int
    timeout_seconds: int


JOBS = cast(Table, JobRecord.__table__)
EVENT_COLUMNS = (JOBS.c.id, JOBS.c.status, JOBS.c.progress, JOBS.c.seq, JOBS.c.attempts)


def _due(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    """Rows a worker may take: pending and due, or running with an expired lease /
    waiting for a retry whose time has come."""
    return and_(
        JOBS.c.run_at <= now,
        or_(
            JOBS.c.status == PENDING,
            and_(
                JOBS.c.status == PROCESSING,
                or_(JOBS.c.lease_until.is_(None), JOBS.c.lease_until < now),
            ),
        ),
    )


# A worker's writes are built once, with parameters: building an UPDATE (and its cache
# key) for every claim and finish cost a worker more CPU than running it. They read back
# what the job's event and the worker need, never the payload or result blobs again.
_NOW = bindparam("now", type_=UTCDateTime())
_CLAIM = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("job_id"), _due(_NOW))
    .values(
        status=PROCESSING,
        attempts=JOBS.c.attempts + 1,
        progress=0,
        lease_owner=bindparam("worker"),
        lease_until=bindparam("lease_until", type_=UTCDateTime()),
        started_at=func.coalesce(JOBS.c.started_at, _NOW),
        updated_at=_NOW,
        seq=JOBS.c.seq + 1,
    )
    .returning(
        *EVENT_COLUMNS,
        JOBS.c.owner,
        JOBS.c.processing_type,
        JOBS.c.payload,
        JOBS.c.max_attempts,
        JOBS.c.timeout_seconds,
    )
)


# Rows only the worker holding the lease may write: idempotent when a job runs twice.
_OWNED = and_(
    JOBS.c.id == bindparam("job_id"),
    JOBS.c.lease_owner == bindparam("worker"),
    JOBS.c.status == PROCESSING,
)
_RENEW_LEASE = (
    update(JOBS).where(_OWNED).values(lease_until=bindparam("lease_until", type_=UTCDateTime()))
)


@cache
def _owned_write(columns: frozenset[str]) -> Update:
    """An UPDATE of `columns` (values as parameters named `set_<column>`) by the lease
    holder, as a new state of the job (`seq` and `updated_at` move)."""
    return (
        update(JOBS)
        .where(_OWNED)
        .values(
            {
                **{name: bindparam(f"set_{name}", type_=JOBS.c[name].type) for name in columns},
                "seq": JOBS.c.seq + 1,
                "updated_at": _NOW,
            }
        )
        .returning(*EVENT_COLUMNS)
    )


class JobEngine:
    def __init__(self, db: Database, events: EventBus, settings: Settings) -> None:
        self.db = db
        self.events = events
        self.settings = settings
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease = timedelta(seconds=settings.job_lease_seconds)
        self.dispatcher: Dispatcher | None = None
        self._running: dict[str, asyncio.Task[Any]] = {}

    # ---- events -------------------------------------------------------------------

    async def publish(self, job: JobState) -> None:
        try:
            await self.events.publish(job_channel(job.id), job_event(job))
        except Exception as exc:  # subscribers re-read the table; never fail a job for this
            log.warning("job_event_publish_failed", job_id=job.id, error=str(exc))

    async def dispatch_new(self, job_id: str) -> None:
        """Tell a worker about a committed new job. A lost hint costs a short delay:
        workers and the sweeper also look for due rows on their own."""
        if self.dispatcher is not None:
            with contextlib.suppress(Exception):
                await self.dispatcher.dispatch(job_id, 1)

    async def request_cancel(self, job_id: str) -> None:
        with contextlib.suppress(Exception):
            await self.events.publish(CONTROL_CHANNEL, {"cancel": job_id})

    async def watch_control(self) -> None:
        """Cancel local tasks of jobs cancelled through any process."""
        while True:
            try:
                async with self.events.subscribe(CONTROL_CHANNEL) as sub:
                    while True:
                        message = await sub.get(timeout=30)
                        job_id = (message or {}).get("cancel")
                        task = self._running.get(str(job_id)) if job_id else None
                        if task is not None:
                            task.cancel()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("job_control_lost", error=str(exc))
                await asyncio.sleep(1)

    # ---- claiming -------------------------------------------------------------------

    async def claim(self, job_id: str) -> ClaimedJob | None:
        now = utcnow()
        async with self.db.session(autocommit=True) as session:
            result = await session.execute(
                _CLAIM,
                {
                    "job_id": job_id,
                    "now": now,
                    "worker": self.worker_id,
                    "lease_until": now + self.lease,
                },
            )
            job = result.one_or_none()
        if job is None:
            return None
        await self.publish(job)
        return ClaimedJob(
            job.id,
            job.owner,
            job.processing_type,
            job.payload,
            job.attempts,
            job.max_attempts,
            job.timeout_seconds,
        )

    async def claim_next(self) -> ClaimedJob | None:
        """Take the oldest due job (embedded default)."""
        for _ in range(5):  # another worker may win the race for a candidate
            async with self.db.session(autocommit=True) as session:
                candidate = (
                    await session.execute(
                        select(JobRecord.id)
                        .where(_due(utcnow()))
                        .order_by(JobRecord.run_at, JobRecord.created_at)
                        .limit(1)
                    )
                ).scalar_one_or_none()
            if candidate is None:
                return None
            claimed = await self.claim(candidate)
            if claimed is not None:
                return claimed
        return None

    async def seconds_until_due(self, cap: float) -> float:
        """How long a worker may sleep before something becomes due."""
        async with self.db.session(autocommit=True) as session:
            next_run = (
                await session.execute(
                    select(func.min(JobRecord.run_at)).where(JobRecord.status == PENDING)
                )
            ).scalar_one_or_none()
            next_lease = (
                await session.execute(
                    select(func.min(func.coalesce(JobRecord.lease_until, JobRecord.run_at))).where(
                        JobRecord.status == PROCESSING
                    )
                )
            ).scalar_one_or_none()
        moments = [m for m in (next_run, next_lease) if m is not None]
        if not moments:
            return cap
        wait = (min(moments) - utcnow()).total_seconds()
        return max(0.01, min(cap, wait))

    async def due_jobs(self, limit: int = 500) -> list[DueJob]:
        """Due rows that nobody is running: for the sweeper to re-dispatch."""
        async with self.db.session(autocommit=True) as session:
            rows = await session.execute(
                select(JobRecord.id, JobRecord.attempts, JobRecord.run_at)
                .where(_due(utcnow()))
                .order_by(JobRecord.run_at)
                .limit(limit)
            )
            return [DueJob(row[0], row[1], row[2]) for row in rows]

    # ---- running --------------------------------------------------------------------

    async def execute(self, job_id: str) -> None:
        claimed = await self.claim(job_id)
        if claimed is not None:
            await self.run(claimed)

    async def run(self, job: ClaimedJob) -> None:
        if job.attempts > job.max_attempts:
            await self._finish(job.id, FAILED, error="Worker lost the job on its last attempt")
            return
        processor = get_processor(job.processing_type)
        if processor is None:
            await self._finish(
                job.id, FAILED, error=f"Unknown processing type: {job.processing_type}"
            )
            return
        payload = decode_blob(job.payload)
        reporter = ProgressReporter(self, job.id)
        timeout = processor.timeout or job.timeout_seconds
        attempt_over = asyncio.Event()
        keeper = asyncio.create_task(self._keep_lease(job.id, attempt_over))
        set_job_context(JobContext(job.id, job.owner, self.settings, self.db, self.events))
        # The processor runs in a task of its own, and that task is what a cancel request
        # cancels: a request's notice can come after the work has ended, and it must then
        # find nothing to cancel, not the finish under way nor the worker running it.
        work = asyncio.create_task(
            asyncio.wait_for(
                processor.process(payload["data"], payload.get("options", {}), reporter),
                timeout,
            ),
            name=f"job-work-{job.id}",
        )
        self._running[job.id] = work
        try:
            try:
                result = await work
            finally:
                # The work has ended (awaiting it waits until it has). The entry may be
                # another run's, of the same job re-claimed after this one lost its lease.
                if self._running.get(job.id) is work:
                    del self._running[job.id]
                await reporter.close()  # no deferred progress write after the outcome
        except asyncio.CancelledError:
            # The work was cancelled by a cancel request for this job, or by the worker
            # shutting down (then maybe this task too): the row decides. Cancelled stays
            # cancelled; otherwise the job is handed back for another worker to take.
            if not await self._is_cancelled(job.id):
                await self.release(job)
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this task itself was cancelled: it ends
            return
        except (JobCancelled, LeaseLost):
            return
        except TimeoutError:
            await self._fail_attempt(job, f"Job timed out after {timeout}s")
        except Exception as exc:
            log.warning("job_attempt_failed", job_id=job.id, attempt=job.attempts, error=str(exc))
            await self._fail_attempt(job, str(exc) or type(exc).__name__)
        else:
            await self._finish(job.id, COMPLETED, result=result)
        finally:
            # Told to end, not cancelled: a renewal cut off mid-statement would make
            # SQLAlchemy terminate its connection.
            attempt_over.set()
            await keeper

    def cancel_running(self) -> None:
        """Cancel every job this process runs (each hands itself back, see `run`)."""
        for task in self._running.values():
            task.cancel()

    async def _keep_lease(self, job_id: str, attempt_over: asyncio.Event) -> None:
        interval = max(0.5, self.lease.total_seconds() / 3)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await attempt_over.wait()
                return
            with contextlib.suppress(Exception):
                await self.renew(job_id, progress=None)

    async def renew(self, job_id: str, progress: int | None) -> JobState | None:
        """Extend the lease; with `progress`, record it and return the row (None when the
        job is no longer ours). A lease-only renewal returns None."""
        lease_until = utcnow() + self.lease
        if progress is not None:
            return await self._write_owned(
                job_id, {"lease_until": lease_until, "progress": progress}, publish=False
            )
        async with self.db.session(autocommit=True) as session:
            await session.execute(
                _RENEW_LEASE,
                {"job_id": job_id, "worker": self.worker_id, "lease_until": lease_until},
            )
        return None

    async def _is_cancelled(self, job_id: str) -> bool:
        async with self.db.session(autocommit=True) as session:
            status = await session.scalar(select(JobRecord.status).where(JobRecord.id == job_id))
        return status == CANCELLED

    async def release(self, job: ClaimedJob) -> None:
        """Give a job back on shutdown so another worker can take it at once. It waits
        again (PENDING, progress 0, as Bull moves a stalled job back to waiting), so
        its status does not show a run that no longer happens, and the attempt is not
        counted."""
        values: dict[str, Any] = {
            "status": PENDING,
            "progress": 0,
            "lease_until": None,
            "lease_owner": None,
            "attempts": job.attempts - 1,
        }
        if job.attempts == 1:
            values["started_at"] = None  # never started, as far as anyone can tell
        with contextlib.suppress(Exception):
            await self._write_owned(job.id, values)

    def backoff_seconds(self, attempt: int, base: float) -> float:
        delay = base * (2 ** max(0, attempt - 1))
        return delay / 2 + random.uniform(0, delay / 2)  # equal jitter

    async def _fail_attempt(self, job: ClaimedJob, error: str) -> None:
        if job.attempts >= job.max_attempts:
            await self._finish(job.id, FAILED, error=error)
            return
        options = decode_blob(job.payload).get("options", {})
        base = number_option(options, "retryDelayMs")
        base_seconds = (
            base / 1000
            if base is not None and base >= 0
            else self.settings.job_backoff_base_seconds
        )
        run_at = utcnow() + timedelta(seconds=self.backoff_seconds(job.attempts, base_seconds))
        row = await self._write_owned(
            job.id,
            {
                "run_at": run_at,
                "lease_until": None,
                "lease_owner": None,
                "error": error[:2000],
            },
        )
        if row is not None and self.dispatcher is not None:
            with contextlib.suppress(Exception):
                await self.dispatcher.dispatch(job.id, job.attempts + 1, run_at)

    async def _finish(
        self, job_id: str, status: str, *, result: Any = None, error: str | None = None
    ) -> None:
        values: dict[str, Any] = {
            "status": status,
            "finished_at": utcnow(),
            "lease_until": None,
        }
        if status == COMPLETED:
            values.update(
                progress=100,
                error=None,
                result=encode_blob(result, self.settings.job_result_compress_over),
            )
        if error is not None:
            values["error"] = error[:2000]
        await self._write_owned(job_id, values)

    async def _write_owned(
        self, job_id: str, values: dict[str, Any], *, publish: bool = True
    ) -> JobState | None:
        """Write while holding the lease; idempotent when a job runs twice. The row's new
        state, published unless the caller does (None when the job is no longer ours)."""
        parameters = {f"set_{name}": value for name, value in values.items()}
        parameters.update(job_id=job_id, worker=self.worker_id, now=utcnow())
        async with self.db.session(autocommit=True) as session:
            result = await session.execute(_owned_write(frozenset(values)), parameters)
            job = result.one_or_none()
        if job is not None and publish:
            await self.publish(job)
        return job


class ProgressReporter:
    """`await report(percent)`: progress writes, lease renewal, cancellation check.

    At most one progress write per PROGRESS_MIN_INTERVAL, the claim counting as one: a
    report inside the interval is written when the interval ends if the job still runs,
    so a job that finishes within it costs its claim and its finish only (the finish
    writes progress 100), while a longer job still shows every interval's progress.
    """

    def __init__(self, engine: JobEngine, job_id: str) -> None:
        self.engine = engine
        self.job_id = job_id
        self.last_seen = 0
        self.last_write = time.monotonic()  # the claim has just been written
        self.pending: int | None = None
        self.flusher: asyncio.Task[None] | None = None
        self.writing = False
        self.failure: Exception | None = None  # found by a deferred write

    async def __call__(self, percent: int) -> None:
        if self.failure is not None:
            raise self.failure
        value = max(0, min(100, int(percent)))
        if value <= self.last_seen:
            await asyncio.sleep(0)
            return
        self.last_seen = value
        if self.flusher is None and time.monotonic() - self.last_write >= PROGRESS_MIN_INTERVAL:
            await self._write(value)
            return
        self.pending = value
        if self.flusher is None:
            self.flusher = asyncio.create_task(self._flush_pending())
        await asyncio.sleep(0)

    async def _write(self, value: int) -> None:
        self.writing = True
        try:
            job = await self.engine.renew(self.job_id, progress=value)
        finally:
            self.writing = False
            self.last_write = time.monotonic()
        if job is None:
            if await self.engine._is_cancelled(self.job_id):
                raise JobCancelled(self.job_id)
            raise LeaseLost(self.job_id)
        await self.engine.publish(job)

    async def _flush_pending(self) -> None:
        try:
            while self.pending is not None:
                await asyncio.sleep(self.last_write + PROGRESS_MIN_INTERVAL - time.monotonic())
                value, self.pending = self.pending, None
                await self._write(value)
        except (JobCancelled, LeaseLost) as exc:
            self.failure = exc  # raised by the job's next report
        except Exception as exc:  # database away: the next write or the finish retries
            log.warning("job_progress_write_failed", job_id=self.job_id, error=str(exc))
        finally:
            self.flusher = None

    async def close(self) -> None:
        """Drop a deferred write (the finish supersedes it); let one under way end."""
        flusher = self.flusher
        if flusher is None:
            return
        if not self.writing:
            flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
