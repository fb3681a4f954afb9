"""Ops tasks run as jobs of the jobs engine (processing type `ops_task`).

A task is `async def task(params: dict, report: Report) -> dict`, found by name in the
entry-point group `vpsapi.ops_tasks` (pyproject.toml), so the areas that own an operation
(backups, certificate renewal) plug theirs in with one line there.

`/api/jobs` accepts any registered processing type from any user, so an ops job carries
an HMAC of its task and params made by `POST /api/tasks/queue` (admins only); the
processor refuses items without a valid one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from typing import Any

import structlog

from vpsapi.config import Settings
from vpsapi.jobs.processors import Report, job_context
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


def _signing_key(settings: Settings) -> bytes:
    return hashlib.sha256(b"vpsapi ops task\0" + settings.jwt_signing_key().encode()).digest()


def sign_task(settings: Settings, task: str, params: dict[str, Any]) -> str:
    payload = json.dumps({"task": task, "params": params}, sort_keys=True, default=str)
    return hmac.new(_signing_key(settings), payload.encode(), hashlib.sha256).hexdigest()


def task_item(settings: Settings, task: str, params: dict[str, Any]) -> dict[str, Any]:
    """The job item for `task`: what the processor runs, signed."""
    return {"task": task, "params": params, "signature": sign_task(settings, task, params)}


class OpsTaskProcessor:
    """Runs the ops task named in the job's single item: `{task, params}`."""

    name = PROCESSING_TYPE
    timeout: int | None = None

    async def process(
        self, items: list[dict[str, Any]], options: dict[str, Any], report: Report
    ) -> dict[str, Any]:
        item = items[0]
        params = item.get("params")
        if not isinstance(params, dict):
            raise ValueError("an ops task item needs params (an object)")
        expected = sign_task(job_context().settings, str(item.get("task")), params)
        if not hmac.compare_digest(expected, str(item.get("signature", ""))):
            raise PermissionError("ops tasks are queued through POST /api/tasks/queue only")
        task = available_tasks().get(item["task"])
        if task is None:
            raise RuntimeError(f"ops task {item['task']!r} is not installed in this process")
        result = await task(params, report)
        await report(100)
        return {"task": item["task"], "result": result}


async def nginx_test(params: dict[str, Any], report: Report) -> dict[str, Any]:
    """`nginx -t` on the live configuration; a rejected config is a result, not a failure."""
    nginx = NginxControl(job_context().settings)
    try:
        output = await nginx.test()
    except NginxRejected as exc:
        return {"ok": False, "output": exc.output.strip()}
    return {"ok": True, "output": output.strip()}
