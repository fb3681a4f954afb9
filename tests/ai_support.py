"""Fixtures and helpers for the AI tests: the fake provider server (see fake_llm.py)
and an app client configured to use it. Test modules import the fixtures by name."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fake_llm import FakeProviders


@pytest.fixture(scope="session")
def _provider_server() -> Iterator[FakeProviders]:
    server = FakeProviders().start()
    yield server
    server.stop()


@pytest.fixture
def providers(_provider_server: FakeProviders) -> Iterator[FakeProviders]:
    """The fake providers, with a clean request log and a closed gate."""
    _provider_server.reset()
    yield _provider_server
    _provider_server.gate.set()  # let any waiting handler finish


@pytest.fixture
def ai_timeout_seconds() -> float:
    """The app's AI timeout; a test that must outlast it parametrizes this name. Short, as
    the `slow` model's tests wait it out, yet long enough for a loaded machine (1 s let an
    ordinary fake answer time out in CI with both suites running)."""
    return 3


@pytest.fixture
async def client(
    make_client: Any, providers: FakeProviders, ai_timeout_seconds: float
) -> httpx.AsyncClient:
    """Replaces the shared `client`: an app with every provider configured (3 s AI
    timeout unless a test says otherwise) and in-process job workers (saq inside the app on
    the scale-out run), so the users made by `create_user` and the swarm jobs all live in
    this one app."""
    return await make_client(
        **providers.settings(),
        ai_timeout_seconds=ai_timeout_seconds,
        jobs_inprocess_workers=True,
        job_lease_seconds=3,
    )


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """(event, decoded data) of a whole text/event-stream body; comments skipped."""
    events = []
    for block in text.split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events
