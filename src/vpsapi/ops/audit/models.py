"""The audit trail of every administrative change (seed 002: compliance logging)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from vpsapi.core.db import Base, IdMixin, UTCDateTime, utcnow

ACTION_LENGTH = 64
TARGET_LENGTH = 255


class AuditEntry(IdMixin, Base):
    __tablename__ = "ops_audit_log"

    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    actor: Mapped[str] = mapped_column(String(255), nullable=False)  # username or subject
    actor_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(
        String(ACTION_LENGTH), nullable=False
    )  # e.g. "nginx.site.create"
    target: Mapped[str] = mapped_column(String(TARGET_LENGTH), nullable=False, default="")
    before: Mapped[Any | None] = mapped_column(JSON)
    after: Mapped[Any | None] = mapped_column(JSON)
    ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16), nullable=False, default="success")

    __table_args__ = (
        Index("ix_ops_audit_log_created_at", "created_at"),
        Index("ix_ops_audit_log_actor", "actor"),
    )
