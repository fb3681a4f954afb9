"""One row per model call, for usage reports and cost control."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from vpsapi.core.db import Base, IdMixin, UTCDateTime, utcnow


class AiUsage(IdMixin, Base):
    __tablename__ = "ai_usage"
    __table_args__ = (Index("ix_ai_usage_owner_created", "owner", "created_at"),)

    owner: Mapped[str] = mapped_column(String(80), nullable=False)  # principal subject
    provider: Mapped[str] = mapped_column(String(40), nullable=False)
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    total_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    latency_ms: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # ok | error (provider answered an error) | timeout | cancelled (client went away)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    stream: Mapped[bool] = mapped_column(default=False, nullable=False)
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, nullable=False, index=True
    )
