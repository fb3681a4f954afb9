"""CityPulse tables: buildings, their sensors, and a compact readings table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from vpsapi.core.db import Base, IdMixin, TimestampMixin, UTCDateTime


class Building(IdMixin, TimestampMixin, Base):
    __tablename__ = "citypulse_buildings"

    name: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    address: Mapped[str | None] = mapped_column(String(500))
    city: Mapped[str | None] = mapped_column(String(120), index=True)
    building_type: Mapped[str | None] = mapped_column(String(60))
    floor_area_m2: Mapped[float | None] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(80), nullable=False)


class Sensor(IdMixin, TimestampMixin, Base):
    __tablename__ = "citypulse_sensors"

    building_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("citypulse_buildings.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    unit: Mapped[str] = mapped_column(String(20), nullable=False)


class Reading(Base):
    """One value per sensor and millisecond: epoch-ms integers keep rows small and make
    time bucketing plain integer arithmetic on every engine."""

    __tablename__ = "citypulse_readings"

    sensor_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("citypulse_sensors.id", ondelete="CASCADE"), primary_key=True
    )
    ts_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    value: Mapped[float] = mapped_column(Float, nullable=False)

    __table_args__ = (Index("ix_citypulse_readings_ts", "ts_ms"),)


class AlertRule(IdMixin, TimestampMixin, Base):
    """Opens an alert when a sensor's readings stay beyond `threshold` for `duration_seconds`."""

    __tablename__ = "citypulse_alert_rules"

    sensor_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("citypulse_sensors.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    condition: Mapped[str] = mapped_column(String(10), nullable=False)  # "above" | "below"
    threshold: Mapped[float] = mapped_column(Float, nullable=False)
    duration_seconds: Mapped[int] = mapped_column(BigInteger, nullable=False)
    severity: Mapped[str] = mapped_column(String(10), nullable=False)


class Alert(IdMixin, Base):
    __tablename__ = "citypulse_alerts"

    rule_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("citypulse_alert_rules.id", ondelete="CASCADE"), index=True
    )
    sensor_id: Mapped[str] = mapped_column(String(32), nullable=False)
    building_id: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    severity: Mapped[str] = mapped_column(String(10), nullable=False)
    message: Mapped[str] = mapped_column(String(500), nullable=False)
    trigger_value: Mapped[float] = mapped_column(Float, nullable=False)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(80))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[str | None] = mapped_column(String(80))
