"""Reading the log streams back, the nginx and system logs, and the retention policy.

The file readers are blocking and bounded (see reader.py); callers run them in a
thread. Nothing here knows about HTTP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Select, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.config import Settings
from vpsapi.core.db import utcnow
from vpsapi.core.errors import ValidationFailed
from vpsapi.core.logging import LOG_STREAMS, redact, stream_path
from vpsapi.core.schemas import as_utc
from vpsapi.core.security import Principal
from vpsapi.ops.audit.models import AuditEntry
from vpsapi.ops.audit.service import actor_name
from vpsapi.ops.logs import reader
from vpsapi.ops.logs.models import LogSetting
from vpsapi.ops.logs.schemas import (
    AuditLogEntry,
    AuditLogPage,
    CleanupResult,
    LogPage,
    LogQuery,
    NginxLogLines,
    RemovedFile,
    RetentionPolicy,
    RetentionPolicyChange,
    RetentionPolicyOut,
    TextLogLines,
)

LEVEL_RANK = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
# Fields of a log line that name the user it concerns.
_USER_FIELDS = ("user_id", "user", "actor", "actor_id")
# The journal is asked for this many lines when they are to be filtered by text.
JOURNAL_SCAN_LINES = 10_000
SUBPROCESS_TIMEOUT = 10.0
RETENTION_KEY = "retention_policy"
_EARLIEST = datetime.min.replace(tzinfo=UTC)


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed([{"field": field, "message": message}], message)


def _as_utc(moment: datetime | None, field: str) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:  # e.g. year 1 with a positive offset
        raise _invalid(field, f"`{field}` is out of range") from exc


def normalized(query: LogQuery) -> LogQuery:
    since, until = _as_utc(query.since, "from"), _as_utc(query.until, "to")
    if since and until and since > until:
        raise _invalid("from", "`from` must not be later than `to`")
    return dataclasses.replace(query, since=since, until=until)


# ---- structured log files --------------------------------------------------------------


def _raw_form(text: str) -> bytes | None:
    """`text` as it appears inside a JSON line written with ensure_ascii, when that is
    the text itself (printable ASCII without quote or backslash), else None."""
    if all(" " <= char <= "~" and char not in '"\\' for char in text):
        return text.encode()
    return None


# Lines are compact JSON; files rotated before that have a space after the colon.
_RAW_TIMESTAMP = re.compile(rb'"timestamp": ?"([^"]+)"')
# The spacing of the older lines' JSON punctuation, in a fragment copied from one (a
# saved search, `"event": "login_failed"`): after a key's colon, and a comma before a key.
_SPACED_COLON = re.compile(r'(?<!\\)"\s*:\s*')
_SPACED_COMMA = re.compile(r',\s+"')


def _compact_needle(needle: str) -> str:
    """A JSON fragment in the compact form the lines are compared in, whichever form it
    was copied from; text without quotes is no JSON fragment and stays as written."""
    if '"' not in needle:
        return needle
    return _SPACED_COMMA.sub(',"', _SPACED_COLON.sub('":', needle))


def _line_parser(query: LogQuery) -> Any:
    minimum = LEVEL_RANK[query.level] if query.level else 0
    needle = _compact_needle(query.q.lower()) if query.q else None
    # Lines that cannot match are dropped before parsing: a plain-text filter is
    # looked up in the raw bytes when it is written there verbatim.
    raw_needle = _raw_form(needle) if needle else None
    raw_user = _raw_form(query.user) if query.user else None
    # Several processes append to one file, so lines are only nearly in time order:
    # the scan ends at the first line clearly before `from`.
    stop_before = (
        query.since - reader.TIME_ORDER_SLACK
        if query.since and query.since > _EARLIEST + reader.TIME_ORDER_SLACK
        else None
    )

    def skipped(line: bytes) -> Any:
        if stop_before is not None:
            found = _RAW_TIMESTAMP.search(line)
            moment = reader.parse_timestamp(found.group(1).decode()) if found else None
            if moment is not None and moment < stop_before:
                return reader.STOP
        return None

    def parse(line: bytes) -> Any:
        if raw_needle is not None and raw_needle not in line.lower():
            return skipped(line)
        if raw_user is not None and b'"' + raw_user + b'"' not in line:
            return skipped(line)
        try:
            entry = json.loads(line)
        except ValueError:
            return None
        if not isinstance(entry, dict):
            return None
        if query.since or query.until:
            moment = reader.parse_timestamp(entry.get("timestamp"))
            if moment is None:
                return None
            if stop_before and moment < stop_before:
                return reader.STOP
            if (query.since and moment < query.since) or (query.until and moment > query.until):
                return None
        if minimum and LEVEL_RANK.get(str(entry.get("level", "")).lower(), 0) < minimum:
            return None
        if query.user and not any(str(entry.get(f)) == query.user for f in _USER_FIELDS):
            return None
        if needle:
            # Compact as the files are now written (and the needle made so), so a fragment
            # copied from a line of either form finds lines of both.
            text = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
            if needle not in text.lower():
                return None
        return entry

    return parse


def read_stream(log_dir: Path, stream: str, query: LogQuery) -> LogPage:
    """A newest-first page of one stream's JSON lines (blocking: run it in a thread)."""
    query = normalized(query)
    try:
        page = reader.scan_backwards(
            stream_path(log_dir, stream),
            _line_parser(query),
            limit=query.limit,
            cursor=query.cursor,
        )
    except reader.InvalidCursor as exc:
        raise _invalid("cursor", str(exc)) from exc
    return LogPage(source=stream, entries=page.entries, next_cursor=page.next_cursor)


