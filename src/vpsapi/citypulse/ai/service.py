"""Chat with a provider, record what every call used, and report usage. No HTTP here."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import httpx
import structlog
from prometheus_client import Counter, Histogram
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.citypulse.ai.models import AiUsage
from vpsapi.citypulse.ai.providers import (
    ChatCall,
    ChatStream,
    Completion,
    ProviderConfig,
    Usage,
    complete,
    configured_providers,
    open_stream,
    resolve_provider,
)
from vpsapi.citypulse.ai.schemas import (
    AssistantMessage,
    ChatOut,
    ProviderOut,
    UsageOut,
    UsageRecordOut,
    UsageTotals,
)
from vpsapi.config import Settings
from vpsapi.core.db import Database
from vpsapi.core.errors import (
    AppError,
    ClientClosedRequest,
    GatewayTimeout,
    ServiceUnavailable,
    ValidationFailed,
)
from vpsapi.core.pagination import encode_cursor, older_than
from vpsapi.core.schemas import check_window
from vpsapi.core.security import Principal
from vpsapi.core.tasks import cancelled_when

log = structlog.get_logger("vpsapi.ai")

AI_CALLS = Counter(
    "vpsapi_ai_calls_total", "Model calls by provider and outcome", ["provider", "status"]
)
AI_LATENCY = Histogram(
    "vpsapi_ai_call_duration_seconds",
    "Model call latency (whole answer) by provider",
    ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120),
)
AI_TOKENS = Counter(
    "vpsapi_ai_tokens_total", "Tokens used by provider and kind", ["provider", "kind"]
)


@dataclass(frozen=True)
class AiContext:
    """What a model call needs: settings, a pooled HTTP client, and the database for
    usage records (written in their own transaction, so failed calls are kept too)."""

    settings: Settings
    http: httpx.AsyncClient
    db: Database


# How long the bookkeeping after a call may take, also when its caller is cancelled.
USAGE_WRITE_SECONDS = 5
PROVIDER_CLOSE_SECONDS = 5


def default_model(settings: Settings, config: ProviderConfig) -> str | None:
    """The model a call to `config` naming none asks for: AI_DEFAULT_MODEL, else the
    provider's own (None for the OpenAI-compatible server, whose models are its own)."""
    return settings.ai_default_model or config.default_model


def resolve_call(
    settings: Settings,
    provider: str | None,
    model: str | None,
    messages: list[dict[str, str]],
    temperature: float | None = None,
    max_tokens: int | None = None,
    at: str = "",
) -> tuple[ProviderConfig, ChatCall]:
    """Pick the provider (503 when not configured) and the model: the request's, else
    AI_DEFAULT_MODEL, else the provider's own default (422 when none of them names one).
    `at` prefixes the field names of 422 errors (e.g. `agents.0.`)."""
    config = resolve_provider(settings, provider)
    chosen = model or default_model(settings, config)
    if not chosen:
        message = (
            f"model is required (no AI_DEFAULT_MODEL is set, and {config.name} has no default)"
        )
        raise ValidationFailed([{"field": f"{at}model", "message": message}])
    if config.dialect == "anthropic" and temperature is not None and temperature > 1:
        raise ValidationFailed(
            [
                {
                    "field": f"{at}temperature",
                    "message": "Anthropic models take a temperature from 0 to 1",
                }
            ]
        )
    return config, ChatCall(chosen, messages, temperature, max_tokens)


def _status_of(error: AppError) -> str:
    return "timeout" if isinstance(error, GatewayTimeout) else "error"


