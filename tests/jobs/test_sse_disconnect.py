"""SSE clients leaving mid-stream, against a real server process (its log is read)."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from jobs_support import shared_key_headers, submit_type1_job

pytestmark = pytest.mark.multiprocess

STREAMS = 120


async def _follow_then_leave(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], after: float
) -> None:
    async def read() -> None:
        async with client.stream("GET", url, headers=headers) as response:
            assert response.status_code == 200
            async for _ in response.aiter_bytes():
                pass

    with contextlib.suppress(TimeoutError):  # left mid-stream, as a closed browser tab does
        await asyncio.wait_for(read(), timeout=after)


def test_clients_leaving_mid_stream_leave_nothing_in_the_error_log(
    settings_factory, server_factory
) -> None:
    """A client gone while its stream reads the job was an error with a traceback in the
    log (the cancelled read cost its connection), and one gone while the stream waited
    left a pending task behind ("Task was destroyed but it is pending")."""
    server = server_factory(settings_factory(), JOBS_INPROCESS_WORKERS="true")
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        headers = shared_key_headers(client)
        ids = [submit_type1_job(client, headers, items=20, delay_ms=100) for _ in range(4)]

    async def leave_all() -> None:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            await asyncio.gather(
                *(
                    _follow_then_leave(
                        client,
                        f"/api/sse/job-progress/{ids[n % len(ids)]}",
                        headers,
                        after=0.01 + (n % 40) * 0.025,  # spread over a second
                    )
                    for n in range(STREAMS)
                )
            )

    asyncio.run(leave_all())
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        assert client.get("/health/ready").status_code == 200  # the pool is whole
    server.stop()
    log = server.log_path.read_text()
    assert "/api/sse/job-progress/" in log  # the streams were served
    for sign in ("Traceback", "Task was destroyed", '"level":"error"', "[error"):
        assert sign not in log, sign
