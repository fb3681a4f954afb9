"""/api/logs: the service's own log streams, the audit trail, nginx and system logs.

Every read is admin-only: log lines hold client IPs, user ids and request paths.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from vpsapi.auth.dependencies import AdminUser
from vpsapi.config import Settings
from vpsapi.core.db import SessionDep
from vpsapi.ops.audit.service import record_audit
from vpsapi.ops.dependencies import tail_lines
from vpsapi.ops.logs import service
from vpsapi.ops.logs.schemas import (
    AuditLogPage,
    CleanupResult,
    FileStream,
    LogLevelParam,
    LogPage,
    LogQuery,
    NginxLogLines,
    RetentionPolicyChange,
    RetentionPolicyOut,
    TextLogLines,
)

router = APIRouter(prefix="/api/logs", tags=["ops: logs"])

# Text filters are matched as plain text; NUL is refused (PostgreSQL cannot compare it).
PLAIN_TEXT = r"^[^\x00]+$"


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def log_query(
    level: Annotated[
        LogLevelParam | None, Query(description="this level and above (any letter case)")
    ] = None,
    since: Annotated[
        datetime | None, Query(alias="from", description="ISO time (UTC if naive)")
    ] = None,
    until: Annotated[
        datetime | None, Query(alias="to", description="ISO time (UTC if naive)")
    ] = None,
    user: Annotated[
        str | None,
        Query(min_length=1, max_length=255, pattern=PLAIN_TEXT, description="user id or name"),
    ] = None,
    q: Annotated[
        str | None,
        Query(min_length=1, max_length=200, pattern=PLAIN_TEXT, description="plain text"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor of a page")
    ] = None,
) -> LogQuery:
    return LogQuery(level, since, until, user, q, limit, cursor)


LogQueryDep = Annotated[LogQuery, Depends(log_query)]
TailLines = Annotated[int, Depends(tail_lines(5000))]
Grep = Annotated[
    str | None,
    Query(min_length=1, max_length=200, pattern=PLAIN_TEXT, description="plain text"),
]


async def _stream_page(settings: Settings, stream: str, query: LogQuery) -> LogPage:
    return await asyncio.to_thread(service.read_stream, settings.effective_log_dir, stream, query)


@router.get("/application", response_model=LogPage)
async def application_logs(_: AdminUser, settings: SettingsDep, query: LogQueryDep) -> LogPage:
    """application.log: every line of the service at LOG_LEVEL and above, newest first."""
    return await _stream_page(settings, "application", query)


@router.get("/structured", response_model=LogPage)
async def structured_logs(
    _: AdminUser,
    settings: SettingsDep,
    query: LogQueryDep,
    source: Annotated[FileStream, Query(description="which stream file")] = "application",
) -> LogPage:
    """Any of the JSON-lines stream files, chosen by `source`."""
    return await _stream_page(settings, source, query)


@router.get("/performance", response_model=LogPage)
async def performance_logs(_: AdminUser, settings: SettingsDep, query: LogQueryDep) -> LogPage:
    """performance.log: one line per request (method, path, status, duration_ms, user_id)."""
    return await _stream_page(settings, "performance", query)


@router.get("/security", response_model=LogPage)
async def security_logs(_: AdminUser, settings: SettingsDep, query: LogQueryDep) -> LogPage:
    """security.log: failed logins, rejected tokens and keys, rate-limit hits, 403s."""
    return await _stream_page(settings, "security", query)


@router.get("/audit", response_model=AuditLogPage)
async def audit_logs(
    _: AdminUser,
    session: SessionDep,
    query: LogQueryDep,
    action: Annotated[
        str | None,
        Query(min_length=1, max_length=64, pattern=PLAIN_TEXT, description="e.g. logs.cleanup"),
    ] = None,
) -> AuditLogPage:
    """The audit trail from the database: who changed what, before/after, from where."""
    return await service.audit_page(session, query, action)


@router.get("/nginx", response_model=NginxLogLines)
async def nginx_logs(
    _: AdminUser,
    settings: SettingsDep,
    lines: TailLines,
    grep: Grep = None,
    log: Annotated[Literal["access", "error"], Query()] = "error",
) -> NginxLogLines:
    """The end of nginx's access or error log in NGINX_LOG_DIR."""
    return await asyncio.to_thread(service.read_nginx_log, settings, log, lines, grep)


@router.get("/system", response_model=TextLogLines)
async def system_logs(
    _: AdminUser, settings: SettingsDep, lines: TailLines, grep: Grep = None
) -> TextLogLines:
    """The journal, else /var/log/syslog (SYSTEM_LOG_FILES), else an empty list."""
    return await service.read_system_log(settings, lines, grep)


@router.get("/retention-policy", response_model=RetentionPolicyOut)
async def get_retention_policy(
    _: AdminUser, session: SessionDep, settings: SettingsDep
) -> RetentionPolicyOut:
    return await service.get_retention_policy(session, settings)


@router.put("/retention-policy", response_model=RetentionPolicyOut)
async def put_retention_policy(
    admin: AdminUser, session: SessionDep, settings: SettingsDep, change: RetentionPolicyChange
) -> RetentionPolicyOut:
    """Merge the fields given onto the policy in force (a GET's answer may be sent back)."""
    before, after = await service.set_retention_policy(session, settings, admin, change)
    await record_audit(
        session,
        admin,
        "logs.retention_policy.update",
        "retention-policy",
        before=before.model_dump(mode="json"),
        after=after.model_dump(mode="json"),
    )
    return after


@router.post("/cleanup", response_model=CleanupResult)
async def cleanup_logs(
    admin: AdminUser, session: SessionDep, settings: SettingsDep
) -> CleanupResult:
    """Apply the retention policy now: old rotated files and old audit entries go."""
    policy = await service.get_retention_policy(session, settings)
    result = await service.cleanup(session, settings, policy)
    await record_audit(
        session,
        admin,
        "logs.cleanup",
        "logs",
        after={
            "removed_files": [item.file for item in result.removed_files],
            "removed_audit_entries": result.removed_audit_entries,
        },
    )
    return result
