"""Job test fixtures: an app whose workers run in-process (saq on Redis in the
scale-out run), fast retries, and test-only processors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support import SHARED_API_KEY
from vpsapi.jobs import processors


@pytest.fixture
async def jobs_client(make_client) -> httpx.AsyncClient:
    return await make_client(
        jobs_inprocess_workers=True,
        job_backoff_base_seconds=0.05,
        job_lease_seconds=3,
    )


@pytest.fixture
async def token_headers(jobs_client: httpx.AsyncClient) -> dict[str, str]:
    response = await jobs_client.post("/api/auth/token", headers={"X-API-Key": SHARED_API_KEY})
    return {"Authorization": f"Bearer {response.json()['token']}"}


class Flaky:
    """Fails `failures` times, then succeeds."""

    name = "test-flaky"
    timeout: int | None = None

    def __init__(self) -> None:
        self.calls = 0
        self.failures = 2

    async def process(self, items: list[dict[str, Any]], options: dict[str, Any], report) -> dict:
        self.calls += 1
        await report(50)
        if self.calls <= self.failures:
            raise RuntimeError(f"boom {self.calls}")
        return {"ok": True, "calls": self.calls}


class Gate:
    """Reports 10%, then waits until released (or cancelled)."""

    name = "test-gate"
    timeout: int | None = None

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def process(self, items: list[dict[str, Any]], options: dict[str, Any], report) -> dict:
        await report(10)
        self.started.set()
        await self.release.wait()
        await report(100)
        return {"released": True}


class Sleepy:
    name = "test-sleepy"
    timeout: int | None = 1

    async def process(self, items: list[dict[str, Any]], options: dict[str, Any], report) -> dict:
        await asyncio.sleep(30)
        return {}


@pytest.fixture
def test_processors() -> Iterator[dict[str, Any]]:
    registered = {"flaky": Flaky(), "gate": Gate(), "sleepy": Sleepy()}
    for processor in registered.values():
        processors.register(processor)
    yield registered
    for processor in registered.values():
        processors.unregister(processor.name)