async def record_usage(
    db: Database,
    *,
    owner: str,
    provider: str,
    model: str,
    usage: Usage,
    latency_ms: int,
    status: str,
    stream: bool = False,
    job_id: str | None = None,
    error: str | None = None,
) -> None:
    context = {"provider": provider, "model": model, "owner": owner, "job_id": job_id}
    if status == "cancelled":  # a client that left, or a cancelled swarm: no failure
        log.info("ai_call_cancelled", **context)
    elif status != "ok":
        # `error` is already redacted: provider messages pass through `redact`.
        log.warning("ai_call_failed", status=status, error=error, **context)
    AI_CALLS.labels(provider=provider, status=status).inc()
    AI_LATENCY.labels(provider=provider).observe(latency_ms / 1000)
    AI_TOKENS.labels(provider=provider, kind="prompt").inc(usage.prompt_tokens)
    AI_TOKENS.labels(provider=provider, kind="completion").inc(usage.completion_tokens)
    record = AiUsage(
        owner=owner,
        provider=provider,
        model=model[:200],
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        latency_ms=latency_ms,
        status=status,
        stream=stream,
        job_id=job_id,
    )
    # Written also when the caller is cancelled (a client that left), but bounded: a stalled
    # database must hold up neither the answer nor a shutdown. A failed write is logged,
    # never raised: it would replace the call's own outcome (a provider's 502, say).
    try:
        with anyio.fail_after(USAGE_WRITE_SECONDS, shield=True):
            async with db.session() as session:
                session.add(record)
    except Exception as exc:
        log.error("ai_usage_not_recorded", error=f"{type(exc).__name__}: {exc}"[:200], **context)


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


async def call_model(
    ctx: AiContext,
    owner: str,
    config: ProviderConfig,
    call: ChatCall,
    *,
    job_id: str | None = None,
) -> tuple[Completion, int]:
    """One recorded, non-streaming call: (completion, latency in ms). Also a call
    cut short by cancellation (a cancelled swarm job) leaves its usage record."""
    started = time.perf_counter()
    completion: Completion | None = None
    status, error = "error", None
    try:
        completion = await complete(ctx.http, ctx.settings, config, call)
        status = "ok"
    except AppError as exc:
        status, error = _status_of(exc), exc.message
        raise
    except asyncio.CancelledError:
        status = "cancelled"
        raise
    finally:
        latency = _elapsed_ms(started)
        await record_usage(
            ctx.db,
            owner=owner,
            provider=config.name,
            model=completion.model if completion else call.model,
            usage=completion.usage if completion else Usage(),
            latency_ms=latency,
            status=status,
            job_id=job_id,
            error=error,
        )
    return completion, latency


def chat_out(provider: str, completion: Completion, latency_ms: int) -> ChatOut:
    usage = completion.usage
    return ChatOut(
        provider=provider,
        model=completion.model,
        message=AssistantMessage(content=completion.content),
        usage=UsageOut(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
        ),
        latency_ms=latency_ms,
    )


async def chat(ctx: AiContext, owner: str, config: ProviderConfig, call: ChatCall) -> ChatOut:
    completion, latency = await call_model(ctx, owner, config, call)
    return chat_out(config.name, completion, latency)


async def open_chat_stream(
    ctx: AiContext,
    owner: str,
    config: ProviderConfig,
    call: ChatCall,
    client_left: Callable[[], Awaitable[object]],
) -> AsyncIterator[dict[str, Any]]:
    """Open the provider stream now (its refusal raises here, before any byte is sent);
    return the SSE events: `delta` per text piece, then `done` with the whole answer and
    usage, or `error` if the provider fails midway. When `client_left()` returns before
    the provider starts its answer, the call is cut there and ClientClosedRequest raised."""
    started = time.perf_counter()
    stream: ChatStream | None = None
    status, error = "cancelled", None
    try:
        async with cancelled_when(client_left):
            stream = await open_stream(ctx.http, ctx.settings, config, call)
    except AppError as exc:
        status, error = _status_of(exc), exc.message
        raise
    except Exception:
        status = "error"
        raise
    finally:
        if stream is None:  # refused, failed, or cut short
            await record_usage(
                ctx.db,
                owner=owner,
                provider=config.name,
                model=call.model,
                usage=Usage(),
                latency_ms=_elapsed_ms(started),
                status=status,
                stream=True,
                error=error,
            )
    if stream is None:
        raise ClientClosedRequest()
    return _relay(ctx, owner, stream)


