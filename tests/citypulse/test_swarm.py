"""POST /api/v1/swarm/orchestrate: agents run as a `swarm` job (in-process workers, saq
on Redis in the scale-out run, and real `vpsapi worker` processes), with progress per
agent, the combined result, usage per call, and bad input refused up front."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from ai_support import _provider_server, ai_timeout_seconds, client, providers  # noqa: F401
from fake_llm import FakeProviders
from job_support import wait_for_status
from support import ADMIN_EMAIL, ADMIN_PASSWORD, server_env, start_process

ORCHESTRATE = "/api/v1/swarm/orchestrate"
TASK = "Cut the energy use of building 7"


@pytest.fixture
async def user_headers(create_user: Any) -> dict[str, str]:
    _, headers = await create_user("user")
    return headers


async def _orchestrate(
    client: httpx.AsyncClient,  # noqa: F811
    headers: dict[str, str],
    **body: Any,
) -> str:
    response = await client.post(ORCHESTRATE, json={"task": TASK, **body}, headers=headers)
    assert response.status_code == 202, response.text
    data = response.json()["data"]
    assert response.headers["Location"] == f"/api/jobs/{data['jobId']}"
    assert data["links"] == {
        "status": f"/api/jobs/{data['jobId']}",
        "events": f"/api/sse/job-progress/{data['jobId']}",
        "cancel": f"/api/jobs/{data['jobId']}/cancel",
    }
    assert data["status"] == "PENDING"
    return str(data["jobId"])


async def test_parallel_swarm_concatenates_answers(
    client: httpx.AsyncClient,  # noqa: F811
    user_headers: dict[str, str],
) -> None:
    agents = [
        {"name": "analyst", "provider": "openai", "model": "gpt-a", "system": "Analyse."},
        {"name": "engineer", "provider": "anthropic", "model": "claude-b", "system": "Build."},
        {"name": "local", "provider": "openai-compatible", "model": "llama3"},
    ]
    job_id = await _orchestrate(client, user_headers, agents=agents, strategy="parallel")
    job = await wait_for_status(client, user_headers, job_id, {"COMPLETED", "FAILED"})
    assert job["status"] == "COMPLETED", job
    assert job["processingType"] == "swarm" and job["progress"] == 100
    result = job["result"]
    assert result["strategy"] == "parallel" and result["task"] == TASK
    assert [(a["name"], a["provider"], a["model"], a["content"]) for a in result["agents"]] == [
        ("analyst", "openai", "gpt-a", f"gpt-a says: {TASK}"),
        ("engineer", "anthropic", "claude-b", f"claude-b says: {TASK}"),
        ("local", "openai-compatible", "llama3", f"llama3 says: {TASK}"),
    ]
    assert all("error" not in a for a in result["agents"])
    assert result["aggregate"] == {
        "method": "concat",
        "content": "\n\n".join(
            f"## {name}\n\n{model} says: {TASK}"
            for name, model in (("analyst", "gpt-a"), ("engineer", "claude-b"), ("local", "llama3"))
        ),
    }
    prompt = len(TASK.split())
    # analyst and engineer count their one-word system prompt too.
    assert result["usage"]["promptTokens"] == 3 * prompt + 2
    assert result["usage"]["totalTokens"] == (
        result["usage"]["promptTokens"] + result["usage"]["completionTokens"]
    )

    usage = (await client.get("/api/v1/ai/usage", headers=user_headers)).json()["data"]
    assert sorted(r["model"] for r in usage["items"]) == ["claude-b", "gpt-a", "llama3"]
    assert {r["jobId"] for r in usage["items"]} == {job_id}

    # The job shows through the v1 jobs list with its type, and only to its owner.
    listed = await client.get("/api/v1/jobs?type=swarm", headers=user_headers)
    assert [j["jobId"] for j in listed.json()["data"]["items"]] == [job_id]


async def test_sequential_swarm_chains_and_reports_progress_per_agent(
    client: httpx.AsyncClient,  # noqa: F811
    providers: FakeProviders,  # noqa: F811
    user_headers: dict[str, str],
) -> None:
    agents = [
        {"name": "first", "provider": "groq", "model": "llama-a"},
        # Holds its answer until the gate opens, so the progress after agent one is seen.
        {"name": "second", "provider": "openai", "model": "gated"},
    ]
    job_id = await _orchestrate(client, user_headers, agents=agents, strategy="sequential")
    halfway = await _wait_progress(client, user_headers, job_id, 50)
    assert (halfway["status"], halfway["progress"]) == ("PROCESSING", 50)
    providers.gate.set()
    job = await wait_for_status(client, user_headers, job_id, {"COMPLETED", "FAILED"})
    assert job["status"] == "COMPLETED", job
    first, second = job["result"]["agents"]
    assert first["content"] == f"llama-a says: {TASK}"
    chained = f"{TASK}\n\nThe previous agent (first) answered:\n\nllama-a says: {TASK}"
    assert second["content"] == f"gated says: {chained}"
    assert providers.received[1].body["messages"] == [{"role": "user", "content": chained}]


async def _wait_progress(
    client: httpx.AsyncClient,  # noqa: F811
    headers: dict[str, str],
    job_id: str,
    progress: int,
) -> dict[str, Any]:
    """Poll until the job's progress reaches `progress` (bounded; not a timing assertion)."""
    last: dict[str, Any] = {}
    for _ in range(3000):
        last = (await client.get(f"/api/jobs/{job_id}", headers=headers)).json()
        if last["progress"] >= progress or last["status"] in ("COMPLETED", "FAILED"):
            return last
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} never reached {progress}%: {last}")


