from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from vpsapi.ops.performance.cache import OpsCache


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    app.state.ops_cache = OpsCache(app.state.redis, app.state.settings.redis_prefix)
    yield
