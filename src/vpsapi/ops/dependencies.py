"""Shared dependencies of the ops routers."""

# No `from __future__ import annotations` here: `tail_lines` annotates its dependency's
# parameters with its own `maximum`, which FastAPI cannot resolve from a string annotation.

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.requests import HTTPConnection

from vpsapi.core.errors import AppError, ValidationFailed
from vpsapi.core.middleware import route_template
from vpsapi.ops.audit.service import record_failed_change
from vpsapi.ops.nginx.control import NginxControl

_CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def get_nginx(request: Request) -> NginxControl:
    nginx: NginxControl = request.app.state.nginx
    return nginx


NginxDep = Annotated[NginxControl, Depends(get_nginx)]

DEFAULT_TAIL_LINES = 100


def tail_lines(maximum: int) -> Callable[[int | None, int | None], Awaitable[int]]:
    """How many lines of a log's end to answer: `lines`, or `limit` as seed 002's clients
    (and the other /api/logs endpoints) name it; both at once is ambiguous and refused."""

    async def lines_or_limit(
        lines: Annotated[
            int | None,
            Query(
                ge=1, le=maximum, description=f"lines from the end (default {DEFAULT_TAIL_LINES})"
            ),
        ] = None,
        limit: Annotated[int | None, Query(ge=1, le=maximum, description="same as `lines`")] = None,
    ) -> int:
        if lines is not None and limit is not None:
            message = "give `lines` or `limit`, not both"
            raise ValidationFailed([{"field": "limit", "message": message}])
        return lines or limit or DEFAULT_TAIL_LINES

    return lines_or_limit


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
