"""Automatic cleanup: each server applies the retention policy when its auto_cleanup is on.

Several servers may run it at once; removing a file or a row twice is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog

from vpsapi.config import Settings
from vpsapi.core.db import Database
from vpsapi.core.security import Principal
from vpsapi.core.tasks import cancel_and_wait
from vpsapi.ops.audit.service import record_audit
from vpsapi.ops.logs import service
from vpsapi.ops.logs.schemas import CleanupResult

log = structlog.get_logger("vpsapi.ops.logs")

# Who the audit trail names for removals nobody asked for in a request.
RETENTION_ACTOR = Principal(
    kind="client", subject="system:log-retention", role="admin", username="log-retention"
)


async def apply_policy_once(
    db: Database, settings: Settings, *, always: bool = False, job_id: str | None = None
) -> CleanupResult | None:
    """Apply the stored policy when its auto_cleanup is on (`always`: in any case, for
    the `log_cleanup` ops task); removals are audited as the log-retention actor."""
    async with db.session() as session:
        policy = await service.get_retention_policy(session, settings)
        if not policy.auto_cleanup and not always:
            return None
        result = await service.cleanup(session, settings, policy)
        if result.removed_files or result.removed_audit_entries:
            after: dict[str, Any] = {
                "removed_files": [item.file for item in result.removed_files],
                "removed_audit_entries": result.removed_audit_entries,
            }
            if job_id is not None:
                after["job_id"] = job_id
            await record_audit(session, RETENTION_ACTOR, "logs.cleanup", "logs", after=after)
    return result


async def _cleanup_loop(db: Database, settings: Settings) -> None:
    while True:
        await asyncio.sleep(settings.log_cleanup_interval)
        try:
            await apply_policy_once(db, settings)
        except Exception as exc:
            log.warning("log_cleanup_failed", error=str(exc))


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    task = asyncio.create_task(_cleanup_loop(app.state.db, app.state.settings))
    try:
        yield
    finally:
        await cancel_and_wait(task)
