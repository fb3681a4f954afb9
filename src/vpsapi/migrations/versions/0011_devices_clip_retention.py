"""devices: index for the cloud-clip retention sweep

Revision ID: 0011_devices_clip_retention
Revises: 0008_devices_media
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011_devices_clip_retention"
down_revision: str | Sequence[str] | None = "0008_devices_media"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_cloud_videos_created_at", "cloud_videos", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_cloud_videos_created_at", table_name="cloud_videos")
