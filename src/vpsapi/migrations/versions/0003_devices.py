"""devices: camera devices and setup bindings (seed 003)

Revision ID: 0003_devices
Revises: 0001_core
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from vpsapi.core.db import UTCDateTime

revision: str = "0003_devices"
down_revision: str | Sequence[str] | None = "0001_core"
branch_labels: str | Sequence[str] | None = ("devices",)
depends_on: str | Sequence[str] | None = None


def _stamps() -> list[sa.Column[Any]]:
    return [
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("virtual_id", sa.String(64), nullable=False),
        sa.Column("real_device_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("model", sa.String(64), nullable=True),
        sa.Column("firmware_version", sa.String(64), nullable=True),
        sa.Column("supplier", sa.String(64), nullable=True),
        sa.Column("cluster", sa.String(64), nullable=True),
        sa.Column("is_online", sa.Boolean(), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=True),
        sa.Column("service_param", sa.Text(), nullable=True),
        *_stamps(),
    )
    op.create_index("ix_devices_virtual_id", "devices", ["virtual_id"], unique=True)
    op.create_index("ix_devices_real_device_id", "devices", ["real_device_id"], unique=True)
    op.create_table(
        "device_bindings",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("binding_key", sa.String(300), nullable=False),
        sa.Column("virtual_id", sa.String(64), nullable=False),
        sa.Column("real_device_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("model", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("binding_data", sa.Text(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        *_stamps(),
    )
    op.create_index(
        "ix_device_bindings_binding_key", "device_bindings", ["binding_key"], unique=True
    )
    op.create_table(
        "user_devices",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "device_id",
            sa.String(32),
            sa.ForeignKey("devices.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("password_sealed", sa.Text(), nullable=True),
        *_stamps(),
    )
    op.create_index(
        "ix_user_devices_user_device", "user_devices", ["user_id", "device_id"], unique=True
    )
    op.create_index("ix_user_devices_device_id", "user_devices", ["device_id"])
    op.create_table(
        "push_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("token", sa.String(4096), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        *_stamps(),
    )
    op.create_index("ix_push_tokens_token_hash", "push_tokens", ["token_hash"], unique=True)
    op.create_index("ix_push_tokens_user_id", "push_tokens", ["user_id"])


def downgrade() -> None:
    op.drop_table("push_tokens")
    op.drop_table("user_devices")
    op.drop_table("device_bindings")
    op.drop_table("devices")
