"""Metric samples, alert rules and alerts; plus the sampler's lease and per-process reports."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from vpsapi.core.db import Base, IdMixin, TimestampMixin, UTCDateTime, utcnow

# Autoincrementing 64-bit keys on PostgreSQL; SQLite only autoincrements INTEGER keys.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# The figures every sample records, in order: the columns of MetricSample, the metrics an
# alert rule may watch and the names `/metrics/history?metric=` accepts.
METRICS = (
    "cpu_usage",  # percent of all CPUs
    "memory_usage",  # percent of RAM in use
    "disk_usage",  # percent of the root filesystem in use
    "load_average",  # 1-minute load average
    "network_in",  # bytes/s received on all interfaces
    "network_out",  # bytes/s sent on all interfaces
    "nginx_connections",  # active connections (stub_status; NGINX_STATUS_URL)
    "nginx_requests_per_second",  # (stub_status)
    "requests_per_second",  # this service's HTTP requests, all processes
    "error_rate",  # percent of this service's responses that were 5xx
    "response_time_p95",  # this service's 95th percentile latency, milliseconds
)


class MetricSample(Base):
    """One sample of every metric; `timestamp_ms` (epoch ms) makes SQL downsampling portable."""

    __tablename__ = "ops_metric_samples"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    timestamp_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    cpu_usage: Mapped[float | None] = mapped_column(Float)
    memory_usage: Mapped[float | None] = mapped_column(Float)
    disk_usage: Mapped[float | None] = mapped_column(Float)
    load_average: Mapped[float | None] = mapped_column(Float)
    network_in: Mapped[float | None] = mapped_column(Float)
    network_out: Mapped[float | None] = mapped_column(Float)
    nginx_connections: Mapped[float | None] = mapped_column(Float)
    nginx_requests_per_second: Mapped[float | None] = mapped_column(Float)
    requests_per_second: Mapped[float | None] = mapped_column(Float)
    error_rate: Mapped[float | None] = mapped_column(Float)
    response_time_p95: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_ops_metric_samples_timestamp_ms", "timestamp_ms"),)

    def values(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in METRICS}


class AppMetricReport(Base):
    """A server process's request counts since its previous report; the sampler sums them."""

    __tablename__ = "ops_app_metric_reports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    process: Mapped[str] = mapped_column(String(64), nullable=False)
    reported_at_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    requests: Mapped[int] = mapped_column(Integer, nullable=False)
    errors: Mapped[int] = mapped_column(Integer, nullable=False)
    # Cumulative latency histogram counts per bucket bound (vpsapi.core.metrics.LATENCY).
    latency_buckets: Mapped[list[int]] = mapped_column(JSON, nullable=False)


class MonitorLease(Base):
    """Which process samples: the holder renews `expires_at` on every sample."""

    __tablename__ = "ops_monitor_lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class AlertRule(IdMixin, TimestampMixin, Base):
    __tablename__ = "ops_alert_rules"

    name: Mapped[str] = mapped_column(String(100), nullable=False)
    metric: Mapped[str] = mapped_column(String(40), nullable=False)
    operator: Mapped[str] = mapped_column(String(2), nullable=False)
    threshold: Mapped[float] = mapped_column(Float, nullable=False)
    duration: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # seconds
    severity: Mapped[str] = mapped_column(String(16), nullable=False, default="warning")
    channels: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # Per-rule recipients; empty: ALERT_EMAIL_TO / ALERT_WEBHOOK_URL.
    notification_email: Mapped[str | None] = mapped_column(String(1000))
    notification_webhook: Mapped[str | None] = mapped_column(String(2000))
    # Evaluation state: since when the condition holds, and whether this episode has fired.
    pending_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    fired: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_by: Mapped[str | None] = mapped_column(String(255))


class Alert(IdMixin, Base):
    __tablename__ = "ops_alerts"

    rule_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("ops_alert_rules.id", ondelete="SET NULL")
    )
    rule_name: Mapped[str] = mapped_column(String(100), nullable=False)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    metric: Mapped[str] = mapped_column(String(40), nullable=False)
    operator: Mapped[str] = mapped_column(String(2), nullable=False)
    value: Mapped[float] = mapped_column(Float, nullable=False)
    threshold: Mapped[float] = mapped_column(Float, nullable=False)
    severity: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    message: Mapped[str] = mapped_column(String(500), nullable=False)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # "auto" when the condition cleared, else who resolved it.
    resolved_by: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        Index("ix_ops_alerts_status_timestamp", "status", "timestamp"),
        Index("ix_ops_alerts_rule_id", "rule_id"),
    )
