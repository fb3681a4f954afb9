"""Service description and cross-module search (`/api/v1/info`, `/api/v1/search`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from vpsapi import __version__
from vpsapi.auth.dependencies import CurrentPrincipal
from vpsapi.core.db import SessionDep
from vpsapi.core.errors import ValidationFailed
from vpsapi.core.modules import Module
from vpsapi.core.schemas import V1_ERROR_RESPONSES, Envelope, envelope

router = APIRouter(prefix="/api/v1", tags=["info"], responses=V1_ERROR_RESPONSES)


class ModuleInfo(BaseModel):
    name: str
    description: str


class InfoOut(BaseModel):
    name: str
    version: str
    environment: str
    modules: list[ModuleInfo]
    docs: dict[str, str]


class SearchHitOut(BaseModel):
    kind: str
    id: str
    title: str
    url: str
    snippet: str = ""


class SearchOut(BaseModel):
    query: str
    count: int
    results: list[SearchHitOut]


@router.get("/info", response_model=Envelope[InfoOut], summary="What this service is and offers")
async def info(request: Request) -> Envelope[InfoOut]:
    modules: list[Module] = request.app.state.modules
    return envelope(
        InfoOut(
            name="vpsapi",
            version=__version__,
            environment=request.app.state.settings.environment,
            modules=[ModuleInfo(name=m.name, description=m.description) for m in modules],
            docs={"openapi": "/openapi.json", "swagger": "/docs", "redoc": "/redoc"},
        )
    )


@router.get("/search", response_model=Envelope[SearchOut], summary="Search what you may see")
async def search(
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    q: Annotated[
        str,
        Query(max_length=200, description="search text; none matches all you may see"),
    ] = "",
    kind: Annotated[str | None, Query(max_length=40, description="limit to one kind")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Envelope[SearchOut]:
    modules: list[Module] = request.app.state.modules
    providers = [provider for module in modules for provider in module.search_providers]
    if kind is not None and kind not in (kinds := {provider.kind for provider in providers}):
        # A misspelt kind would otherwise look like "nothing found".
        message = f"Unknown kind: use one of {', '.join(sorted(kinds))}"
        raise ValidationFailed([{"field": "kind", "message": message}])
    settings = request.app.state.settings
    switched_on = [
        provider
        for module in modules
        if module.enabled_by is None or getattr(settings, module.enabled_by)
        for provider in module.search_providers
    ]
    hits = []
    for provider in switched_on:
        if kind is None or provider.kind == kind:
            hits.extend(await provider.search(session, principal, q, limit))
    results = [
        SearchHitOut(kind=h.kind, id=h.id, title=h.title, url=h.url, snippet=h.snippet)
        for h in hits[:limit]
    ]
    return envelope(SearchOut(query=q, count=len(results), results=results))
