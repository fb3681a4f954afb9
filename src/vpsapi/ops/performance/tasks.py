"""Ops tasks run as jobs of the jobs engine (processing type `ops_task`).

A task is `async def task(params: dict, report: Report) -> dict`. The built-in ones are
below (BUILTIN_TASKS: nginx_test, log_cleanup, backup_create, echo); more are found by
name in the entry-point group `vpsapi.ops_tasks` (pyproject.toml), so other packages plug
theirs in with one line there (a plug-in cannot replace a built-in).

Ops-task jobs are sealed (vpsapi.ops.jobs): only `POST /api/tasks/queue` (admins) can
start one, not the generic `/api/jobs`.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field

from vpsapi.jobs.processors import Report, job_context
from vpsapi.ops.backups import service as backups
from vpsapi.ops.jobs import unseal
from vpsapi.ops.logs.background import apply_policy_once
from vpsapi.ops.nginx.control import NginxControl, NginxRejected

log = structlog.get_logger("vpsapi.ops.tasks")

ENTRY_POINT_GROUP = "vpsapi.ops_tasks"
PROCESSING_TYPE = "ops_task"

OpsTask = Callable[[dict[str, Any], Report], Awaitable[dict[str, Any]]]
_tasks: dict[str, OpsTask] = {}
# Who queued the task that runs (the job payload carries it; for `created_by` fields).
_queued_by: ContextVar[str | None] = ContextVar("ops_task_queued_by", default=None)


@dataclass(frozen=True)
class TaskOptions:
    # Checked when the task is queued: bad params are a 422, not a failed job.
    params: type[BaseModel] | None = None
    timeout: int | None = None  # seconds; None: JOB_TIMEOUT_SECONDS


def available_tasks() -> dict[str, OpsTask]:
    if not _tasks:
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            if entry.name in BUILTIN_TASKS:
                continue
            try:
                _tasks[entry.name] = entry.load()
            except Exception as exc:  # a broken plug-in must not stop the others
                log.error("ops.task_load_failed", task=entry.name, error=str(exc))
        _tasks.update(BUILTIN_TASKS)
    return _tasks


def task_options(name: str) -> TaskOptions:
    return TASK_OPTIONS.get(name, TaskOptions())


def queued_by() -> str | None:
    """Who queued the running task (inside a task only)."""
    return _queued_by.get()


class OpsTaskProcessor:
    """Runs the ops task named in the job's single item: `{task, params}`."""

    name = PROCESSING_TYPE
    timeout: int | None = None
    public = False  # queued through POST /api/tasks/queue only

    async def process(
        self, items: list[dict[str, Any]], options: dict[str, Any], report: Report
    ) -> dict[str, Any]:
        request = unseal(job_context().settings, self.name, items)
        name, params = request.get("task"), request.get("params")
        _queued_by.set(request.get("queued_by"))
        task = available_tasks().get(str(name))
        if task is None or not isinstance(params, dict):
            raise RuntimeError(f"ops task {name!r} is not installed in this process")
        result = await task(params, report)
        await report(100)
        return {"task": name, "result": result}


async def nginx_test(params: dict[str, Any], report: Report) -> dict[str, Any]:
    """`nginx -t` on the live configuration; a rejected config is a result, not a failure."""
    nginx = NginxControl(job_context().settings)
    try:
        output = await nginx.test()
    except NginxRejected as exc:
        return {"ok": False, "output": exc.output.strip()}
    return {"ok": True, "output": output.strip()}


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackupParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=500)


async def log_cleanup(params: dict[str, Any], report: Report) -> dict[str, Any]:
    """Apply the log retention policy now (as POST /api/logs/cleanup, whether or not its
    auto_cleanup is on); removals are audited as `logs.cleanup` by log-retention."""
    context = job_context()
    result = await apply_policy_once(
        context.db, context.settings, always=True, job_id=context.job_id
    )
    assert result is not None  # `always`
    return result.model_dump(mode="json")


async def backup_create(params: dict[str, Any], report: Report) -> dict[str, Any]:
    """A backup archive, as POST /api/backup/create writes one, then backup retention."""
    settings = job_context().settings
    entry = await backups.create_backup(
        settings,
        NginxControl(settings),
        backups.new_filename(),
        created_by=queued_by(),
        description=params.get("description"),
        report=report,
    )
    deleted = await asyncio.to_thread(backups.apply_retention, settings)
    return {**entry.model_dump(mode="json"), "retention_deleted": deleted}


async def echo(params: dict[str, Any], report: Report) -> dict[str, Any]:
    """Its params back, and which worker ran it: checks that the queue and a worker work."""
    return {"echo": params, "worker": f"{socket.gethostname()}:{os.getpid()}"}


BUILTIN_TASKS: dict[str, OpsTask] = {
    "nginx_test": nginx_test,
    "log_cleanup": log_cleanup,
    "backup_create": backup_create,
    "echo": echo,
}
TASK_OPTIONS: dict[str, TaskOptions] = {
    "log_cleanup": TaskOptions(params=NoParams),
    "backup_create": TaskOptions(params=BackupParams, timeout=3600),
}