async def test_aggregate_by_a_named_agent(
    client: httpx.AsyncClient,  # noqa: F811
    providers: FakeProviders,  # noqa: F811
    user_headers: dict[str, str],
) -> None:
    agents = [
        {"name": "optimist", "provider": "openai", "model": "gpt-a"},
        {"name": "critic", "provider": "anthropic", "model": "claude-c", "system": "Criticise."},
    ]
    job_id = await _orchestrate(
        client,
        user_headers,
        agents=agents,
        aggregate={"agent": "critic", "instructions": "Answer in one line."},
    )
    job = await wait_for_status(client, user_headers, job_id, {"COMPLETED", "FAILED"})
    aggregate = job["result"]["aggregate"]
    assert (aggregate["method"], aggregate["provider"], aggregate["model"]) == (
        "model",
        "anthropic",
        "claude-c",
    )
    final = providers.received[-1]
    assert final.provider == "anthropic" and final.body["system"] == "Criticise."
    (message,) = final.body["messages"]
    assert message["content"] == (
        f"Task:\n{TASK}\n\nAnswers of the agents:\n\n"
        f"### optimist\ngpt-a says: {TASK}\n\n### critic\nclaude-c says: {TASK}"
        "\n\nAnswer in one line."
    )
    assert aggregate["content"] == "claude-c says: " + message["content"]
    assert aggregate["usage"]["totalTokens"] > 0
    usage = (await client.get("/api/v1/ai/usage", headers=user_headers)).json()["data"]
    assert usage["totals"]["calls"] == 3


async def test_failing_agents_are_reported_and_the_rest_aggregated(
    client: httpx.AsyncClient,  # noqa: F811
    providers: FakeProviders,  # noqa: F811
    user_headers: dict[str, str],
) -> None:
    agents = [
        {"name": "good", "provider": "openai", "model": "gpt-a"},
        {"name": "broken", "provider": "groq", "model": "fail-500"},
        {"name": "late", "provider": "anthropic", "model": "slow"},
    ]
    job_id = await _orchestrate(
        client, user_headers, agents=agents, aggregate={"provider": "openai", "model": "gpt-z"}
    )
    job = await wait_for_status(client, user_headers, job_id, {"COMPLETED", "FAILED"})
    assert job["status"] == "COMPLETED", job
    good, broken, late = job["result"]["agents"]
    assert good["content"] == f"gpt-a says: {TASK}" and "error" not in good
    assert broken["content"] is None
    assert broken["error"] == {
        "code": "BadGateway",
        "message": "groq answered 500: The server had an error processing it",
        "statusCode": 502,
    }
    assert late["error"]["code"] == "GatewayTimeout" and late["error"]["statusCode"] == 504
    aggregate = job["result"]["aggregate"]
    assert aggregate["model"] == "gpt-z" and "error" not in aggregate
    final = providers.received[-1].body
    assert final["messages"][0]["role"] == "system"  # the default aggregator prompt
    assert "### good" in final["messages"][1]["content"]
    assert "### broken" not in final["messages"][1]["content"]

    usage = (await client.get("/api/v1/ai/usage", headers=user_headers)).json()["data"]
    assert sorted(r["status"] for r in usage["items"]) == ["error", "ok", "ok", "timeout"]


