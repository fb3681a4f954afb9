from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from vpsapi.core.schemas import JsonBool, NumberNotBool
from vpsapi.ops.monitoring.models import METRICS

# Names the original frontend used for some metrics.
METRIC_ALIASES = {
    "cpu": "cpu_usage",
    "memory": "memory_usage",
    "disk": "disk_usage",
    "load": "load_average",
    "response_time": "response_time_p95",
}

# The words clients also send (`gt`, as query languages and rule engines spell them).
OPERATOR_WORDS = {
    "gt": ">",
    "gte": ">=",
    "ge": ">=",
    "lt": "<",
    "lte": "<=",
    "le": "<=",
    "eq": "==",
}


def _operator_symbol(value: Any) -> Any:
    return OPERATOR_WORDS.get(value.lower(), value) if isinstance(value, str) else value


Operator = Annotated[Literal[">", ">=", "<", "<=", "=="], BeforeValidator(_operator_symbol)]
Severity = Literal["info", "warning", "critical"]
Channel = Literal["email", "webhook"]


def canonical_metric(value: str) -> str:
    name = METRIC_ALIASES.get(value, value)
    if name not in METRICS:
        raise ValueError(f"unknown metric; one of: {', '.join(METRICS)}")
    return name


class MetricsSnapshot(BaseModel):
    """One sample; a figure is null when it could not be measured (e.g. nginx without
    NGINX_STATUS_URL, network rates on the first sample)."""

    timestamp: datetime
    cpu_usage: float | None = None
    memory_usage: float | None = None
    disk_usage: float | None = None
    load_average: float | None = None
    network_in: float | None = Field(default=None, description="bytes/s")
    network_out: float | None = Field(default=None, description="bytes/s")
    nginx_connections: float | None = None
    nginx_requests_per_second: float | None = None
    requests_per_second: float | None = None
    error_rate: float | None = Field(default=None, description="percent of responses 5xx")
    response_time_p95: float | None = Field(default=None, description="milliseconds")


class AlertRuleIn(BaseModel):
    """The original's AlertRule fields plus severity and channels. `id` in the body is
    ignored (the server assigns it)."""

    model_config = ConfigDict(extra="ignore")

    name: Annotated[str, Field(min_length=1, max_length=100)]
    metric: str = Field(description=f"one of {', '.join(METRICS)} (aliases: cpu, memory, ...)")
    operator: Operator
    threshold: NumberNotBool[float]
    duration: NumberNotBool[Annotated[int, Field(ge=0, le=7 * 86400, description="seconds")]] = 0
    severity: Severity = "warning"
    channels: list[Channel] | None = Field(
        default=None, description="default: the channels whose notification_* is set"
    )
    enabled: JsonBool = True
    notification_email: str | None = Field(
        default=None, max_length=1000, description="comma-separated; default ALERT_EMAIL_TO"
    )
    notification_webhook: str | None = Field(
        default=None, max_length=2000, description="http(s) URL; default ALERT_WEBHOOK_URL"
    )

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        return canonical_metric(value)

    @field_validator("threshold")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("threshold must be a finite number")
        return value

    @field_validator("notification_email")
    @classmethod
    def _emails(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        addresses = [part.strip() for part in value.split(",") if part.strip()]
        try:
            return ", ".join(
                validate_email(a, check_deliverability=False).normalized for a in addresses
            )
        except EmailNotValidError as exc:
            raise ValueError(f"invalid email address: {exc}") from exc

    @field_validator("notification_webhook")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("webhook must be an http:// or https:// URL")
        return value.strip()

    @model_validator(mode="after")
    def _channels(self) -> AlertRuleIn:
        if self.channels is None:
            inferred: list[Channel] = []
            if self.notification_email:
                inferred.append("email")
            if self.notification_webhook:
                inferred.append("webhook")
            self.channels = inferred
        self.channels = list(dict.fromkeys(self.channels))
        return self


class AlertRuleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    metric: str
    operator: str
    threshold: float
    duration: int
    severity: str
    channels: list[str]
    enabled: bool
    notification_email: str | None
    notification_webhook: str | None
    pending_since: datetime | None = Field(description="since when the condition holds")
    fired: bool = Field(description="an alert fired for the current episode")
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class AlertRuleSaved(BaseModel):
    message: str
    rule: AlertRuleOut


class AlertRuleList(BaseModel):
    rules: list[AlertRuleOut]


class AlertOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    rule_id: str | None
    rule_name: str
    timestamp: datetime = Field(description="when it fired")
    metric: str
    operator: str
    value: float
    threshold: float
    severity: str
    status: Literal["active", "resolved"]
    message: str
    resolved_at: datetime | None
    resolved_by: str | None = Field(description='"auto" when the condition cleared')


class AlertList(BaseModel):
    alerts: list[AlertOut]


class Message(BaseModel):
    message: str


class CurrentMetrics(BaseModel):
    current: MetricsSnapshot | None
    history: list[MetricsSnapshot] = Field(description="the latest samples, oldest first")
    alerts: list[AlertOut] = Field(description="active alerts")


class MetricsHistory(BaseModel):
    metric: str | None
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    step: int = Field(description="bucket width in seconds")
    metrics: list[dict[str, Any]] = Field(
        description="per bucket: timestamp, samples and the average of each metric; "
        "with `metric=`, also min and max"
    )


class MonitoringMessage(BaseModel):
    """What `WS /ws/monitoring` sends per sample."""

    type: Literal["metrics"] = "metrics"
    system: MetricsSnapshot
    alerts: list[AlertOut]
    timestamp: datetime
