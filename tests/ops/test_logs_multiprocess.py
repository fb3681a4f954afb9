"""Two real `vpsapi serve` processes append to the same stream files and rotate them."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest

from support import ADMIN_EMAIL, ADMIN_PASSWORD

pytestmark = pytest.mark.multiprocess

REQUESTS = 120


async def test_two_processes_share_rotated_stream_files(
    settings_factory: Any, server_factory: Any
) -> None:
    settings = settings_factory()
    extra = {"LOG_MAX_BYTES": "4096", "LOG_BACKUP_COUNT": "100"}
    servers = [server_factory(settings, **extra), server_factory(settings, **extra)]
    marker = uuid.uuid4().hex

    async def hit(index: int) -> int:
        server = servers[index % 2]
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            response = await client.get(
                "/health/live", headers={"X-Request-ID": f"{marker}-{index}"}
            )
            return response.status_code

    statuses = await asyncio.gather(*(hit(index) for index in range(REQUESTS)))
    assert set(statuses) == {200}

    log_dir = settings.effective_log_dir
    files = sorted(log_dir.glob("performance.log*"))
    assert len(files) > 2, "the files rotated"
    request_ids = []
    for path in files:
        for line in path.read_text().splitlines():
            entry = json.loads(line)  # no torn or interleaved line
            if str(entry.get("request_id", "")).startswith(marker):
                request_ids.append(entry["request_id"])
    assert sorted(request_ids) == sorted(f"{marker}-{index}" for index in range(REQUESTS))

    # Either process reads all of them back, across the rotated files.
    async with httpx.AsyncClient(base_url=servers[1].base_url, timeout=30) as client:
        response = await client.post(
            "/api/auth/login", json={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        response = await client.get(
            "/api/logs/performance", params={"q": marker, "limit": 1000}, headers=headers
        )
    assert response.status_code == 200, response.text
    assert len(response.json()["entries"]) == REQUESTS
