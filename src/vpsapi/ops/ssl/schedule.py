"""Daily renewal of ACME-issued certificates that have under CERT_RENEW_BEFORE_DAYS left;
at start, private keys taken out of certificate files uploaded with one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from vpsapi.core.tasks import periodic
from vpsapi.ops.ssl import service, store


async def renew_due(app: Any) -> list[str]:
    """One run of the schedule: the ids of the renewal jobs it submitted."""
    return await service.renew_due(app.state.db, app.state.settings, app.state.jobs_engine)


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    await asyncio.to_thread(store.strip_private_keys, app.state.settings)
    async with periodic(
        "ssl-renewal", app.state.settings.cert_renew_interval, lambda: renew_due(app)
    ):
        yield
