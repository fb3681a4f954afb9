"""Record administrative changes: who, what, before/after, from where, in which request."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.core.context import client_ip_var, request_id_var
from vpsapi.core.db import Database
from vpsapi.core.security import Principal
from vpsapi.ops.audit.models import ACTION_LENGTH, TARGET_LENGTH, AuditEntry

# Its own logger name, so the log streams route these lines to the audit stream.
audit_log = structlog.get_logger("vpsapi.audit")


def actor_name(principal: Principal) -> str:
    return principal.username or principal.email or principal.subject


async def record_audit(
    session: AsyncSession,
    actor: Principal,
    action: str,
    target: str = "",
    *,
    before: Any = None,
    after: Any = None,
    outcome: str = "success",
) -> AuditEntry:
    """Add an audit entry to the caller's transaction and echo it to the audit log."""
    entry = AuditEntry(
        actor=actor_name(actor),
        actor_id=actor.user_id,
        action=action,
        target=target,
        before=before,
        after=after,
        ip=client_ip_var.get() or None,
        request_id=request_id_var.get() or None,
        outcome=outcome,
    )
    session.add(entry)
    audit_log.info(
        "audit",
        actor=entry.actor,
        # What seed 002's operators grep for (`"user_id":"admin"`): the login name, as
        # in `actor`; the account's id, which the other streams call user_id, is actor_id.
        user_id=entry.actor,
        actor_id=entry.actor_id,
        action=action,
        target=target,
        outcome=outcome,
        ip=entry.ip,
    )
    return entry


def _storable(text: str, limit: int) -> str:
    # PostgreSQL text and jsonb refuse NUL, and a refused request may well carry one.
    return text.replace("\x00", "\\x00")[:limit]


async def record_failed_change(
    db: Database, actor: Principal, action: str, target: str, status: int, error: str
) -> None:
    """A change that was asked for and refused or failed. Its own transaction: the
    request's, with any success entry in it, is rolled back. Best effort: the caller's
    answer is the error itself, never a failure to audit it."""
    try:
        async with db.session() as session:
            await record_audit(
                session,
                actor,
                _storable(action, ACTION_LENGTH),
                _storable(target, TARGET_LENGTH),
                after={"status": status, "error": _storable(error, 2000)},
                outcome="failure",
            )
    except Exception as exc:
        audit_log.error("audit_failed", action=action, error=str(exc))
