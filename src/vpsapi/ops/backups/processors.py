"""The job that writes a backup archive, then applies the retention policy."""

from __future__ import annotations

import asyncio
from typing import Any

from vpsapi.jobs.processors import Report, job_context
from vpsapi.ops.backups import service
from vpsapi.ops.jobs import unseal
from vpsapi.ops.nginx.control import NginxControl


class CreateBackup:
    """`data: [{filename, created_by, description}]` -> the backup's list entry."""

    name = service.BACKUP_JOB
    timeout: int | None = 3600
    # Started by the service only, never through POST /api/jobs.
    public = False

    async def process(
        self, items: list[dict[str, Any]], options: dict[str, Any], report: Report
    ) -> dict[str, Any]:
        settings = job_context().settings
        request = unseal(settings, self.name, items)
        entry = await service.create_backup(
            settings,
            NginxControl(settings),
            str(request["filename"]),
            created_by=request.get("created_by"),
            description=request.get("description"),
            report=report,
        )
        deleted = await asyncio.to_thread(service.apply_retention, settings)
        return {**entry.model_dump(mode="json"), "retention_deleted": deleted}
