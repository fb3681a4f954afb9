"""Shared dependencies of the ops routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from vpsapi.core.errors import AppError
from vpsapi.core.middleware import route_template
from vpsapi.ops.audit.service import record_failed_change
from vpsapi.ops.nginx.control import NginxControl

_CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def get_nginx(request: Request) -> NginxControl:
    nginx: NginxControl = request.app.state.nginx
    return nginx


NginxDep = Annotated[NginxControl, Depends(get_nginx)]


async def audit_failed_changes(connection: HTTPConnection) -> AsyncIterator[None]:
    """Every ops router's dependency: a change a signed-in caller asked for that ends in an
    error is audited too (action "METHOD /route", outcome failure, status and why). Refused
    sign-ins and roles are the security log's, and a 404 changed nothing that exists."""
    try:
        yield
    except AppError as exc:
        principal = getattr(connection.state, "principal", None)
        method = connection.scope.get("method", "")
        if principal is not None and method in _CHANGES and exc.status_code not in (401, 403, 404):
            await record_failed_change(
                connection.app.state.db,
                principal,
                f"{method} {route_template(connection.scope)}",
                connection.url.path,
                exc.status_code,
                exc.message,
            )
        raise
