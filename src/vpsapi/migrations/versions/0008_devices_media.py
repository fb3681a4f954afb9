"""devices: cloud videos uploaded by cameras (seed 003)

Revision ID: 0008_devices_media
Revises: 0003_devices
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from vpsapi.core.db import UTCDateTime

revision: str = "0008_devices_media"
down_revision: str | Sequence[str] | None = "0003_devices"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cloud_videos",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "device_id",
            sa.String(32),
            sa.ForeignKey("devices.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("file_size", sa.BigInteger(), nullable=True),
        sa.Column("duration", sa.Integer(), nullable=True),
        sa.Column("start_time", UTCDateTime(), nullable=False),
        sa.Column("end_time", UTCDateTime(), nullable=True),
        sa.Column("alarm_type", sa.String(32), nullable=True),
        sa.Column("storage_path", sa.String(512), nullable=False),
        sa.Column("thumbnail_path", sa.String(512), nullable=True),
        sa.Column("is_uploaded", sa.Boolean(), nullable=False),
        sa.Column("upload_expires_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_cloud_videos_device_time", "cloud_videos", ["device_id", "start_time"])
    op.create_index("ix_cloud_videos_pending", "cloud_videos", ["is_uploaded", "upload_expires_at"])


def downgrade() -> None:
    op.drop_table("cloud_videos")
