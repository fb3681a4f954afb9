"""Samples, history, alert rules and alerts: storage and evaluation, no HTTP."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.config import Settings
from vpsapi.core.db import utcnow
from vpsapi.core.errors import NotFound, Unprocessable
from vpsapi.core.security import Principal
from vpsapi.ops.audit.service import actor_name
from vpsapi.ops.monitoring.appmetrics import RequestCounts
from vpsapi.ops.monitoring.models import (
    METRICS,
    Alert,
    AlertRule,
    AppMetricReport,
    MetricSample,
)
from vpsapi.ops.monitoring.schemas import AlertOut, AlertRuleIn, AlertRuleOut, MetricsSnapshot

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
}
MAX_HISTORY_POINTS = 5000


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_epoch_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def snapshot(sample: MetricSample) -> MetricsSnapshot:
    return MetricsSnapshot(timestamp=from_epoch_ms(sample.timestamp_ms), **sample.values())


# ---- samples ---------------------------------------------------------------------------


async def store_sample(
    session: AsyncSession, values: dict[str, float | None], at: datetime
) -> MetricSample:
    sample = MetricSample(timestamp_ms=epoch_ms(at), **{n: values.get(n) for n in METRICS})
    session.add(sample)
    await session.flush()
    return sample


async def recent_samples(session: AsyncSession, limit: int) -> list[MetricSample]:
    query = select(MetricSample).order_by(MetricSample.timestamp_ms.desc()).limit(limit)
    return list(reversed((await session.execute(query)).scalars().all()))


async def purge_samples(session: AsyncSession, before: datetime) -> int:
    result = await session.execute(
        delete(MetricSample).where(MetricSample.timestamp_ms < epoch_ms(before))
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def history(
    session: AsyncSession, metric: str | None, start: datetime, end: datetime, step: int
) -> list[dict[str, Any]]:
    """Samples averaged per `step`-second bucket, in SQL; min and max too for one metric."""
    if end <= start:
        raise Unprocessable("`from` must be before `to`")
    if (end - start).total_seconds() / step > MAX_HISTORY_POINTS:
        raise Unprocessable(f"at most {MAX_HISTORY_POINTS} points: use a larger step")
    step_ms = step * 1000
    bucket = (MetricSample.timestamp_ms // step_ms * step_ms).label("bucket")
    names = [metric] if metric else list(METRICS)
    columns: list[Any] = [func.avg(getattr(MetricSample, name)).label(name) for name in names]
    if metric:
        column = getattr(MetricSample, metric)
        columns += [func.min(column).label("min"), func.max(column).label("max")]
    query = (
        select(bucket, func.count().label("samples"), *columns)
        .where(MetricSample.timestamp_ms >= epoch_ms(start))
        .where(MetricSample.timestamp_ms < epoch_ms(end))
        # By the label: PostgreSQL cannot match an expression with bound parameters.
        .group_by(literal_column("bucket"))
        .order_by(literal_column("bucket"))
    )
    points = []
    for row in (await session.execute(query)).mappings():
        point: dict[str, Any] = {
            "timestamp": from_epoch_ms(int(row["bucket"])),
            "samples": row["samples"],
        }
        for name in [*names, *(["min", "max"] if metric else [])]:
            value = row[name]
            point[name] = None if value is None else round(float(value), 3)
        points.append(point)
    return points


# ---- request figures reported by every server process ----------------------------------


async def add_report(
    session: AsyncSession, process: str, counts: RequestCounts, at: datetime
) -> None:
    session.add(
        AppMetricReport(
            process=process,
            reported_at_ms=epoch_ms(at),
            requests=counts.requests,
            errors=counts.errors,
            latency_buckets=counts.latency_buckets,
        )
    )


async def take_reports(session: AsyncSession, since: datetime) -> RequestCounts:
    """Sum and remove the reports; those older than `since` (a leader's absence) only go."""
    reports = (await session.execute(select(AppMetricReport))).scalars().all()
    total = RequestCounts()
    cutoff = epoch_ms(since)
    for report in reports:
        if report.reported_at_ms >= cutoff:
            total = total.plus(
                RequestCounts(report.requests, report.errors, list(report.latency_buckets))
            )
    if reports:
        newest = max(report.id for report in reports)
        await session.execute(delete(AppMetricReport).where(AppMetricReport.id <= newest))
    return total


# ---- alert rules ---------------------------------------------------------------------


def check_channels(settings: Settings, body: AlertRuleIn) -> None:
    if "email" in (body.channels or []) and not (
        body.notification_email or settings.alert_email_to
    ):
        raise Unprocessable("email channel: set notification_email (or ALERT_EMAIL_TO)")
    if "webhook" in (body.channels or []) and not (
        body.notification_webhook or settings.alert_webhook_url
    ):
        raise Unprocessable("webhook channel: set notification_webhook (or ALERT_WEBHOOK_URL)")


def rule_out(rule: AlertRule) -> dict[str, Any]:
    return AlertRuleOut.model_validate(rule).model_dump(mode="json")


async def list_rules(session: AsyncSession) -> list[AlertRule]:
    query = select(AlertRule).order_by(AlertRule.created_at, AlertRule.id)
    return list((await session.execute(query)).scalars().all())


async def get_rule(session: AsyncSession, rule_id: str) -> AlertRule:
    rule = await session.get(AlertRule, rule_id)
    if rule is None:
        raise NotFound("Alert rule not found")
    return rule


async def create_rule(
    session: AsyncSession, settings: Settings, principal: Principal, body: AlertRuleIn
) -> AlertRule:
    check_channels(settings, body)
    rule = AlertRule(**body.model_dump(), fired=False, created_by=actor_name(principal))
    session.add(rule)
    await session.flush()
    return rule


async def update_rule(
    session: AsyncSession, settings: Settings, rule_id: str, body: AlertRuleIn, actor: str
) -> AlertRule:
    """Replace the rule. The duration is counted afresh; an active alert stays until the new
    condition is false (then it resolves by itself), or at once when the rule is disabled."""
    check_channels(settings, body)
    rule = await get_rule(session, rule_id)
    for name, value in body.model_dump().items():
        setattr(rule, name, value)
    rule.pending_since = None
    if not rule.enabled:
        rule.fired = False
        await _resolve_rule_alerts(session, rule.id, actor)
    await session.flush()
    return rule


async def delete_rule(session: AsyncSession, rule_id: str, actor: str) -> AlertRule:
    rule = await get_rule(session, rule_id)
    await _resolve_rule_alerts(session, rule.id, actor)
    await session.delete(rule)
    await session.flush()
    return rule


# ---- alerts --------------------------------------------------------------------------


def alert_out(alert: Alert) -> dict[str, Any]:
    return AlertOut.model_validate(alert).model_dump(mode="json")


async def list_alerts(session: AsyncSession, status: str | None, limit: int) -> list[Alert]:
    query = select(Alert).order_by(Alert.timestamp.desc(), Alert.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Alert.status == status)
    return list((await session.execute(query)).scalars().all())


async def resolve_alert(session: AsyncSession, alert_id: str, actor: str) -> Alert:
    """Resolve by hand. The rule does not fire again until its condition has cleared."""
    alert = await session.get(Alert, alert_id)
    if alert is None:
        raise NotFound("Alert not found")
    if alert.status == "active":
        alert.status, alert.resolved_at, alert.resolved_by = "resolved", utcnow(), actor
        await session.flush()
    return alert


async def _resolve_rule_alerts(session: AsyncSession, rule_id: str, actor: str) -> list[Alert]:
    query = select(Alert).where(Alert.rule_id == rule_id, Alert.status == "active")
    alerts = list((await session.execute(query)).scalars().all())
    now = utcnow()
    for alert in alerts:
        alert.status, alert.resolved_at, alert.resolved_by = "resolved", now, actor
    return alerts


@dataclass(frozen=True)
class AlertNotice:
    """An alert that fired or resolved by itself, with where to tell about it."""

    event: str  # "fired" | "resolved"
    alert: dict[str, Any]
    channels: list[str]
    emails: list[str]
    webhook: str | None


def _notice(event: str, alert: Alert, rule: AlertRule, settings: Settings) -> AlertNotice:
    emails = (
        [a.strip() for a in rule.notification_email.split(",")]
        if rule.notification_email
        else list(settings.alert_email_to)
    )
    return AlertNotice(
        event=event,
        alert=alert_out(alert),
        channels=list(rule.channels),
        emails=emails,
        webhook=rule.notification_webhook or settings.alert_webhook_url or None,
    )


async def evaluate_rules(
    session: AsyncSession, settings: Settings, values: dict[str, float | None], now: datetime
) -> list[AlertNotice]:
    """Apply one sample to every enabled rule: fire once the condition has held for the
    rule's duration, resolve when it clears. A metric without a value changes nothing."""
    notices: list[AlertNotice] = []
    rules = (await session.execute(select(AlertRule).where(AlertRule.enabled))).scalars()
    for rule in rules:
        value = values.get(rule.metric)
        if value is None:
            continue
        if OPERATORS[rule.operator](value, rule.threshold):
            if rule.pending_since is None:
                rule.pending_since = now
            held = (now - rule.pending_since).total_seconds()
            if not rule.fired and held >= rule.duration:
                rule.fired = True
                alert = Alert(
                    rule_id=rule.id,
                    rule_name=rule.name,
                    timestamp=now,
                    metric=rule.metric,
                    operator=rule.operator,
                    value=value,
                    threshold=rule.threshold,
                    severity=rule.severity,
                    status="active",
                    message=(
                        f"{rule.name}: {rule.metric} is {value:g} "
                        f"({rule.operator} {rule.threshold:g} for {rule.duration}s)"
                    ),
                )
                session.add(alert)
                await session.flush()
                notices.append(_notice("fired", alert, rule, settings))
        elif rule.pending_since is not None or rule.fired:
            rule.pending_since, rule.fired = None, False
            for alert in await _resolve_rule_alerts(session, rule.id, "auto"):
                notices.append(_notice("resolved", alert, rule, settings))
    return notices
