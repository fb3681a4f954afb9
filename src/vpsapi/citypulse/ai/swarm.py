"""Agent swarms: several model calls on one task, run as a job of type `swarm`.

`parallel`: every agent answers the task at once. `sequential`: agents answer in
order, each seeing the task and the previous agent's answer (the last one that
succeeded). An agent whose call fails gets an `error` entry and the others go on.
The answers are then joined (`aggregate: "concat"`), or one more call (`aggregate:
{agent | provider+model, system?, instructions?}`) combines them into one answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.citypulse.ai.providers import ChatCall, ProviderConfig, Usage, new_http_client
from vpsapi.citypulse.ai.schemas import AgentIn, AggregateIn, SwarmIn
from vpsapi.citypulse.ai.service import AiContext, call_model, resolve_call
from vpsapi.config import Settings
from vpsapi.core.errors import AppError
from vpsapi.core.security import Principal
from vpsapi.jobs import service as jobs_service
from vpsapi.jobs.processors import Report, job_context
from vpsapi.jobs.schemas import JobSubmit

PROCESSING_TYPE = "swarm"
DEFAULT_AGGREGATOR_SYSTEM = (
    "You combine the answers of several agents to one task into a single, "
    "consistent answer. Keep what they agree on, resolve contradictions, drop repetition."
)

Caller = Callable[[ProviderConfig, ChatCall], Awaitable[tuple[str, str, Usage]]]


def _agent_call(
    settings: Settings, agent: AgentIn, prompt: str, index: int
) -> tuple[ProviderConfig, ChatCall]:
    messages = [{"role": "system", "content": agent.system}] if agent.system else []
    messages.append({"role": "user", "content": prompt})
    return resolve_call(
        settings,
        agent.provider,
        agent.model,
        messages,
        agent.temperature,
        agent.max_tokens,
        at=f"agents.{index}.",
    )


def _aggregate_call(
    settings: Settings, spec: SwarmIn, aggregate: AggregateIn, answers: list[dict[str, Any]]
) -> tuple[ProviderConfig, ChatCall]:
    named = next((a for a in spec.agents if a.name == aggregate.agent), None)
    provider = named.provider if named else aggregate.provider
    model = named.model if named else aggregate.model
    system = aggregate.system or (named.system if named else None) or DEFAULT_AGGREGATOR_SYSTEM
    body = "\n\n".join(f"### {a['name']}\n{a['content']}" for a in answers)
    prompt = f"Task:\n{spec.task}\n\nAnswers of the agents:\n\n{body}"
    if aggregate.instructions:
        prompt += f"\n\n{aggregate.instructions}"
    messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
    return resolve_call(settings, provider, model, messages, at="aggregate.")


def check_configured(settings: Settings, spec: SwarmIn) -> None:
    """Fail fast at submission: every named provider configured, every model known."""
    for index, agent in enumerate(spec.agents):
        _agent_call(settings, agent, spec.task, index)
    if isinstance(spec.aggregate, AggregateIn):
        _aggregate_call(settings, spec, spec.aggregate, [])


def _usage_out(usage: Usage) -> dict[str, int]:
    return {
        "promptTokens": usage.prompt_tokens,
        "completionTokens": usage.completion_tokens,
        "totalTokens": usage.total_tokens,
    }


def _error_out(error: AppError) -> dict[str, Any]:
    return {"code": error.code, "message": error.message, "statusCode": error.status_code}


async def _run_agent(
    settings: Settings, caller: Caller, agent: AgentIn, index: int, prompt: str
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": agent.name,
        "provider": agent.provider,
        "model": agent.model,
        "content": None,
        "usage": _usage_out(Usage()),
    }
    try:
        config, call = _agent_call(settings, agent, prompt, index)
        entry.update(provider=config.name, model=call.model)
        content, model, usage = await caller(config, call)
    except AppError as exc:
        entry["error"] = _error_out(exc)
        return entry
    entry.update(content=content, model=model, usage=_usage_out(usage))
    return entry


def _sequential_prompt(task: str, previous: dict[str, Any] | None) -> str:
    if previous is None:
        return task
    return f"{task}\n\nThe previous agent ({previous['name']}) answered:\n\n{previous['content']}"


async def _aggregate(
    settings: Settings,
    spec: SwarmIn,
    aggregate: AggregateIn,
    answers: list[dict[str, Any]],
    caller: Caller,
) -> dict[str, Any]:
    result: dict[str, Any] = {"method": "model", "content": None, "usage": _usage_out(Usage())}
    if not answers:
        result["error"] = {"code": "NoAnswers", "message": "No agent answered: nothing to combine"}
        return result
    try:
        config, call = _aggregate_call(settings, spec, aggregate, answers)
        result.update(provider=config.name, model=call.model)
        content, model, usage = await caller(config, call)
    except AppError as exc:
        result["error"] = _error_out(exc)
        return result
    result.update(content=content, model=model, usage=_usage_out(usage))
    return result


async def run_swarm(
    settings: Settings, spec: SwarmIn, caller: Caller, report: Report
) -> dict[str, Any]:
    """Run every agent, then the aggregation; progress after each call."""
    calls = len(spec.agents) + (1 if isinstance(spec.aggregate, AggregateIn) else 0)
    done = 0

    async def step() -> None:
        nonlocal done
        done += 1
        await report(done * 100 // calls)

    agents: list[dict[str, Any]] = []
    if spec.strategy == "parallel":

        async def one(index: int, agent: AgentIn) -> dict[str, Any]:
            entry = await _run_agent(settings, caller, agent, index, spec.task)
            await step()
            return entry

        agents = list(await asyncio.gather(*(one(i, a) for i, a in enumerate(spec.agents))))
    else:
        previous: dict[str, Any] | None = None
        for index, agent in enumerate(spec.agents):
            prompt = _sequential_prompt(spec.task, previous)
            entry = await _run_agent(settings, caller, agent, index, prompt)
            agents.append(entry)
            if "error" not in entry:
                previous = entry
            await step()

    answers = [a for a in agents if "error" not in a]
    aggregate: dict[str, Any]
    if isinstance(spec.aggregate, AggregateIn):
        aggregate = await _aggregate(settings, spec, spec.aggregate, answers, caller)
        await step()
    else:
        aggregate = {
            "method": "concat",
            "content": "\n\n".join(f"## {a['name']}\n\n{a['content']}" for a in answers),
        }
    used = [entry["usage"] for entry in [*agents, aggregate] if "usage" in entry]
    total = Usage(sum(u["promptTokens"] for u in used), sum(u["completionTokens"] for u in used))
    return {
        "task": spec.task,
        "strategy": spec.strategy,
        "agents": agents,
        "aggregate": aggregate,
        "usage": _usage_out(total),
    }


class SwarmProcessor:
    """The `swarm` job type (not public: submitted through /api/v1/swarm/orchestrate)."""

    name = PROCESSING_TYPE
    public = False
    timeout: int | None = None  # set per job at submission from AI_TIMEOUT_SECONDS

    async def process(
        self, items: list[dict[str, Any]], options: dict[str, Any], report: Report
    ) -> dict[str, Any]:
        job = job_context()
        spec = SwarmIn.model_validate({**options.get("swarm", {}), "agents": items})
        async with new_http_client(job.settings) as http:
            ctx = AiContext(job.settings, http, job.db)

            async def caller(config: ProviderConfig, call: ChatCall) -> tuple[str, str, Usage]:
                completion, _ = await call_model(ctx, job.owner, config, call, job_id=job.job_id)
                return completion.content, completion.model, completion.usage

            return await run_swarm(job.settings, spec, caller, report)


def job_timeout(settings: Settings, spec: SwarmIn) -> int:
    """Seconds one attempt may take: one AI timeout per round of calls, plus slack."""
    rounds = len(spec.agents) if spec.strategy == "sequential" else 1
    rounds += 1 if isinstance(spec.aggregate, AggregateIn) else 0
    return min(86_400, int(settings.ai_timeout_seconds * rounds) + 30)


async def submit(
    session: AsyncSession, settings: Settings, principal: Principal, spec: SwarmIn
) -> jobs_service.JobView:
    check_configured(settings, spec)
    swarm = spec.model_dump(exclude={"agents"}, exclude_none=True)
    body = JobSubmit.model_construct(
        processingType=PROCESSING_TYPE,
        data=[agent.model_dump(exclude_none=True) for agent in spec.agents],
        options={"swarm": swarm, "timeout": job_timeout(settings, spec)},
    )
    job, _ = await jobs_service.submit_job(session, settings, principal, body, None)
    return job
