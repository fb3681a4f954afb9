"""ops: audit log, nginx sites, load-balancer pools (seed 002)

Revision ID: 0005_ops
Revises: 0001_core
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from vpsapi.core.db import UTCDateTime

revision: str = "0005_ops"
down_revision: str | Sequence[str] | None = "0001_core"
branch_labels: str | Sequence[str] | None = ("ops",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ops_audit_log",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("actor_id", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
    )
    op.create_index("ix_ops_audit_log_created_at", "ops_audit_log", ["created_at"])
    op.create_index("ix_ops_audit_log_actor", "ops_audit_log", ["actor"])
    op.create_table(
        "ops_nginx_sites",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("server_name", sa.String(1000), nullable=True),
        sa.Column("listen_port", sa.Integer(), nullable=False),
        sa.Column("locations", sa.JSON(), nullable=False),
        sa.Column("upstream", sa.JSON(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("ssl_cert", sa.String(500), nullable=True),
        sa.Column("ssl_key", sa.String(500), nullable=True),
        sa.Column("ssl_redirect", sa.Boolean(), nullable=False),
        sa.Column("rate_limit_global", sa.String(16), nullable=True),
        sa.Column("access_log_enabled", sa.Boolean(), nullable=False),
        sa.Column("gzip_enabled", sa.Boolean(), nullable=False),
        sa.Column("security_headers", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "ops_upstream_pools",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("servers", sa.JSON(), nullable=False),
        sa.Column("health_check", sa.Boolean(), nullable=False),
        sa.Column("health_path", sa.String(200), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("name", name="uq_ops_upstream_pools_name"),
    )


def downgrade() -> None:
    op.drop_table("ops_upstream_pools")
    op.drop_table("ops_nginx_sites")
    op.drop_index("ix_ops_audit_log_actor", "ops_audit_log")
    op.drop_index("ix_ops_audit_log_created_at", "ops_audit_log")
    op.drop_table("ops_audit_log")
