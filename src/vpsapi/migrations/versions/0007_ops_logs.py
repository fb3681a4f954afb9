"""ops logs: run-time settings of the log subsystem (retention policy)

Revision ID: 0007_ops_logs
Revises: 0001_core
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from vpsapi.core.db import UTCDateTime

revision: str = "0007_ops_logs"
down_revision: str | Sequence[str] | None = "0001_core"
branch_labels: str | Sequence[str] | None = ("ops_logs",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ops_log_settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("ops_log_settings")
