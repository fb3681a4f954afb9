"""Daily renewal of ACME-issued certificates that have under CERT_RENEW_BEFORE_DAYS left."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from vpsapi.ops.schedule import periodic
from vpsapi.ops.ssl import service


async def renew_due(app: Any) -> list[str]:
    """One run of the schedule: the ids of the renewal jobs it submitted."""
    return await service.renew_due(app.state.db, app.state.settings, app.state.jobs_engine)


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    async with periodic(
        "ssl-renewal", app.state.settings.cert_renew_interval, lambda: renew_due(app)
    ):
        yield
