"""Host and nginx status, nginx restart/reload, nginx log tails (seed 002)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from vpsapi.auth.dependencies import AdminUser, CurrentUser
from vpsapi.core.db import SessionDep, utcnow
from vpsapi.ops.audit.service import record_audit
from vpsapi.ops.dependencies import NginxDep, tail_lines
from vpsapi.ops.system import service
from vpsapi.ops.system.schemas import NginxActionResult, NginxLogs, SystemStatus

router = APIRouter(prefix="/api/system", tags=["ops: system"])

_NGINX_ACTION_ANSWERS: dict[int | str, dict[str, object]] = {
    422: {"description": "nginx refused (its output in `detail`)"},
    503: {"description": "nginx cannot be run, or timed out"},
}

MAX_LOG_LINES = 1000


@router.get("/status", response_model=SystemStatus)
async def system_status(request: Request, _user: CurrentUser, nginx: NginxDep) -> SystemStatus:
    state = request.app.state
    status = await service.system_status(state.settings, nginx, state.ops_cache, state.started_at)
    return SystemStatus(**status)


@router.post("/nginx/restart", response_model=NginxActionResult, responses=_NGINX_ACTION_ANSWERS)
async def restart_nginx(
    admin: AdminUser, session: SessionDep, nginx: NginxDep
) -> NginxActionResult:
    async with nginx.exclusive():  # one at a time, and never inside a site's change
        output = await nginx.restart()
    await record_audit(session, admin, "system.nginx.restart", "nginx")
    return NginxActionResult(message="Nginx restarted successfully", output=output.strip())


@router.post("/nginx/reload", response_model=NginxActionResult, responses=_NGINX_ACTION_ANSWERS)
async def reload_nginx(admin: AdminUser, session: SessionDep, nginx: NginxDep) -> NginxActionResult:
    # `nginx -s reload` succeeds even when the new config is broken (the old one stays):
    # test first, so the caller hears why.
    async with nginx.exclusive():
        tested = await nginx.test()
        output = await nginx.reload()
    await record_audit(session, admin, "system.nginx.reload", "nginx")
    return NginxActionResult(
        message="Nginx configuration reloaded successfully", output=(tested + output).strip()
    )


@router.get(
    "/nginx/logs",
    response_model=NginxLogs,
    response_model_exclude_none=True,
    responses={404: {"description": "The nginx log asked for does not exist"}},
)
async def nginx_logs(
    request: Request,
    _admin: AdminUser,
    lines: Annotated[int, Depends(tail_lines(MAX_LOG_LINES))],
    grep: Annotated[
        str | None, Query(min_length=1, max_length=200, description="plain substring")
    ] = None,
    log: Annotated[
        service.NginxLog | None, Query(description="access or error; both when absent")
    ] = None,
) -> NginxLogs:
    logs: list[service.NginxLog] = [log] if log else ["access", "error"]
    found = await service.nginx_logs(request.app.state.settings, logs, lines, grep)
    return NginxLogs(
        access_logs=found.get("access"),
        error_logs=found.get("error"),
        lines=lines,
        grep=grep,
        timestamp=utcnow(),
    )