# ---- the audit trail (the table is the record; audit.log only echoes it) ---------------


def _audit_filters(stmt: Select[Any], query: LogQuery, action: str | None) -> Select[Any]:
    if query.since:
        stmt = stmt.where(AuditEntry.created_at >= query.since)
    if query.until:
        stmt = stmt.where(AuditEntry.created_at <= query.until)
    if query.user:
        stmt = stmt.where(or_(AuditEntry.actor == query.user, AuditEntry.actor_id == query.user))
    if action:
        stmt = stmt.where(AuditEntry.action == action)
    if query.q:
        needle = query.q.lower()
        stmt = stmt.where(
            or_(
                func.lower(AuditEntry.action).contains(needle, autoescape=True),
                func.lower(AuditEntry.target).contains(needle, autoescape=True),
            )
        )
    return stmt


def _audit_position(cursor: str) -> tuple[datetime, str]:
    try:
        position = reader.decode_cursor(cursor)
        moment = reader.parse_timestamp(position.get("t"))
        entry_id = position.get("id")
        # In UTC as the column binds it: a forged 0001-01-01T00:00+14:00 fails here.
        moment = None if moment is None else as_utc(moment)
    except reader.InvalidCursor as exc:
        raise _invalid("cursor", str(exc)) from exc
    except ValueError:
        moment = None
    if moment is None or not isinstance(entry_id, str):
        raise _invalid("cursor", "Invalid cursor")
    return moment, entry_id


async def audit_page(session: AsyncSession, query: LogQuery, action: str | None) -> AuditLogPage:
    """Newest-first audit entries; `level` does not apply (every entry is a change)."""
    query = normalized(query)
    stmt = _audit_filters(select(AuditEntry), query, action)
    total = await session.scalar(
        _audit_filters(select(func.count()).select_from(AuditEntry), query, action)
    )
    if query.cursor:
        moment, entry_id = _audit_position(query.cursor)
        stmt = stmt.where(
            or_(
                AuditEntry.created_at < moment,
                (AuditEntry.created_at == moment) & (AuditEntry.id < entry_id),
            )
        )
    rows = list(
        (
            await session.scalars(
                stmt.order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc()).limit(
                    query.limit + 1
                )
            )
        ).all()
    )
    more, rows = len(rows) > query.limit, rows[: query.limit]
    next_cursor = (
        reader.encode_cursor({"t": rows[-1].created_at.isoformat(), "id": rows[-1].id})
        if more
        else None
    )
    return AuditLogPage(
        entries=[
            AuditLogEntry(
                id=row.id,
                timestamp=row.created_at,
                actor=row.actor,
                user_id=row.actor_id,
                action=row.action,
                target=row.target,
                before=redact(row.before),
                after=redact(row.after),
                ip=row.ip,
                request_id=row.request_id,
                outcome=row.outcome,
            )
            for row in rows
        ],
        next_cursor=next_cursor,
        total=total or 0,
    )


# ---- nginx and system logs ---------------------------------------------------------------


def read_nginx_log(
    settings: Settings, log_type: str, lines: int, grep: str | None
) -> NginxLogLines:
    """The end of nginx's access or error log (blocking: run it in a thread)."""
    path = settings.nginx_log_dir / f"{log_type}.log"
    if not path.is_file():
        return NginxLogLines(
            logs=[], lines=0, source=None, log_type=log_type, message="Log file not found"
        )
    found = reader.tail_lines(path, lines, grep)
    return NginxLogLines(logs=found, lines=len(found), source=str(path), log_type=log_type)


async def _journal(binary: str, lines: int, grep: str | None) -> list[str] | None:
    """The journal's last lines, or None when it cannot be read or holds nothing."""
    executable = shutil.which(binary) if binary else None
    if executable is None:
        return None
    count = JOURNAL_SCAN_LINES if grep else lines
    process = await asyncio.create_subprocess_exec(
        executable,
        "-n",
        str(count),
        "--no-pager",
        "-q",
        "-o",
        "short-iso",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), SUBPROCESS_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        return None
    if process.returncode != 0:
        return None
    found = output.decode("utf-8", "replace").splitlines()
    if grep:
        needle = grep.lower()
        found = [line for line in found if needle in line.lower()]
    return found[-lines:] if found else None


