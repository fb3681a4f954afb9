from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from vpsapi.core.modules import Module
from vpsapi.core.storage import create_storage
from vpsapi.objects.router import router


@contextlib.asynccontextmanager
async def objects_lifespan(app: Any) -> AsyncIterator[None]:
    app.state.storage = create_storage(app.state.settings)
    yield


async def storage_ready(app: Any) -> None:
    await app.state.storage.check()


MODULE = Module(
    name="objects",
    description="Object storage (local files with signed URLs, or S3-compatible)",
    routers=[router],
    lifespan=objects_lifespan,
    readiness_checks=[("storage", storage_ready)],
)
