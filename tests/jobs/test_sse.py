"""SSE contract: connected first, job JSON on change with ids, error events, resume."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeout

from job_support import sse_events, submit, wait_for_progress, wait_for_status
from support import SHARED_API_KEY
from vpsapi.jobs import service
from vpsapi.jobs.engine import PROGRESS_MIN_INTERVAL


async def test_stream_of_a_job_ends_with_its_final_state(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str]
) -> None:
    job_id = await submit(jobs_client, token_headers, "type1", items=5)
    async with jobs_client.stream(
        "GET", f"/api/sse/job-progress/{job_id}", headers=token_headers
    ) as response:
        assert response.headers["content-type"] == "text/event-stream"  # seed 000's, exactly
        assert response.headers["cache-control"] == "no-cache, no-transform"
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["access-control-allow-origin"] == "*"  # seed 000: origin || '*'
        assert "content-encoding" not in response.headers
    events = [
        e async for e in sse_events(jobs_client, f"/api/sse/job-progress/{job_id}", token_headers)
    ]
    assert events[0][0] == "connected"
    data = [json.loads(d) for kind, _, d in events if kind == "message"]
    assert data[-1]["status"] == "COMPLETED"
    assert data[-1]["result"]["processed"] == 5
    ids = [int(i) for kind, i, _ in events if kind == "message"]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_events_are_written_as_seed_000_writes_them(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines end in \\n, events in a blank line: a `fetch` reader splitting on "\\n\\n" (the
    way to send an Authorization header) finds them; an idle stream says `:keep-alive`."""
    monkeypatch.setattr("vpsapi.core.sse.KEEP_ALIVE_SECONDS", 0.2)
    job_id = await submit(jobs_client, token_headers, "type1", items=2, delayMs=800)
    url = f"/api/sse/job-progress/{job_id}"
    raw = b""
    async with jobs_client.stream("GET", url, headers=token_headers, timeout=60) as response:
        async for chunk in response.aiter_bytes():
            raw += chunk
    assert b"\r" not in raw
    blocks = raw.decode().split("\n\n")
    assert blocks[0] == 'event: connected\ndata: {"message": "Connected to job progress stream"}'
    assert ":keep-alive" in blocks
    last = [line for line in blocks[-2].split("\n") if line.startswith("data: ")]
    assert json.loads(last[0].removeprefix("data: "))["status"] == "COMPLETED"
    assert blocks[-1] == ""  # the last event ends in its blank line


async def test_unknown_job_gets_error_event(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str]
) -> None:
    events = [
        e async for e in sse_events(jobs_client, "/api/sse/job-progress/job_nope", token_headers)
    ]
    assert [kind for kind, _, _ in events] == ["connected", "error"]
    assert json.loads(events[1][2]) == {"error": "Job not found"}


async def test_foreign_job_gets_error_event(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str], create_user
) -> None:
    job_id = await submit(jobs_client, token_headers)
    _user, other = await create_user()
    events = [e async for e in sse_events(jobs_client, f"/api/sse/job-progress/{job_id}", other)]
    assert events[-1][0] == "error"


async def test_failed_job_ends_with_error_event(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str], test_processors
) -> None:
    test_processors["flaky"].failures = 99
    job_id = await submit(jobs_client, token_headers, "test-flaky", attempts=1)
    await wait_for_status(jobs_client, token_headers, job_id, {"FAILED"})
    events = [
        e async for e in sse_events(jobs_client, f"/api/sse/job-progress/{job_id}", token_headers)
    ]
    final = json.loads(events[-2][2])
    assert final["status"] == "FAILED" and final["error"] == "boom 1"
    assert "failedAt" in final and "completedAt" not in final  # as seed 000's job hash
    # Seed 000's "SSE Event Format", byte for byte.
    assert events[-1][:1] + events[-1][2:] == ("error", '{"error":"Job failed"}')


async def test_access_token_query_parameter(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str]
) -> None:
    job_id = await submit(jobs_client, token_headers)
    await wait_for_status(jobs_client, token_headers, job_id, {"COMPLETED"})
    token = token_headers["Authorization"].split()[1]
    events = [
        e
        async for e in sse_events(
            jobs_client, f"/api/sse/job-progress/{job_id}?access_token={token}"
        )
    ]
    assert json.loads(events[-1][2])["status"] == "COMPLETED"


async def test_stream_auth_errors(
    jobs_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    no_token = await jobs_client.get("/api/sse/job-progress/job_x")
    assert no_token.status_code == 401
    bad = await jobs_client.get("/api/sse/job-progress/job_x?access_token=garbage")
    assert bad.status_code == 401
    key = (
        await jobs_client.post("/api/v1/api-keys", json={"name": "k"}, headers=admin_headers)
    ).json()
    in_url = await jobs_client.get(f"/api/sse/job-progress/job_x?access_token={key['data']['key']}")
    assert in_url.status_code == 401


async def test_last_event_id_resume(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str]
) -> None:
    job_id = await submit(jobs_client, token_headers)
    final = await wait_for_status(jobs_client, token_headers, job_id, {"COMPLETED"})
    events = [
        e async for e in sse_events(jobs_client, f"/api/sse/job-progress/{job_id}", token_headers)
    ]
    last_id = events[-1][1]
    # Already has the end: 204, which stops an EventSource from reconnecting (a stream
    # of `connected` alone would have it come back every few seconds, forever).
    for seen in (last_id, str(int(last_id) + 5)):
        resumed = await jobs_client.get(
            f"/api/sse/job-progress/{job_id}", headers={**token_headers, "Last-Event-ID": seen}
        )
        assert resumed.status_code == 204, resumed.text
        assert resumed.content == b""
    # Missed the end: gets the final state.
    behind = [
        e
        async for e in sse_events(
            jobs_client, f"/api/sse/job-progress/{job_id}", {**token_headers, "Last-Event-ID": "1"}
        )
    ]
    assert json.loads(behind[-1][2])["status"] == final["status"]
    # Not an id (a superscript two passes str.isdigit, 5,000 digits int()'s limit): as none.
    for odd in ("%C2%B2", "9" * 5000):
        answered = [
            e
            async for e in sse_events(
                jobs_client, f"/api/sse/job-progress/{job_id}?lastEventId={odd}", token_headers
            )
        ]
        assert json.loads(answered[-1][2])["status"] == final["status"]


