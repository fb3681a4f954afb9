"""HTTP routes of /api/v1/ai (chat, providers, usage) and /api/v1/swarm (thin)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request, Response, status
from fastapi.routing import APIRoute
from sse_starlette.sse import EventSourceResponse

from vpsapi.auth.dependencies import CurrentUser
from vpsapi.citypulse.ai import service, swarm
from vpsapi.citypulse.ai.providers import ProviderName
from vpsapi.citypulse.ai.schemas import (
    ChatIn,
    ChatOut,
    ProviderOut,
    SwarmAccepted,
    SwarmIn,
    SwarmLinks,
    UsagePage,
)
from vpsapi.citypulse.metrics import record_frontend_source
from vpsapi.core.db import SessionDep
from vpsapi.core.modules import feature_switch
from vpsapi.core.schemas import (
    V1_ERROR_RESPONSES,
    Envelope,
    ErrorEnvelope,
    UtcDatetime,
    envelope,
)
from vpsapi.core.sse import event_stream
from vpsapi.jobs.engine import JobEngine

_UPSTREAM_ERRORS: dict[int | str, dict[str, Any]] = {
    502: {"model": ErrorEnvelope, "description": "the provider answered an error (its message)"},
    503: {"model": ErrorEnvelope, "description": "the provider is not configured"},
    504: {"model": ErrorEnvelope, "description": "the provider did not answer in time"},
}


class JsonBodyRoute(APIRoute):
    """Reads a body sent as text/plain, or with no Content-Type, as JSON. The seed's own
    FlowMind call, `fetch(url, {body: JSON.stringify({message})})` without a Content-Type,
    goes out as text/plain, which FastAPI would not parse (422). Harmless for CSRF: these
    endpoints authenticate by header, which no cross-site simple request can carry."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def lenient(request: Request) -> Response:
            content_type = request.headers.get("content-type", "")
            if content_type.split(";")[0].strip().lower() in ("", "text/plain"):
                headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
                headers.append((b"content-type", b"application/json"))
                request = Request({**request.scope, "headers": headers}, request.receive)
            return await handler(request)

        return lenient


def _json_body_docs(schema: str) -> dict[str, Any]:
    """OpenAPI: the JSON body may also come as text/plain (see JsonBodyRoute)."""
    ref = {"schema": {"$ref": f"#/components/schemas/{schema}"}}
    return {"requestBody": {"content": {"text/plain": ref}}}


ai_enabled = feature_switch("ai_models_enabled", "AI")
_AI_ERRORS: dict[int | str, dict[str, Any]] = {
    **V1_ERROR_RESPONSES,
    503: {"model": ErrorEnvelope, "description": "AI is off (AI_MODELS_ENABLED)"},
}

router = APIRouter(
    prefix="/api/v1/ai",
    tags=["ai"],
    responses=_AI_ERRORS,
    dependencies=[Depends(ai_enabled), Depends(record_frontend_source)],
    route_class=JsonBodyRoute,
)
swarm_router = APIRouter(
    prefix="/api/v1/swarm",
    tags=["ai"],
    responses=_AI_ERRORS,
    dependencies=[Depends(ai_enabled), Depends(record_frontend_source)],
    route_class=JsonBodyRoute,
)


async def _client_left(request: Request) -> None:
    """Returns once the client has closed its connection (its body has been read: what
    the server receives next is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _context(request: Request) -> service.AiContext:
    state = request.app.state
    return service.AiContext(state.settings, state.ai_http, state.db)


@router.post(
    "/chat",
    response_model=Envelope[ChatOut],
    summary="Chat with a model (OpenAI, Anthropic, Groq or an OpenAI-compatible server)",
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "With `stream: true`: `event: delta` `{content}` per piece, then "
            "`event: done` with the chat answer's data (or `event: error`).",
        },
        **_UPSTREAM_ERRORS,
    },
    openapi_extra=_json_body_docs("ChatIn"),
)
async def chat(
    body: ChatIn, request: Request, principal: CurrentUser, session: SessionDep
) -> Envelope[ChatOut] | EventSourceResponse:
    config, call = service.resolve_call(
        request.app.state.settings,
        body.provider,
        body.model,
        body.conversation(),
        body.temperature,
        body.max_tokens,
    )
    await session.close()  # a model may take a minute: do not hold a database connection
    if body.stream:
        events = await service.open_chat_stream(
            _context(request), principal.subject, config, call, lambda: _client_left(request)
        )
        return event_stream(events)
    return envelope(await service.chat(_context(request), principal.subject, config, call))


@router.get(
    "/providers",
    response_model=Envelope[list[ProviderOut]],
    summary="Configured AI providers",
)
async def list_providers(request: Request, _: CurrentUser) -> Envelope[list[ProviderOut]]:
    return envelope(service.providers(request.app.state.settings))


@router.get(
    "/usage",
    response_model=Envelope[UsagePage],
    summary="AI usage records, newest first (yours; admins: everyone's)",
    responses={400: {"description": "Invalid cursor"}},
)
async def usage(
    principal: CurrentUser,
    session: SessionDep,
    owner: Annotated[
        str | None, Query(max_length=80, description="admins: one owner, e.g. user:<id>")
    ] = None,
    provider: ProviderName | None = None,
    since: Annotated[UtcDatetime | None, Query(alias="from", description="included")] = None,
    until: Annotated[
        UtcDatetime | None, Query(alias="to", description="left out; after `from`")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Envelope[UsagePage]:
    items, next_cursor, totals = await service.list_usage(
        session,
        principal,
        owner=owner,
        provider=provider,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    return envelope(UsagePage(items=items, next_cursor=next_cursor, totals=totals))


@swarm_router.post(
    "/orchestrate",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Envelope[SwarmAccepted],
    summary="Run several agents on one task as a job (follow it with the jobs API)",
    responses={503: _UPSTREAM_ERRORS[503]},
    openapi_extra=_json_body_docs("SwarmIn"),
)
async def orchestrate(
    body: SwarmIn,
    request: Request,
    response: Response,
    principal: CurrentUser,
    session: SessionDep,
    background: BackgroundTasks,
) -> Envelope[SwarmAccepted]:
    job = await swarm.submit(session, request.app.state.settings, principal, body)
    engine: JobEngine = request.app.state.jobs_engine
    # Runs after the response, so after the commit: a worker finds the row.
    background.add_task(engine.dispatch_new, job.id)
    status_url = f"/api/jobs/{job.id}"
    response.headers["Location"] = status_url
    return envelope(
        SwarmAccepted(
            job_id=job.id,
            status=job.status,
            strategy=body.strategy,
            agents=len(body.agents),
            links=SwarmLinks(
                status=status_url,
                events=f"/api/sse/job-progress/{job.id}",
                cancel=f"/api/jobs/{job.id}/cancel",
            ),
        )
    )