async def test_nothing_to_aggregate_when_every_agent_failed(
    client: httpx.AsyncClient,  # noqa: F811
    user_headers: dict[str, str],
) -> None:
    job_id = await _orchestrate(
        client,
        user_headers,
        agents=[{"name": "broken", "provider": "openai", "model": "fail-500"}],
        aggregate={"provider": "openai", "model": "gpt-z"},
    )
    job = await wait_for_status(client, user_headers, job_id, {"COMPLETED", "FAILED"})
    assert job["status"] == "COMPLETED"
    assert job["result"]["agents"][0]["error"]["statusCode"] == 502
    assert job["result"]["aggregate"]["error"] == {
        "code": "NoAnswers",
        "message": "No agent answered: nothing to combine",
    }
    assert job["result"]["usage"]["totalTokens"] == 0


# The call must still be waiting when the cancel arrives, however loaded the machine.
@pytest.mark.parametrize("ai_timeout_seconds", [60])
async def test_cancelled_swarm_records_the_cut_call(
    client: httpx.AsyncClient,  # noqa: F811
    providers: FakeProviders,  # noqa: F811
    user_headers: dict[str, str],
) -> None:
    job_id = await _orchestrate(
        client, user_headers, agents=[{"name": "waiter", "provider": "groq", "model": "gated"}]
    )
    for _ in range(3000):  # until the agent's call has reached the provider
        if providers.received:
            break
        await asyncio.sleep(0.01)
    cancelled = await client.delete(f"/api/jobs/{job_id}", headers=user_headers)
    assert cancelled.json()["status"] == "CANCELLED"
    records: list[dict[str, Any]] = []
    for _ in range(3000):
        usage = await client.get("/api/v1/ai/usage", headers=user_headers)
        records = usage.json()["data"]["items"]
        if records:
            break
        await asyncio.sleep(0.01)
    assert [(r["model"], r["status"], r["jobId"]) for r in records] == [
        ("gated", "cancelled", job_id)
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"agents": [{"name": "a", "model": "m"}], "task": ""}, "task"),
        ({"task": "t", "agents": []}, "agents"),
        ({"task": "t"}, "agents"),
        ({"task": "t", "agents": [{"name": "a", "model": "m"}] * 2}, "agents"),
        ({"task": "t", "agents": [{"name": f"a{i}", "model": "m"} for i in range(11)]}, "agents"),
        ({"task": "t", "agents": [{"name": "a/b", "model": "m"}]}, "agents.0.name"),
        (
            {"task": "t", "agents": [{"name": "a", "model": "m", "provider": "x"}]},
            "agents.0.provider",
        ),
        ({"task": "t", "agents": [{"name": "a", "model": "m"}], "strategy": "random"}, "strategy"),
        (
            {"task": "t", "agents": [{"name": "a", "model": "m", "temperature": True}]},
            "agents.0.temperature",
        ),
        (
            {"task": "t", "agents": [{"name": "a", "model": "m"}], "aggregate": "vote"},
            "aggregate",
        ),
        (
            {"task": "t", "agents": [{"name": "a", "model": "m"}], "aggregate": {"agent": "zed"}},
            "aggregate.agent",
        ),
        (
            {
                "task": "t",
                "agents": [{"name": "a", "model": "m"}],
                "aggregate": {"agent": "a", "model": "m2"},
            },
            "aggregate",
        ),
        # No AI_DEFAULT_MODEL, and a local server has no default model of its own.
        (
            {"task": "t", "agents": [{"name": "a", "provider": "openai-compatible"}]},
            "agents.0.model",
        ),
        (
            {
                "task": "t",
                "agents": [{"name": "a", "model": "m"}],
                "aggregate": {"provider": "openai-compatible"},
            },
            "aggregate.model",
        ),
    ],
)
async def test_bad_swarm_input_is_422(
    client: httpx.AsyncClient,  # noqa: F811
    user_headers: dict[str, str],
    body: dict[str, Any],
    field: str,
) -> None:
    response = await client.post(ORCHESTRATE, json=body, headers=user_headers)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert any(name.startswith(field) for name in errors), errors
    jobs = await client.get("/api/v1/jobs", headers=user_headers)
    assert jobs.json()["data"]["items"] == []


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"task": "t", "agents": [{"name": "a", "model": "m"}], "aggregate": {"agent": "zzz"}},
            {"aggregate.agent": ["aggregate.agent 'zzz' is not an agent"]},
        ),
        (
            {"task": "t", "agents": [{"name": "a", "model": "m"}] * 2},
            {"agents": ["Agent names must be unique"]},
        ),
    ],
)
async def test_checks_across_fields_name_a_field(
    client: httpx.AsyncClient,  # noqa: F811
    user_headers: dict[str, str],
    body: dict[str, Any],
    errors: dict[str, list[str]],
) -> None:
    """They were keyed `body`, as if the whole body were wrong."""
    response = await client.post(ORCHESTRATE, json=body, headers=user_headers)
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == errors


