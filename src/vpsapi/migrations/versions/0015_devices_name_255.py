"""devices: an owner's name for a device takes 255 characters (seed 003's device_name)

Revision ID: 0015_devices_name_255
Revises: 0011_devices_clip_retention
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_devices_name_255"
down_revision: str | Sequence[str] | None = "0011_devices_clip_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode: SQLite changes a column by copying the table; PostgreSQL alters it.
    with op.batch_alter_table("user_devices") as batch:
        batch.alter_column(
            "name", type_=sa.String(255), existing_type=sa.String(100), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("user_devices") as batch:
        batch.alter_column(
            "name", type_=sa.String(100), existing_type=sa.String(255), existing_nullable=False
        )
