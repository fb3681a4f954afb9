"""Daily retention of BACKUP_DIR (BACKUP_KEEP_LAST / BACKUP_KEEP_DAYS)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from vpsapi.core.tasks import periodic
from vpsapi.ops.backups import service


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    settings = app.state.settings
    async with periodic(
        "backup-retention",
        settings.backup_retention_interval,
        lambda: asyncio.to_thread(service.apply_retention, settings),
    ):
        yield
