"""citypulse: AI usage records

Revision ID: 0010_citypulse_ai
Revises: 0004_citypulse
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from vpsapi.core.db import UTCDateTime

revision: str = "0010_citypulse_ai"
down_revision: str | Sequence[str] | None = "0004_citypulse"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ai_usage",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(80), nullable=False),
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("total_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("job_id", sa.String(40), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_ai_usage_owner_created", "ai_usage", ["owner", "created_at"])
    op.create_index("ix_ai_usage_created_at", "ai_usage", ["created_at"])
    op.create_index("ix_ai_usage_job_id", "ai_usage", ["job_id"])


def downgrade() -> None:
    op.drop_table("ai_usage")
