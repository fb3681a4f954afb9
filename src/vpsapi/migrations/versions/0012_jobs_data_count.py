"""jobs: how many items a job was given (seed 000's dataCount)

Revision ID: 0012_jobs_data_count
Revises: 0002_jobs
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_jobs_data_count"
down_revision: str | Sequence[str] | None = "0002_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: jobs submitted before it have no count (their input is kept, but counting
    # it would read every input of the table).
    op.add_column("jobs", sa.Column("data_count", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "data_count")