async def test_a_database_failure_on_resume_is_no_final_answer(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An EventSource gives up for good on a status other than 200 or 204: the check for an
    ended job failing once must not turn into a 503."""
    job_id = await submit(jobs_client, token_headers)
    await wait_for_status(jobs_client, token_headers, job_id, {"COMPLETED"})
    real_get_job = service.get_job
    failures = [PoolTimeout("every connection busy")]

    async def get_job_failing_once(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real_get_job(*args, **kwargs)

    monkeypatch.setattr(service, "get_job", get_job_failing_once)
    async with jobs_client.stream(
        "GET",
        f"/api/sse/job-progress/{job_id}",
        headers={**token_headers, "Last-Event-ID": "99999"},
    ) as answer:
        assert answer.status_code == 200
        assert "event: connected" in (await answer.aread()).decode()
    assert failures == []


def _seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


async def test_progress_writes_are_coalesced_per_interval(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str]
) -> None:
    # 400 reports; at most one progress write per interval, the claim counting as one.
    job_id = await submit(jobs_client, token_headers, "type1", items=400)
    final = await wait_for_status(jobs_client, token_headers, job_id, {"COMPLETED"})
    events = [
        e async for e in sse_events(jobs_client, f"/api/sse/job-progress/{job_id}", token_headers)
    ]
    writes = int(events[-1][1])  # the event id is the row's write sequence
    ran = _seconds_between(final["startedAt"], final["completedAt"])
    assert writes <= 2 + ran / PROGRESS_MIN_INTERVAL, (writes, ran)
    assert final["progress"] == 100


async def test_a_report_inside_the_interval_is_written_while_the_job_runs(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str], test_processors
) -> None:
    # The gate reports 10 % right after its claim (inside the interval), then waits.
    gate = test_processors["gate"]
    job_id = await submit(jobs_client, token_headers, "test-gate")
    running = await wait_for_progress(jobs_client, token_headers, job_id, 10)
    assert running["status"] == "PROCESSING"
    gate.release.set()
    final = await wait_for_status(jobs_client, token_headers, job_id, {"COMPLETED"})
    assert final["progress"] == 100


async def test_stream_ends_with_reconnect_when_its_read_stalls(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream's read of its job runs to its end even when the client leaves, but not
    longer than SHIELDED_READ_SECONDS: a stalled database ends the stream with `reconnect`
    (and would otherwise hold a gone client's task and a shutdown)."""
    from vpsapi.jobs import service

    job_id = await submit(jobs_client, token_headers)
    monkeypatch.setattr("vpsapi.core.db.SHIELDED_READ_SECONDS", 0.2)
    real_get_job = service.get_job

    async def stalled(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(30)
        return await real_get_job(*args, **kwargs)

    monkeypatch.setattr(service, "get_job", stalled)
    url = f"/api/sse/job-progress/{job_id}"
    events = await asyncio.wait_for(_all(sse_events(jobs_client, url, token_headers)), 10)
    assert [kind for kind, _, _ in events] == ["connected", "reconnect"]
    assert json.loads(events[1][2])["reason"] == "database busy or unavailable"


async def _all(events: Any) -> list[Any]:
    return [event async for event in events]


async def test_stream_ends_with_reconnect_when_no_database_connection_is_free(
    make_client, backend
) -> None:
    """Overload: the stream cannot read the job within DATABASE_POOL_TIMEOUT. It ends
    cleanly with a `reconnect` event (not a broken connection), so that the browser comes
    back with Last-Event-ID."""
    if not backend.scaleout:
        pytest.skip("a connection pool is PostgreSQL's (scale-out run)")
    client = await make_client(
        jobs_inprocess_workers=False,
        database_pool_size=1,
        database_max_overflow=0,
        database_pool_timeout=0.3,
    )
    token = await client.post("/api/auth/token", headers={"X-API-Key": SHARED_API_KEY})
    headers = {"Authorization": f"Bearer {token.json()['token']}"}
    job_id = await submit(client, headers)
    async with client.app.state.db.engine.connect():  # the only connection, held
        events = [e async for e in sse_events(client, f"/api/sse/job-progress/{job_id}", headers)]
    assert [kind for kind, _, _ in events] == ["connected", "reconnect"]
    assert json.loads(events[1][2]) == {"reason": "database busy or unavailable", "jobId": job_id}
    assert (await client.get(f"/api/jobs/{job_id}", headers=headers)).status_code == 200
