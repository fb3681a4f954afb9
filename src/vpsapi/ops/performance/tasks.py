"""Ops tasks run as jobs of the jobs engine (processing type `ops_task`).

A task is `async def task(params: dict, report: Report) -> dict`, found by name in the
entry-point group `vpsapi.ops_tasks` (pyproject.toml), so the areas that own an operation
(backups, certificate renewal) plug theirs in with one line there.

Ops-task jobs are sealed (vpsapi.ops.jobs): only `POST /api/tasks/queue` (admins) can
start one, not the generic `/api/jobs`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from typing import Any

import structlog

from vpsapi.jobs.processors import Report, job_context
from vpsapi.ops.jobs import unseal
from vpsapi.ops.nginx.control import NginxControl, NginxRejected

log = structlog.get_logger("vpsapi.ops.tasks")

ENTRY_POINT_GROUP = "vpsapi.ops_tasks"
PROCESSING_TYPE = "ops_task"

OpsTask = Callable[[dict[str, Any], Report], Awaitable[dict[str, Any]]]
_tasks: dict[str, OpsTask] = {}


def available_tasks() -> dict[str, OpsTask]:
    if not _tasks:
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            try:
                _tasks[entry.name] = entry.load()
            except Exception as exc:  # a broken plug-in must not stop the others
                log.error("ops.task_load_failed", task=entry.name, error=str(exc))
    return _tasks


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
