"""The AI part of CityPulse: one pooled HTTP client to the providers per process.
(Its rate-limit tiers, `ai` and `swarm`, are declared by the citypulse module.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from vpsapi.citypulse.ai.providers import new_http_client
from vpsapi.citypulse.ai.router import router, swarm_router
from vpsapi.core.modules import Module


@asynccontextmanager
async def ai_lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with new_http_client(app.state.settings) as http:
        app.state.ai_http = http
        yield


MODULE = Module(
    name="ai",
    description="AI chat through model providers and agent swarms run as jobs (seed 004)",
    routers=[router, swarm_router],
    lifespan=ai_lifespan,
)