async def test_a_json_body_sent_as_text_plain_is_read(
    client: httpx.AsyncClient,  # noqa: F811
    user_headers: dict[str, str],
) -> None:
    # As a browser's fetch() sends a JSON.stringify'd body without a Content-Type.
    body = json.dumps({"task": TASK, "agents": [{"name": "a", "model": "m"}]}).encode()
    headers = {**user_headers, "Content-Type": "text/plain;charset=UTF-8"}
    response = await client.post(ORCHESTRATE, content=body, headers=headers)
    assert response.status_code == 202, response.text
    job_id = response.json()["data"]["jobId"]
    job = await wait_for_status(client, user_headers, job_id, {"COMPLETED", "FAILED"})
    assert job["status"] == "COMPLETED", job
    malformed = await client.post(ORCHESTRATE, content=b"{", headers=headers)
    assert malformed.status_code == 400
    invalid = await client.post(ORCHESTRATE, content=b'{"task": ""}', headers=headers)
    assert invalid.status_code == 422 and {"task", "agents"} <= set(invalid.json()["errors"])


async def test_unconfigured_provider_is_refused_before_a_job_exists(
    make_client: Any,
    providers: FakeProviders,  # noqa: F811
) -> None:
    app = await make_client(
        openai_api_key="sk-x-0123456789", openai_base_url=providers.settings()["openai_base_url"]
    )
    tokens = (
        await app.post(
            "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
    ).json()["data"]
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    response = await app.post(
        ORCHESTRATE,
        json={"task": "t", "agents": [{"name": "a", "provider": "groq", "model": "m"}]},
        headers=headers,
    )
    assert response.status_code == 503
    assert response.json()["message"] == "AI provider 'groq' is not configured: set GROQ_API_KEY"
    assert (await app.get("/api/v1/jobs", headers=headers)).json()["data"]["items"] == []


async def test_swarm_jobs_only_through_their_endpoint(
    client: httpx.AsyncClient,  # noqa: F811
    api_token_headers: dict[str, str],
) -> None:
    # The jobs API would skip the swarm checks, its rate-limit tier and the user account.
    response = await client.post(
        "/api/jobs",
        json={"processingType": "swarm", "data": [{"name": "a", "model": "m"}]},
        headers=api_token_headers,
    )
    assert response.status_code == 400
    assert response.json()["details"] == [
        {"field": "processingType", "message": "Invalid processing type"}
    ]
    shared = await client.post(
        ORCHESTRATE,
        json={"task": "t", "agents": [{"name": "a", "model": "m"}]},
        headers=api_token_headers,
    )
    assert shared.status_code == 403


@pytest.mark.multiprocess
def test_swarm_progress_streams_from_real_worker_processes(
    settings_factory: Any,
    server_factory: Any,
    backend: Any,
    providers: FakeProviders,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Embedded: the server's own workers. Scale-out: a separate `vpsapi worker`."""
    settings = settings_factory()
    extra = {**providers.env(), "AI_TIMEOUT_SECONDS": "10"}
    worker = None
    if backend.scaleout:
        server = server_factory(settings, JOBS_INPROCESS_WORKERS="false", **extra)
        worker = start_process(["worker"], server_env(settings, **extra), tmp_path / "worker.log")
    else:
        server = server_factory(settings, **extra)
    try:
        login = httpx.post(
            server.base_url + "/api/v1/auth/login",
            json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        )
        token = login.json()["data"]["accessToken"]
        response = httpx.post(
            server.base_url + ORCHESTRATE,
            json={
                "task": TASK,
                "strategy": "sequential",
                "agents": [
                    {"name": "first", "provider": "anthropic", "model": "claude-a"},
                    {"name": "second", "provider": "openai", "model": "gated"},
                ],
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 202, response.text
        events_url = server.base_url + response.json()["data"]["links"]["events"]
        states: list[dict[str, Any]] = []
        with httpx.stream("GET", events_url, params={"access_token": token}, timeout=60) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                state = json.loads(line[5:])
                if "status" not in state:
                    continue  # the `connected` greeting
                states.append(state)
                if state["progress"] == 50:
                    providers.gate.set()  # agent one is done: let agent two answer
                if state["status"] in ("COMPLETED", "FAILED"):
                    break
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
    assert any(s["status"] == "PROCESSING" and s["progress"] == 50 for s in states), states
    final = states[-1]
    assert final["status"] == "COMPLETED", final
    assert final["result"]["agents"][0]["content"] == f"claude-a says: {TASK}"
    assert final["result"]["aggregate"]["method"] == "concat"
