"""Where jobs run: in-process workers (embedded default) or saq on Redis (scale-out)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from datetime import datetime, timedelta
from typing import Any

import structlog
from saq import Job, Queue, Status, Worker
from saq import utils as saq_time

from vpsapi.config import Settings
from vpsapi.core.db import utcnow
from vpsapi.jobs.engine import DueJob, JobEngine

log = structlog.get_logger("vpsapi.jobs")

SWEEP_INTERVAL = 5.0


class LocalRunner:
    """Worker tasks inside this process, woken by submissions and by due times."""

    def __init__(self, engine: JobEngine, concurrency: int) -> None:
        self.engine = engine
        self.concurrency = concurrency
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False
        # One claim at a time per process: the database takes one writer at a time anyway,
        # and on SQLite two claims racing for the write lock could both sit in the busy
        # handler until its timeout.
        self.claiming = asyncio.Lock()

    async def dispatch(self, job_id: str, attempt: int, at: datetime | None = None) -> None:
        self.wake.set()

    async def start(self) -> None:
        self.tasks = [self._start_loop(index) for index in range(self.concurrency)]

    def _start_loop(self, index: int) -> asyncio.Task[None]:
        task = asyncio.create_task(self._loop(index), name=f"job-worker-{index}")
        task.add_done_callback(functools.partial(self._loop_ended, index))
        return task

    def _loop_ended(self, index: int, task: asyncio.Task[None]) -> None:
        """A loop ends on stop only. One that died otherwise (a cancellation that was not
        meant for it, say) is said so and replaced: unnoticed, every loop gone would
        leave new jobs pending until a restart."""
        if self.stopping:
            return
        error = asyncio.CancelledError() if task.cancelled() else task.exception()
        log.error("job_worker_died", worker=index, error=repr(error), exc_info=error)
        self.tasks[index] = self._start_loop(index)

    async def stop(self) -> None:
        """Cancel the jobs under way (each is handed back, see JobEngine.run) and let idle
        loops leave after their current query. Cancelling a loop mid-query would make
        SQLAlchemy terminate its connection, and on SQLite that close can wait out the
        busy timeout behind another connection's write."""
        self.stopping = True
        self.wake.set()
        self.engine.cancel_running()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _loop(self, index: int) -> None:
        while not self.stopping:
            try:
                self.wake.clear()
                async with self.claiming:
                    claimed = await self.engine.claim_next()
                if claimed is not None and self.stopping:
                    await self.engine.release(claimed)  # claimed as the stop came
                elif claimed is not None:
                    self.wake.set()  # there may be more: let an idle sibling look
                    await self.engine.run(claimed)
                elif not self.stopping:
                    await self._sleep(await self.engine.seconds_until_due(SWEEP_INTERVAL))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database away: back off, never die
                log.warning("job_worker_error", worker=index, error=str(exc))
                await self._sleep(1)

    async def _sleep(self, seconds: float) -> None:
        """Until `seconds` pass, a submission arrives or the runner stops."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.wake.wait()


def _key(job_id: str, attempt: int, scheduled: int) -> str:
    return f"{job_id}:{attempt}:{scheduled}"


def saq_queue(settings: Settings) -> Queue:
    return Queue.from_url(settings.redis_url, name=f"{settings.redis_prefix}:jobs")


class SaqDispatcher:
    """Enqueues "run job X" on the saq queue; the job row stays the truth."""

    def __init__(self, queue: Queue, settings: Settings) -> None:
        self.queue = queue
        self.settings = settings

    async def dispatch(self, job_id: str, attempt: int, at: datetime | None = None) -> None:
        # Rounded up: saq runs a job at or after `scheduled`, never before the row is due.
        scheduled = math.ceil(at.timestamp()) if at is not None and at > utcnow() else 0
        key = _key(job_id, attempt, scheduled)
        if await self._enqueue(key, job_id, scheduled) is None and await self._abandoned(key):
            await self._enqueue(key, job_id, scheduled)

    async def redispatch(self, due: list[DueJob]) -> None:
        """The sweeper's turn: dispatch again the due rows for which saq holds no job that
        will still run them. One MGET reads the whole batch, so a backlog waiting in the
        queue costs one round trip per sweep, not an enqueue attempt and a read per row.

        A row's job is under the key of its next attempt, due at once (`scheduled` 0) or,
        for a retry dispatched ahead of time, at its `run_at` rounded up."""
        if not due:
            return
        keys = [
            key
            for job in due
            for key in (
                _key(job.id, job.attempts + 1, 0),
                _key(job.id, job.attempts + 1, math.ceil(job.run_at.timestamp())),
            )
        ]
        held = await self.queue.jobs(keys)
        for index, job in enumerate(due):
            if not any(self._will_run(found) for found in held[2 * index : 2 * index + 2]):
                await self.dispatch(job.id, job.attempts + 1)

    def _will_run(self, job: Job | None) -> bool:
        if job is None:
            return False
        return job.status in (Status.NEW, Status.QUEUED) or (
            job.status == Status.ACTIVE and not self._lost(job)
        )

    def _lost(self, job: Job) -> bool:
        """Taken by a worker that died before it claimed the row. A live worker claims the
        row within milliseconds of taking saq's job, so one still active in saq a whole
        lease later belongs to a worker killed in between."""
        active_for = saq_time.seconds(saq_time.now() - job.started)
        return job.status == Status.ACTIVE and active_for >= self.settings.job_lease_seconds

    async def _enqueue(self, key: str, job_id: str, scheduled: int) -> Job | None:
        """The queued job, or None when saq already holds one with this key."""
        return await self.queue.enqueue(
            "run_job",
            key=key,
            job_id=job_id,
            scheduled=scheduled,
            # Our engine enforces the job's own timeout and retries; saq only delivers.
            timeout=self.settings.job_timeout_seconds + 60,
            retries=1,
            ttl=600,
        )

    async def _abandoned(self, key: str) -> bool:
        """Whether saq's job under `key` was taken by a worker that died before it claimed
        the row, and is now finished so that the key can be queued again.

        A dispatch that finds its key taken comes from the sweeper, for a row that is due
        and held by nobody. saq's own sweep would free a lost job only after its timeout
        (minutes), and until then the row could not be dispatched again."""
        existing = await self.queue.job(key)
        if existing is None or not self._lost(existing):
            return False
        log.warning("job_dispatch_abandoned", key=key, worker=existing.worker_id)
        await self.queue.finish(existing, Status.ABORTED, error="worker lost before claiming")
        return True


async def run_job(ctx: dict[str, Any], *, job_id: str) -> None:
    engine: JobEngine = ctx["engine"]
    await engine.execute(job_id)


async def sweep(engine: JobEngine, dispatcher: SaqDispatcher) -> None:
    """Re-dispatch due rows nobody runs (lost enqueue, killed worker, restart): at once,
    so that a restarted worker takes up what a killed one left, then every few seconds."""
    while True:
        try:
            await dispatcher.redispatch(await engine.due_jobs())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("job_sweep_failed", error=str(exc))
        await asyncio.sleep(SWEEP_INTERVAL)


def saq_worker(queue: Queue, engine: JobEngine, concurrency: int, *, own_signals: bool) -> Worker:
    worker = Worker(
        queue,
        functions=[run_job],
        concurrency=concurrency,
        startup=_startup(engine),
        # On stop, running jobs are cancelled and handed back (see JobEngine.run), so
        # another worker picks them up at once instead of shutdown waiting for them.
        shutdown_grace_period_s=None,
    )
    if not own_signals:
        # Inside `serve`, uvicorn owns SIGINT/SIGTERM; saq must not take them over.
        worker.SIGNALS = []
    return worker


def _startup(engine: JobEngine) -> Any:
    async def startup(ctx: dict[str, Any]) -> None:
        ctx["engine"] = engine

    return startup


def retention_cutoff(settings: Settings) -> datetime:
    return utcnow() - timedelta(days=settings.job_retention_days)