async def _relay(ctx: AiContext, owner: str, stream: ChatStream) -> AsyncIterator[dict[str, Any]]:
    status, error = "cancelled", None
    try:
        async for text in stream.deltas():
            yield {"event": "delta", "data": json.dumps({"content": text})}
        status = "ok"
        completion = Completion(stream.content, stream.model, stream.usage)
        done = chat_out(stream.config.name, completion, _elapsed_ms(stream.started))
        yield {"event": "done", "data": done.model_dump_json(by_alias=True)}
    except AppError as exc:
        status, error = _status_of(exc), exc.message
        body = {"error": exc.code, "message": exc.message, "statusCode": exc.status_code}
        yield {"event": "error", "data": json.dumps(body)}
    except Exception:
        status = "error"
        raise
    finally:
        # Also when the client went away: the stream's cancellation must not stop the
        # provider connection from closing (nor the usage from being recorded).
        with anyio.move_on_after(PROVIDER_CLOSE_SECONDS, shield=True):
            await stream.aclose()
        await record_usage(
            ctx.db,
            owner=owner,
            provider=stream.config.name,
            model=stream.model,
            usage=stream.usage,
            latency_ms=_elapsed_ms(stream.started),
            status=status,
            stream=True,
            error=error,
        )


def providers(settings: Settings) -> list[ProviderOut]:
    """Configured providers, marking the one a chat without `provider` would use, each
    with the model a chat to it without `model` would ask for."""
    try:
        default: str | None = resolve_provider(settings, None).name
    except ServiceUnavailable:  # none, or AI_DEFAULT_PROVIDER names an unconfigured one
        default = None
    return [
        ProviderOut(
            name=name, default=name == default, default_model=default_model(settings, config)
        )
        for name, config in configured_providers(settings).items()
    ]


# ---- usage reports -----------------------------------------------------------------------


async def list_usage(
    session: AsyncSession,
    principal: Principal,
    *,
    owner: str | None,
    provider: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[UsageRecordOut], str | None, UsageTotals]:
    """The caller's usage records, newest first (admins: everyone's, or `owner`'s)."""
    if since is not None and until is not None:
        check_window(since, until)
    filters = []
    if not principal.is_admin:
        filters.append(AiUsage.owner == principal.subject)
    elif owner is not None:
        filters.append(AiUsage.owner == owner)
    if provider is not None:
        filters.append(AiUsage.provider == provider)
    if since is not None:
        filters.append(AiUsage.created_at >= since)
    if until is not None:
        filters.append(AiUsage.created_at < until)
    totals_row = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((AiUsage.status != "ok", 1), else_=0)), 0),
                func.coalesce(func.sum(AiUsage.prompt_tokens), 0),
                func.coalesce(func.sum(AiUsage.completion_tokens), 0),
                func.coalesce(func.sum(AiUsage.total_tokens), 0),
            ).where(*filters)
        )
    ).one()
    page = select(AiUsage).where(*filters)
    if cursor is not None:
        page = page.where(older_than(AiUsage.created_at, AiUsage.id, cursor))
    page = page.order_by(AiUsage.created_at.desc(), AiUsage.id.desc()).limit(limit + 1)
    rows = list((await session.execute(page)).scalars())
    last = rows[limit - 1] if len(rows) > limit else None
    next_cursor = encode_cursor(last.created_at, last.id) if last is not None else None
    totals = UsageTotals(
        calls=int(totals_row[0]),
        errors=int(totals_row[1]),
        prompt_tokens=int(totals_row[2]),
        completion_tokens=int(totals_row[3]),
        total_tokens=int(totals_row[4]),
    )
    return [UsageRecordOut.model_validate(row) for row in rows[:limit]], next_cursor, totals
