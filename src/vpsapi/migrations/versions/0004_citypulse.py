"""citypulse: buildings, sensors, readings

Revision ID: 0004_citypulse
Revises: 0001_core
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from vpsapi.core.db import UTCDateTime

revision: str = "0004_citypulse"
down_revision: str | Sequence[str] | None = "0001_core"
branch_labels: str | Sequence[str] | None = ("citypulse",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "citypulse_buildings",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("address", sa.String(500), nullable=True),
        sa.Column("city", sa.String(120), nullable=True),
        sa.Column("building_type", sa.String(60), nullable=True),
        sa.Column("floor_area_m2", sa.Float(), nullable=True),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_citypulse_buildings_name", "citypulse_buildings", ["name"])
    op.create_index("ix_citypulse_buildings_city", "citypulse_buildings", ["city"])
    op.create_table(
        "citypulse_sensors",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "building_id",
            sa.String(32),
            sa.ForeignKey(
                "citypulse_buildings.id",
                ondelete="CASCADE",
                name="fk_citypulse_sensors_building_id_citypulse_buildings",
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("unit", sa.String(20), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_citypulse_sensors_building_id", "citypulse_sensors", ["building_id"])
    op.create_table(
        "citypulse_readings",
        sa.Column(
            "sensor_id",
            sa.String(32),
            sa.ForeignKey(
                "citypulse_sensors.id",
                ondelete="CASCADE",
                name="fk_citypulse_readings_sensor_id_citypulse_sensors",
            ),
            primary_key=True,
        ),
        sa.Column("ts_ms", sa.BigInteger(), primary_key=True),
        sa.Column("value", sa.Float(), nullable=False),
    )
    # The primary key (sensor_id, ts_ms) serves per-sensor range scans; on PostgreSQL a
    # BRIN index on time keeps cross-sensor time scans cheap on append-mostly data.
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_citypulse_readings_ts", "citypulse_readings", ["ts_ms"], postgresql_using="brin"
        )
    else:
        op.create_index("ix_citypulse_readings_ts", "citypulse_readings", ["ts_ms"])
    op.create_table(
        "citypulse_alert_rules",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "sensor_id",
            sa.String(32),
            sa.ForeignKey(
                "citypulse_sensors.id",
                ondelete="CASCADE",
                name="fk_citypulse_alert_rules_sensor_id_citypulse_sensors",
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("condition", sa.String(10), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("duration_seconds", sa.BigInteger(), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_citypulse_alert_rules_sensor_id", "citypulse_alert_rules", ["sensor_id"])
    op.create_table(
        "citypulse_alerts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "rule_id",
            sa.String(32),
            sa.ForeignKey(
                "citypulse_alert_rules.id",
                ondelete="CASCADE",
                name="fk_citypulse_alerts_rule_id_citypulse_alert_rules",
            ),
            nullable=False,
        ),
        sa.Column("sensor_id", sa.String(32), nullable=False),
        sa.Column("building_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("message", sa.String(500), nullable=False),
        sa.Column("trigger_value", sa.Float(), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("acknowledged_at", UTCDateTime(), nullable=True),
        sa.Column("acknowledged_by", sa.String(80), nullable=True),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("resolved_by", sa.String(80), nullable=True),
    )
    op.create_index("ix_citypulse_alerts_rule_id", "citypulse_alerts", ["rule_id"])
    op.create_index("ix_citypulse_alerts_building_id", "citypulse_alerts", ["building_id"])
    op.create_index("ix_citypulse_alerts_status", "citypulse_alerts", ["status"])


def downgrade() -> None:
    op.drop_table("citypulse_alerts")
    op.drop_table("citypulse_alert_rules")
    op.drop_table("citypulse_readings")
    op.drop_table("citypulse_sensors")
    op.drop_table("citypulse_buildings")
