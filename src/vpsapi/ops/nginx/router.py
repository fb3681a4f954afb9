"""Seed 002's `/api/configs`, `/api/load-balancer/pools` and `/api/health/backend(s)`."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request, status

from vpsapi.auth.dependencies import AdminUser, CurrentUser
from vpsapi.core.db import SessionDep
from vpsapi.core.errors import BadRequest, Forbidden
from vpsapi.ops.dependencies import NginxDep
from vpsapi.ops.nginx import service
from vpsapi.ops.nginx.health import BackendHealthRegistry
from vpsapi.ops.nginx.schemas import (
    BackendHealth,
    NginxCheck,
    PoolIn,
    PoolOut,
    SiteIn,
    SiteMetrics,
    SiteOut,
    SiteUpdate,
    check_backend,
    check_client_can_ask,
)

configs_router = APIRouter(prefix="/api/configs", tags=["ops: nginx sites"])
pools_router = APIRouter(prefix="/api/load-balancer", tags=["ops: load balancer"])
backends_router = APIRouter(prefix="/api/health", tags=["ops: load balancer"])

# What a change checked by, or applied to, nginx may answer beyond the body's validation.
_NGINX_CHANGE_ANSWERS: dict[int | str, dict[str, Any]] = {
    409: {"description": "Conflicts with another site, pool or upstream, or the pool is in use"},
    422: {"description": "Validation failed, or nginx rejected the configuration"},
    503: {"description": "nginx cannot be run, timed out, or its main config is unreadable"},
}


# ---- sites ------------------------------------------------------------------------


@configs_router.get("", response_model=list[SiteOut])
async def list_configs(_: CurrentUser, session: SessionDep, nginx: NginxDep) -> list[SiteOut]:
    return [service.site_out(site, nginx.settings) for site in await service.list_sites(session)]


@configs_router.post(
    "", response_model=SiteOut, status_code=status.HTTP_201_CREATED, responses=_NGINX_CHANGE_ANSWERS
)
async def create_config(
    body: SiteIn, actor: AdminUser, session: SessionDep, nginx: NginxDep
) -> SiteOut:
    """Validate with `nginx -t`, write the site file, reload nginx (422 with nginx's text)."""
    site = await service.create_site(session, nginx, actor, body)
    return service.site_out(site, nginx.settings)


@configs_router.post("/validate", response_model=NginxCheck, responses=_NGINX_CHANGE_ANSWERS)
async def validate_config(
    body: SiteIn, _: AdminUser, session: SessionDep, nginx: NginxDep
) -> NginxCheck:
    """Run the real `nginx -t` on the configuration with this site in it; nothing is applied.
    Admins only, as creating the site is: nginx reads the files the body names, with the
    server's rights, and its answer tells whether each exists."""
    return await service.check_new_site(session, nginx, body)


@configs_router.get("/{config_id}", response_model=SiteOut)
async def get_config(
    config_id: str, _: CurrentUser, session: SessionDep, nginx: NginxDep
) -> SiteOut:
    return service.site_out(await service.get_site(session, config_id), nginx.settings)


@configs_router.put(
    "/{config_id}",
    response_model=SiteOut,
    responses={
        400: {"description": "The id in the body does not match the URL"},
        **_NGINX_CHANGE_ANSWERS,
    },
)
async def update_config(
    config_id: str, body: SiteUpdate, actor: AdminUser, session: SessionDep, nginx: NginxDep
) -> SiteOut:
    if body.id is not None and body.id != config_id:
        raise BadRequest("The id in the body does not match the URL")
    site = await service.get_site(session, config_id)
    update = SiteIn.model_validate({**body.model_dump(), "id": config_id})
    site = await service.update_site(session, nginx, actor, site, update)
    return service.site_out(site, nginx.settings)


@configs_router.delete("/{config_id}", responses=_NGINX_CHANGE_ANSWERS)
async def delete_config(
    config_id: str, actor: AdminUser, session: SessionDep, nginx: NginxDep
) -> dict[str, str]:
    site = await service.get_site(session, config_id)
    await service.delete_site(session, nginx, actor, site)
    return {"message": f"Config '{config_id}' deleted", "id": config_id}


@configs_router.post("/{config_id}/toggle", response_model=SiteOut, responses=_NGINX_CHANGE_ANSWERS)
async def toggle_config(
    config_id: str, actor: AdminUser, session: SessionDep, nginx: NginxDep
) -> SiteOut:
    site = await service.get_site(session, config_id)
    site = await service.toggle_site(session, nginx, actor, site)
    return service.site_out(site, nginx.settings)


@configs_router.post(
    "/{config_id}/test", response_model=NginxCheck, responses=_NGINX_CHANGE_ANSWERS
)
async def test_config(
    config_id: str, _: CurrentUser, session: SessionDep, nginx: NginxDep
) -> NginxCheck:
    """`nginx -t` of the stored site as it would be rendered now."""
    site = await service.get_site(session, config_id)
    return await service.check_site(session, nginx, service.site_in(site))


@configs_router.get("/{config_id}/form")
async def get_config_form(
    config_id: str, _: CurrentUser, session: SessionDep, nginx: NginxDep
) -> dict[str, Any]:
    """The editable form model: the site's fields with their defaults filled in."""
    site = await service.get_site(session, config_id)
    form: dict[str, Any] = service.site_out(site, nginx.settings).model_dump(mode="json")
    form["form_schema"] = SiteIn.model_json_schema()
    return form


@configs_router.get("/{config_id}/metrics", response_model=SiteMetrics)
async def get_config_metrics(
    config_id: str, _: CurrentUser, session: SessionDep, nginx: NginxDep
) -> SiteMetrics:
    """Request counts, status classes and bytes parsed from this site's access log."""
    site = await service.get_site(session, config_id)
    return service.site_metrics(site, nginx.settings)


# ---- pools ------------------------------------------------------------------------


@pools_router.get("/pools")
async def list_pools(_: CurrentUser, session: SessionDep, nginx: NginxDep) -> dict[str, Any]:
    pools = [service.pool_out(pool, nginx.settings) for pool in await service.list_pools(session)]
    return {"pools": [pool.model_dump(mode="json") for pool in pools], "total": len(pools)}


@pools_router.post("/pools", status_code=status.HTTP_201_CREATED, responses=_NGINX_CHANGE_ANSWERS)
async def create_pool(
    body: PoolIn, actor: AdminUser, session: SessionDep, nginx: NginxDep
) -> dict[str, Any]:
    """An nginx `upstream` block; sites use it with `backend: "<pool name>"`."""
    pool = await service.create_pool(session, nginx, actor, body)
    out = service.pool_out(pool, nginx.settings)
    return {
        "message": "Load balancer pool created successfully",
        "pool": out.model_dump(mode="json"),
    }


@pools_router.get("/pools/{name}", response_model=PoolOut)
async def get_pool(name: str, _: CurrentUser, session: SessionDep, nginx: NginxDep) -> PoolOut:
    return service.pool_out(await service.get_pool(session, name), nginx.settings)


@pools_router.put("/pools/{name}", response_model=PoolOut, responses=_NGINX_CHANGE_ANSWERS)
async def update_pool(
    name: str, body: PoolIn, actor: AdminUser, session: SessionDep, nginx: NginxDep
) -> PoolOut:
    pool = await service.update_pool(
        session, nginx, actor, await service.get_pool(session, name), body
    )
    return service.pool_out(pool, nginx.settings)


@pools_router.delete("/pools/{name}", responses=_NGINX_CHANGE_ANSWERS)
async def delete_pool(
    name: str, actor: AdminUser, session: SessionDep, nginx: NginxDep
) -> dict[str, str]:
    await service.delete_pool(session, nginx, actor, await service.get_pool(session, name))
    return {"message": f"Load balancer pool '{name}' deleted"}


# ---- backend health ---------------------------------------------------------------


def _registry(request: Request) -> BackendHealthRegistry:
    registry: BackendHealthRegistry = request.app.state.backend_health
    return registry


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/+")


def _normalise_backend(raw: str) -> str:
    """`http(s)://host[:port][/path]` or `host:port[/path]` (taken as http); any other
    scheme (ftp://, file://) or a malformed host is a 400."""
    scheme = _SCHEME.match(raw)
    if scheme is not None:
        if scheme.group(1).lower() not in ("http", "https"):
            raise BadRequest(
                f"Invalid backend URL: only http and https backends can be checked, "
                f"not {scheme.group(1)!r}"
            )
        # Proxies and clients often collapse the `//` of a URL carried in a path.
        raw = f"{scheme.group(1).lower()}://{raw[scheme.end() :]}"
    else:
        raw = f"http://{raw}"
    try:
        check_backend(raw)
        check_client_can_ask(raw)
    except ValueError as exc:
        raise BadRequest(f"Invalid backend URL: {exc}") from exc
    return raw


@backends_router.get(
    "/backend/{backend_url:path}",
    response_model=BackendHealth,
    responses={400: {"description": "Invalid backend URL"}},
)
async def check_backend_health(
    backend_url: str, request: Request, principal: CurrentUser, session: SessionDep
) -> BackendHealth:
    """Check one backend now. Backends outside the managed configuration: admins only."""
    url = _normalise_backend(backend_url)
    if not principal.is_admin:
        managed = service.managed_backend_url(url, await service.known_backends(session))
        if managed is None:
            raise Forbidden("Only admins may check backends that no site or pool uses")
        url = managed
    return await _registry(request).check(url)


@backends_router.get("/backends")
async def backends_health(
    request: Request, _: CurrentUser, session: SessionDep, refresh: bool = False
) -> dict[str, Any]:
    """Latest check of every backend; `refresh=true` checks them all now."""
    registry = _registry(request)
    known = await service.known_backends(session)
    if refresh:
        await registry.check_all(list(known))
    checked = await registry.all()
    backends = {
        url: {**usage, **(checked[url].model_dump(mode="json") if url in checked else {})}
        for url, usage in known.items()
    }
    return {
        "backends": backends,
        "total_backends": len(backends),
        "healthy_backends": sum(1 for item in backends.values() if item.get("healthy") is True),
    }
