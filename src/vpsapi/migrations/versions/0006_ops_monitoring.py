"""ops monitoring: metric samples, alert rules, alerts, sampler lease and process reports

Revision ID: 0006_ops_monitoring
Revises: 0001_core
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from vpsapi.core.db import UTCDateTime

revision: str = "0006_ops_monitoring"
down_revision: str | Sequence[str] | None = "0001_core"
branch_labels: str | Sequence[str] | None = ("ops_monitoring",)
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
METRICS = (
    "cpu_usage",
    "memory_usage",
    "disk_usage",
    "load_average",
    "network_in",
    "network_out",
    "nginx_connections",
    "nginx_requests_per_second",
    "requests_per_second",
    "error_rate",
    "response_time_p95",
)


def upgrade() -> None:
    op.create_table(
        "ops_metric_samples",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("timestamp_ms", sa.BigInteger(), nullable=False),
        *(sa.Column(name, sa.Float(), nullable=True) for name in METRICS),
    )
    op.create_index("ix_ops_metric_samples_timestamp_ms", "ops_metric_samples", ["timestamp_ms"])
    op.create_table(
        "ops_app_metric_reports",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("process", sa.String(64), nullable=False),
        sa.Column("reported_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("latency_buckets", sa.JSON(), nullable=False),
    )
    op.create_table(
        "ops_monitor_lease",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "ops_alert_rules",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("metric", sa.String(40), nullable=False),
        sa.Column("operator", sa.String(2), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("duration", sa.Integer(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("notification_email", sa.String(1000), nullable=True),
        sa.Column("notification_webhook", sa.String(2000), nullable=True),
        sa.Column("pending_since", UTCDateTime(), nullable=True),
        sa.Column("fired", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "ops_alerts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "rule_id",
            sa.String(32),
            sa.ForeignKey(
                "ops_alert_rules.id",
                name="fk_ops_alerts_rule_id_ops_alert_rules",
                ondelete="SET NULL",
            ),
            nullable=True,
        ),
        sa.Column("rule_name", sa.String(100), nullable=False),
        sa.Column("timestamp", UTCDateTime(), nullable=False),
        sa.Column("metric", sa.String(40), nullable=False),
        sa.Column("operator", sa.String(2), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.String(500), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("resolved_by", sa.String(255), nullable=True),
    )
    op.create_index("ix_ops_alerts_status_timestamp", "ops_alerts", ["status", "timestamp"])
    op.create_index("ix_ops_alerts_rule_id", "ops_alerts", ["rule_id"])


def downgrade() -> None:
    op.drop_index("ix_ops_alerts_rule_id", "ops_alerts")
    op.drop_index("ix_ops_alerts_status_timestamp", "ops_alerts")
    op.drop_table("ops_alerts")
    op.drop_table("ops_alert_rules")
    op.drop_table("ops_monitor_lease")
    op.drop_table("ops_app_metric_reports")
    op.drop_index("ix_ops_metric_samples_timestamp_ms", "ops_metric_samples")
    op.drop_table("ops_metric_samples")