def _tail_first_readable(
    names: list[str], lines: int, grep: str | None
) -> tuple[str, list[str]] | None:
    for name in names:
        path = Path(name)
        try:
            if path.is_file():
                return str(path), reader.tail_lines(path, lines, grep)
        except PermissionError:
            continue
    return None


async def read_system_log(settings: Settings, lines: int, grep: str | None) -> TextLogLines:
    """The journal when it has entries, else the first readable SYSTEM_LOG_FILES file."""
    journal = await _journal(settings.journalctl_bin, lines, grep)
    if journal is not None:
        return TextLogLines(logs=journal, lines=len(journal), source="journalctl")
    found = await asyncio.to_thread(_tail_first_readable, settings.system_log_files, lines, grep)
    if found is not None:
        source, logs = found
        return TextLogLines(logs=logs, lines=len(logs), source=source)
    return TextLogLines(
        logs=[],
        lines=0,
        source=None,
        message="No system log is readable here (no journal, none of SYSTEM_LOG_FILES)",
    )


# ---- retention ---------------------------------------------------------------------------


async def get_retention_policy(session: AsyncSession, settings: Settings) -> RetentionPolicyOut:
    row = await session.get(LogSetting, RETENTION_KEY)
    if row is None:
        return RetentionPolicyOut(retention_days=settings.log_retention_days)
    return RetentionPolicyOut(**row.value, updated_at=row.updated_at, updated_by=row.updated_by)


async def set_retention_policy(
    session: AsyncSession, settings: Settings, actor: Principal, change: RetentionPolicyChange
) -> tuple[RetentionPolicyOut, RetentionPolicyOut]:
    """Merge `change` onto the policy in force and store it; returns (before, after)."""
    before = await get_retention_policy(session, settings)
    merged = {**before.model_dump(include=set(RetentionPolicy.model_fields)), **change.changes()}
    try:
        policy = RetentionPolicy.model_validate(merged)
    except ValidationError as exc:  # the field checks of the change already ran: defensive
        raise _invalid("body", str(exc)) from exc
    row = await session.get(LogSetting, RETENTION_KEY)
    if row is None:
        row = LogSetting(key=RETENTION_KEY)
        session.add(row)
    row.value = policy.model_dump()
    row.updated_by = actor_name(actor)
    row.updated_at = utcnow()
    await session.flush()
    after = RetentionPolicyOut(**row.value, updated_at=row.updated_at, updated_by=row.updated_by)
    return before, after


def remove_old_files(log_dir: Path, policy: RetentionPolicy, now: datetime) -> list[RemovedFile]:
    """Rotated stream files past the policy; active files are never touched (blocking)."""
    cutoff = now - timedelta(days=policy.retention_days)
    cap = policy.max_size_mb * 1024 * 1024 if policy.max_size_mb else None
    removed: list[RemovedFile] = []
    for stream in LOG_STREAMS:
        active, *rotated = reader.rotated_files(stream_path(log_dir, stream))
        try:
            kept = active.stat().st_size
        except FileNotFoundError:
            kept = 0
        for path in rotated:  # newest first, so the size cap drops the oldest
            try:
                info = path.stat()
            except FileNotFoundError:
                continue
            modified = datetime.fromtimestamp(info.st_mtime, UTC)
            reason: Any = None
            if modified < cutoff:
                reason = "retention_days"
            elif cap is not None and kept + info.st_size > cap:
                reason = "max_size_mb"
            if reason is None:
                kept += info.st_size
                continue
            path.unlink(missing_ok=True)
            removed.append(
                RemovedFile(
                    file=path.name, size_bytes=info.st_size, modified_at=modified, reason=reason
                )
            )
    return removed


async def cleanup(
    session: AsyncSession, settings: Settings, policy: RetentionPolicy
) -> CleanupResult:
    now = utcnow()
    removed = await asyncio.to_thread(remove_old_files, settings.effective_log_dir, policy, now)
    result = await session.execute(
        delete(AuditEntry).where(
            AuditEntry.created_at < now - timedelta(days=policy.audit_retention_days)
        )
    )
    audit_rows = int(result.rowcount or 0)  # type: ignore[attr-defined]
    return CleanupResult(
        message=f"Log cleanup completed: {len(removed)} files and {audit_rows} audit entries removed",
        removed_files=removed,
        freed_bytes=sum(item.size_bytes for item in removed),
        removed_audit_entries=audit_rows,
    )
