"""Seed 000 job contract: submit, status, list, cancel, idempotency, ownership."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from job_support import submit, wait_for_status
from vpsapi.jobs.models import JobRecord


async def test_submit_returns_202_pending(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str]
) -> None:
    response = await jobs_client.post(
        "/api/jobs",
        json={"processingType": "type1", "data": [{"id": 1}, {"id": 2}]},
        headers=token_headers,
    )
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "PENDING"
    assert body["jobId"].startswith("job_")
    assert set(body) == {"jobId", "status"}


async def test_types_lists_what_a_client_may_submit(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str]
) -> None:
    response = await jobs_client.get("/api/jobs/types", headers=token_headers)
    assert response.status_code == 200
    types = response.json()["types"]
    assert {"type1", "type2", "type3"} <= set(types)
    # Internal job types (backups, certificates, push) are not offered.
    assert "ops.backup.create" not in types and "push" not in types
    assert (await jobs_client.get("/api/jobs/types")).status_code == 401


@pytest.mark.parametrize(
    ("processing_type", "options", "check"),
    [
        (
            "type1",
            {},
            lambda r, n: r == {"processed": n, "summary": f"Processed {n} items successfully"},
        ),
        (
            "type2",
            {},
            lambda r, n: (
                r["count"] == n
                and r["results"][0]["original"] == {"id": 0}
                and r["results"][0]["processed"]["id"] == 0
                and "timestamp" in r["results"][0]["processed"]
            ),
        ),
        (
            "type3",
            {"batchSize": 4},
            lambda r, n: (
                r["batches"] == 3
                and r["totalProcessed"] == n
                and r["results"][-1] == {"id": n - 1, "batchId": 2}
            ),
        ),
        ("type3", {}, lambda r, n: r["batches"] == 1 and r["results"][0]["batchId"] == 0),
        # JSON's true is no batch size of 1: the default applies.
        ("type3", {"batchSize": True}, lambda r, n: r["batches"] == 1),
    ],
)
async def test_result_shapes(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str], processing_type, options, check
) -> None:
    job_id = await submit(jobs_client, token_headers, processing_type, items=10, **options)
    await wait_for_status(jobs_client, token_headers, job_id, {"COMPLETED"})
    response = await jobs_client.get(f"/api/jobs/{job_id}", headers=token_headers)
    assert response.status_code == 200
    job = response.json()
    assert job["status"] == "COMPLETED"
    assert job["progress"] == 100 and isinstance(job["progress"], int)
    datetime.fromisoformat(job["createdAt"].replace("Z", "+00:00"))
    # Seed 000's job hash: the item count, and milliseconds from submission to completion.
    assert job["dataCount"] == 10
    assert isinstance(job["processingTime"], int) and job["processingTime"] >= 0
    assert "failedAt" not in job
    for moment in ("createdAt", "updatedAt", "startedAt", "completedAt"):  # as toISOString()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", job[moment]), moment
    assert "error" not in job
    assert check(job["result"], 10)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"data": [{"a": 1}]}, "processingType", "Processing type is required"),
        (
            {"processingType": "nope", "data": [{"a": 1}]},
            "processingType",
            "Invalid processing type",
        ),
        ({"processingType": "type1"}, "data", "Data array is required"),
        (
            {"processingType": "type1", "data": []},
            "data",
            "Data array must contain at least one item",
        ),
        (
            {"processingType": "type1", "data": [{"i": i} for i in range(1001)]},
            "data",
            "Data array cannot exceed 1000 items",
        ),
        # Joi's own words for the wrong types
        ({"processingType": "type1", "data": [1, 2]}, "data.0", '"data[0]" must be of type object'),
        ({"processingType": "type1", "data": "x"}, "data", '"data" must be an array'),
        (
            {"processingType": "type1", "data": [{}], "options": []},
            "options",
            '"options" must be of type object',
        ),
        ({"processingType": 5, "data": [{}]}, "processingType", "Invalid processing type"),
        ({"processingType": None, "data": [{}]}, "processingType", "Invalid processing type"),
    ],
)
async def test_validation_400(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str], body, field, message
) -> None:
    response = await jobs_client.post("/api/jobs", json=body, headers=token_headers)
    assert response.status_code == 400
    payload = response.json()
    assert payload["error"] == "Validation failed"
    messages = [d["message"] for d in payload["details"] if d["field"] == field]
    assert messages, payload
    if message:
        assert messages[0] == message
    listed = await jobs_client.get("/api/jobs", headers=token_headers)
    assert listed.json()["jobs"] == []


@pytest.mark.parametrize(
    ("content", "details"),
    [
        # Joi 17 with abortEarly: false, as seed 000 validates (checked against Joi itself).
        (
            b'{"processingType": 5, "data": [{}]}',
            ["Invalid processing type", '"processingType" must be a string'],
        ),
        (
            b'{"processingType": null, "data": [{}]}',
            ["Invalid processing type", '"processingType" must be a string'],
        ),
        (
            b'{"processingType": "", "data": [{}]}',
            ["Invalid processing type", '"processingType" is not allowed to be empty'],
        ),
        (b'{"data": [{}]}', ["Processing type is required"]),
    ],
)
async def test_processing_type_errors_in_joi_s_words(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str], content: bytes, details
) -> None:
    response = await jobs_client.post(
        "/api/jobs", content=content, headers={**token_headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["details"] == [
        {"field": "processingType", "message": message} for message in details
    ]


async def test_a_body_that_is_no_object_in_joi_s_words(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str]
) -> None:
    response = await jobs_client.post("/api/jobs", json=[1], headers=token_headers)
    assert response.status_code == 400
    assert response.json()["details"] == [
        {"field": "", "message": '"value" must be of type object'}
    ]


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"null", b'"text"'])
async def test_malformed_body_400(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str], content: bytes
) -> None:
    response = await jobs_client.post(
        "/api/jobs", content=content, headers={**token_headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "error" in response.json()


MALFORMED = "Malformed JSON in request body"


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (
            b'{"processingType": "type1", "data": [{"a": ' + b"[" * 2000 + b"]" * 2000 + b"}]}",
            MALFORMED,
        ),
        (b'{"processingType": "type3", "data": [{"name": "\\udc00"}]}', MALFORMED),
        (b'{"processingType": "type2", "data": [{"a": NaN}]}', MALFORMED),  # not JSON
        (b'{"processingType": "type2", "data": [{"a": -Infinity}]}', MALFORMED),
        # JSON, but beyond a float: Python reads it as infinity, which no answer can hold
        (
            b'{"processingType": "type2", "data": [{"a": 1e400}]}',
            "Validation failed",
        ),
        (
            b'{"processingType": "type2", "data": [{"a": 1' + b"0" * 400 + b".5}]}",
            "Validation failed",
        ),
    ],
    ids=["nested-2000-deep", "lone-surrogate", "nan", "infinity", "overflow", "overflow-digits"],
)
async def test_bodies_no_store_could_keep_are_400_and_store_nothing(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str], content: bytes, error: str
) -> None:
    response = await jobs_client.post(
        "/api/jobs", content=content, headers={**token_headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == error
    listed = await jobs_client.get("/api/jobs", headers=token_headers)
    assert listed.json()["jobs"] == []


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
async def test_a_form_body_is_told_to_be_json(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str], content_type: str
) -> None:
    """Seed 000's Express also parses urlencoded bodies; ours are JSON: said as such, not
    as malformed JSON."""
    response = await jobs_client.post(
        "/api/jobs",
        content=b"processingType=type1&data[0][id]=1",
        headers={**token_headers, "Content-Type": content_type},
    )
    assert response.status_code == 400
    assert response.json()["error"] == (
        "Request body must be a JSON object (Content-Type: application/json)"
    )
    assert (await jobs_client.get("/api/jobs", headers=token_headers)).json()["jobs"] == []
    # JSON gone wrong under a form's type (`curl -d '{"a": 1'`) is still called malformed.
    broken = await jobs_client.post(
        "/api/jobs",
        content=b'{"processingType": "type1"',
        headers={**token_headers, "Content-Type": content_type},
    )
    assert broken.json()["error"] == "Malformed JSON in request body"


async def test_an_empty_body_names_the_missing_fields(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str]
) -> None:
    response = await jobs_client.post(
        "/api/jobs", headers={**token_headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    fields = {d["field"]: d["message"] for d in response.json()["details"]}
    assert fields == {
        "processingType": "Processing type is required",
        "data": "Data array is required",
    }


async def test_options_validated(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str]
) -> None:
    for options, field in (
        ({"attempts": 0}, "options.attempts"),
        ({"attempts": "3"}, "options.attempts"),
        ({"timeout": -1}, "options.timeout"),
        ({"timeout": 0.5}, "options.timeout"),
    ):
        response = await jobs_client.post(
            "/api/jobs",
            json={"processingType": "type1", "data": [{}], "options": options},
            headers=token_headers,
        )
        assert response.status_code == 400, options
        body = response.json()
        assert body["error"] == "Validation failed"
        assert [d["field"] for d in body["details"]] == [field]
    listed = await jobs_client.get("/api/jobs", headers=token_headers)
    assert listed.json()["jobs"] == []


async def test_unknown_fields_are_stripped(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str]
) -> None:
    response = await jobs_client.post(
        "/api/jobs",
        json={"processingType": "type1", "data": [{"id": 1}], "extra": "ignored"},
        headers=token_headers,
    )
    assert response.status_code == 202


async def test_auth_required(jobs_client: httpx.AsyncClient) -> None:
    response = await jobs_client.post("/api/jobs", json={"processingType": "type1", "data": [{}]})
    assert response.status_code == 401
    assert response.json()["error"] == "No token provided"
    response = await jobs_client.get("/api/jobs/job_x", headers={"Authorization": "Bearer bad"})
    assert response.status_code == 401
    assert response.json()["error"] == "Invalid token"


async def test_unknown_job_404(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str]
) -> None:
    response = await jobs_client.get("/api/jobs/job_unknown", headers=token_headers)
    assert response.status_code == 404
    assert response.json()["error"] == "Job not found"


async def test_foreign_job_is_404_and_admin_sees_all(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str], create_user, admin_headers
) -> None:
    job_id = await submit(jobs_client, token_headers)
    _user, user_headers = await create_user()
    for method, path in (
        ("GET", f"/api/jobs/{job_id}"),
        ("DELETE", f"/api/jobs/{job_id}"),
        ("POST", f"/api/jobs/{job_id}/cancel"),
    ):
        response = await jobs_client.request(method, path, headers=user_headers)
        assert response.status_code == 404
        assert response.json()["error"] == "Job not found"
    assert (await jobs_client.get("/api/jobs", headers=user_headers)).json()["jobs"] == []
    assert (await jobs_client.get(f"/api/jobs/{job_id}", headers=admin_headers)).status_code == 200


async def test_list_filters_and_cursor(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str]
) -> None:
    ids = [await submit(jobs_client, token_headers, "type1") for _ in range(3)]
    ids.append(await submit(jobs_client, token_headers, "type2"))
    for job_id in ids:
        await wait_for_status(jobs_client, token_headers, job_id, {"COMPLETED"})
    page = (await jobs_client.get("/api/jobs?limit=2", headers=token_headers)).json()
    assert [j["jobId"] for j in page["jobs"]] == ids[::-1][:2]
    rest = await jobs_client.get(
        "/api/jobs", params={"limit": 2, "cursor": page["nextCursor"]}, headers=token_headers
    )
    assert [j["jobId"] for j in rest.json()["jobs"]] == ids[::-1][2:]
    assert rest.json()["nextCursor"] is None
    typed = await jobs_client.get("/api/jobs?type=type2", headers=token_headers)
    assert [j["jobId"] for j in typed.json()["jobs"]] == [ids[3]]
    done = await jobs_client.get("/api/jobs?status=COMPLETED", headers=token_headers)
    assert len(done.json()["jobs"]) == 4
    v1 = await jobs_client.get("/api/v1/jobs?limit=1", headers=token_headers)
    assert v1.json()["success"] is True
    assert len(v1.json()["data"]["items"]) == 1 and v1.json()["data"]["nextCursor"]


async def test_every_filter_pages_together(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str], create_user, admin_headers
) -> None:
    """Status, type and cursor at once, for an owner and for an admin (each combination
    of filters is its own statement)."""
    _user, user_headers = await create_user()
    mine = [await submit(jobs_client, token_headers, kind) for kind in ("type2", "type1") * 2]
    theirs = await submit(jobs_client, user_headers, "type2")
    for job_id in mine:
        await wait_for_status(jobs_client, token_headers, job_id, {"COMPLETED"})
    await wait_for_status(jobs_client, user_headers, theirs, {"COMPLETED"})

    async def every_page(headers: dict[str, str]) -> list[str]:
        seen: list[str] = []
        params = {"status": "COMPLETED", "type": "type2", "limit": "1"}
        while True:
            page = (await jobs_client.get("/api/jobs", params=params, headers=headers)).json()
            seen += [job["jobId"] for job in page["jobs"]]
            if page["nextCursor"] is None:
                return seen
            params["cursor"] = page["nextCursor"]

    assert await every_page(token_headers) == [mine[2], mine[0]]
    assert await every_page(admin_headers) == [theirs, mine[2], mine[0]]
    running = await jobs_client.get(
        "/api/jobs", params={"status": "PENDING", "type": "type2"}, headers=admin_headers
    )
    assert running.json() == {"jobs": [], "nextCursor": None}


def _forged_cursor(moment: str) -> str:
    raw = json.dumps([moment, "job_x"]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "params",
    [
        {"status": "DONE"},
        {"limit": 0},
        {"limit": 500},
        {"cursor": "%%%"},
        {"cursor": _forged_cursor("0001-01-01T00:00:00+05:00")},  # no such moment in UTC
    ],
)
async def test_list_bad_params(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str], params
) -> None:
    response = await jobs_client.get("/api/jobs", params=params, headers=token_headers)
    assert response.status_code == 400
    v1 = await jobs_client.get("/api/v1/jobs", params=params, headers=token_headers)
    assert v1.status_code in (400, 422)
    assert v1.json()["success"] is False


async def test_idempotency_key_returns_same_job(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str]
) -> None:
    headers = {**token_headers, "Idempotency-Key": "order-42"}
    body = {"processingType": "type1", "data": [{"id": 1}]}
    first = await jobs_client.post("/api/jobs", json=body, headers=headers)
    second = await jobs_client.post("/api/jobs", json=body, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["jobId"] == second.json()["jobId"]
    other = await jobs_client.post(
        "/api/jobs", json=body, headers={**token_headers, "Idempotency-Key": "order-43"}
    )
    assert other.json()["jobId"] != first.json()["jobId"]
    listed = await jobs_client.get("/api/jobs", headers=token_headers)
    assert len(listed.json()["jobs"]) == 2
    too_long = await jobs_client.post(
        "/api/jobs", json=body, headers={**token_headers, "Idempotency-Key": "k" * 300}
    )
    assert too_long.status_code == 400


async def test_an_idempotency_key_is_free_again_after_a_day(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str]
) -> None:
    headers = {**token_headers, "Idempotency-Key": "nightly-report"}
    body = {"processingType": "type1", "data": [{"id": 1}]}
    first = (await jobs_client.post("/api/jobs", json=body, headers=headers)).json()["jobId"]
    async with jobs_client.app.state.db.session() as session:  # type: ignore[attr-defined]
        await session.execute(
            update(JobRecord)
            .where(JobRecord.id == first)
            .values(created_at=datetime.now(UTC) - timedelta(hours=25))
        )
    second = await jobs_client.post("/api/jobs", json=body, headers=headers)
    assert second.status_code == 202
    assert second.json()["jobId"] != first
    third = await jobs_client.post("/api/jobs", json=body, headers=headers)
    assert third.json()["jobId"] == second.json()["jobId"]
    listed = (await jobs_client.get("/api/jobs", headers=token_headers)).json()["jobs"]
    assert {job["jobId"] for job in listed} == {first, second.json()["jobId"]}


async def test_cancel_running_job(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str], test_processors
) -> None:
    job_id = await submit(jobs_client, token_headers, "test-gate")
    await wait_for_status(jobs_client, token_headers, job_id, {"PROCESSING"})
    response = await jobs_client.delete(f"/api/jobs/{job_id}", headers=token_headers)
    assert response.status_code == 200
    assert response.json()["status"] == "CANCELLED"
    final = await wait_for_status(jobs_client, token_headers, job_id, {"CANCELLED"})
    assert final["status"] == "CANCELLED"
    assert final["cancelledAt"].endswith("Z") and "completedAt" not in final
    again = await jobs_client.post(f"/api/jobs/{job_id}/cancel", headers=token_headers)
    assert again.status_code == 200 and again.json()["status"] == "CANCELLED"
    test_processors["gate"].release.set()


async def test_cancel_finished_job_is_409(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str]
) -> None:
    job_id = await submit(jobs_client, token_headers)
    await wait_for_status(jobs_client, token_headers, job_id, {"COMPLETED"})
    response = await jobs_client.post(f"/api/jobs/{job_id}/cancel", headers=token_headers)
    assert response.status_code == 409
    status = (await jobs_client.get(f"/api/jobs/{job_id}", headers=token_headers)).json()
    assert status["status"] == "COMPLETED"


async def test_search_finds_own_jobs(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str]
) -> None:
    job_id = await submit(jobs_client, token_headers, "type2")
    response = await jobs_client.get(
        "/api/v1/search", params={"q": job_id[-8:], "kind": "jobs"}, headers=token_headers
    )
    assert [hit["id"] for hit in response.json()["data"]["results"]] == [job_id]


async def test_a_delay_beyond_a_float_sleeps_the_longest_delay(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str]
) -> None:
    """`delayMs` is capped at a minute per step; `float(10**400)` raised first, so the
    job failed every attempt instead."""
    job_id = await submit(jobs_client, token_headers, "type1", items=1, delayMs=10**400)
    await wait_for_status(jobs_client, token_headers, job_id, {"PROCESSING"})
    await asyncio.sleep(1)  # the failed attempts came within milliseconds
    job = (await jobs_client.get(f"/api/jobs/{job_id}", headers=token_headers)).json()
    assert job["status"] == "PROCESSING" and "lastError" not in job, job
    await jobs_client.delete(f"/api/jobs/{job_id}", headers=token_headers)
