"""Threshold alerts: rules per sensor, evaluated whenever readings arrive.

A rule fires when the sensor's latest reading is beyond the threshold and every reading
since the last one within bounds has been too, for at least `duration_seconds`. An alert
stays open (or acknowledged) until a reading within bounds resolves it automatically, or a
manager resolves it; the resolved alerts are the history."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from vpsapi.citypulse.metrics import ALERTS_OPENED
from vpsapi.citypulse.models import Alert, AlertRule, Reading
from vpsapi.citypulse.schemas import AlertRuleIn
from vpsapi.citypulse.service import get_sensor, sensor_not_found
from vpsapi.core.db import answer_if_deleted_meanwhile, is_deleted_meanwhile, utcnow
from vpsapi.core.errors import Conflict, NotFound

ACTIVE = ("open", "acknowledged")


async def create_rule(session: AsyncSession, data: AlertRuleIn) -> AlertRule:
    await get_sensor(session, data.sensor_id)
    rule = AlertRule(**data.model_dump())
    session.add(rule)
    with answer_if_deleted_meanwhile(sensor_not_found()):  # since the check above
        await session.flush()
    return rule


async def list_rules(session: AsyncSession, sensor_id: str | None) -> Sequence[AlertRule]:
    query = select(AlertRule).order_by(AlertRule.created_at, AlertRule.id)
    if sensor_id:
        query = query.where(AlertRule.sensor_id == sensor_id)
    return (await session.scalars(query)).all()


async def delete_rule(session: AsyncSession, rule_id: str) -> None:
    rule = await session.get(AlertRule, rule_id)
    if rule is None:
        raise NotFound("Alert rule not found")
    await session.delete(rule)


def _breaches(rule: AlertRule) -> ColumnElement[bool]:
    if rule.condition == "above":
        return Reading.value > rule.threshold
    return Reading.value < rule.threshold


async def evaluate_sensor(session: AsyncSession, sensor_id: str) -> list[Alert]:
    """Open or auto-resolve alerts of the sensor's rules; returns alerts whose state changed."""
    rules = await list_rules(session, sensor_id)
    if not rules:
        return []
    sensor = await get_sensor(session, sensor_id)
    latest = (
        await session.execute(
            select(Reading.ts_ms, Reading.value)
            .where(Reading.sensor_id == sensor_id)
            .order_by(Reading.ts_ms.desc())
            .limit(1)
        )
    ).first()
    if latest is None:
        return []
    latest_ts, latest_value = latest
    changed: list[Alert] = []
    for rule in rules:
        active = await session.scalar(
            select(Alert).where(Alert.rule_id == rule.id, Alert.status.in_(ACTIVE))
        )
        breaching = (
            latest_value > rule.threshold
            if rule.condition == "above"
            else latest_value < rule.threshold
        )
        if not breaching:
            if active is not None and await _applied(session, _auto_resolve, active):
                changed.append(active)
            continue
        if active is not None:
            continue
        last_ok = await session.scalar(
            select(func.max(Reading.ts_ms)).where(
                Reading.sensor_id == sensor_id,
                ~_breaches(rule),
            )
        )
        since = await session.scalar(
            select(func.min(Reading.ts_ms)).where(
                Reading.sensor_id == sensor_id,
                Reading.ts_ms > (last_ok if last_ok is not None else -1),
            )
        )
        if since is None or latest_ts - since < rule.duration_seconds * 1000:
            continue
        alert = Alert(
            rule_id=rule.id,
            sensor_id=sensor_id,
            building_id=sensor.building_id,
            status="open",
            severity=rule.severity,
            message=f"{rule.name}: {sensor.name} {rule.condition} {rule.threshold:g} {sensor.unit}",
            trigger_value=latest_value,
            opened_at=utcnow(),
        )
        if await _applied(session, session.add, alert):
            ALERTS_OPENED.labels(severity=rule.severity).inc()
            changed.append(alert)
    return changed


def _auto_resolve(alert: Alert) -> None:
    alert.status, alert.resolved_at, alert.resolved_by = "resolved", utcnow(), "system"


async def _applied(session: AsyncSession, change: Callable[[Alert], None], alert: Alert) -> bool:
    """Make one alert change (opened, resolved) in a savepoint of its own. False when the
    rule was deleted by a concurrent request since it was read, its alerts with it: that
    rule's change is dropped, the readings and the other rules' changes are kept."""
    try:
        async with session.begin_nested():
            change(alert)
    except (IntegrityError, StaleDataError) as exc:
        if not is_deleted_meanwhile(exc):
            raise
        return False
    return True


async def list_alerts(
    session: AsyncSession, *, status: str | None, building_id: str | None, limit: int
) -> Sequence[Alert]:
    query = select(Alert).order_by(Alert.opened_at.desc(), Alert.id).limit(limit)
    if status:
        query = query.where(Alert.status == status)
    if building_id:
        query = query.where(Alert.building_id == building_id)
    return (await session.scalars(query)).all()


async def get_alert(session: AsyncSession, alert_id: str) -> Alert:
    alert = await session.get(Alert, alert_id)
    if alert is None:
        raise NotFound("Alert not found")
    return alert


async def acknowledge(session: AsyncSession, alert_id: str, by: str) -> Alert:
    alert = await get_alert(session, alert_id)
    if alert.status != "open":
        raise Conflict(f"Alert is {alert.status}, only open alerts can be acknowledged")
    alert.status, alert.acknowledged_at, alert.acknowledged_by = "acknowledged", utcnow(), by
    await session.flush()
    return alert


async def resolve(session: AsyncSession, alert_id: str, by: str) -> Alert:
    alert = await get_alert(session, alert_id)
    if alert.status == "resolved":
        raise Conflict("Alert is already resolved")
    alert.status, alert.resolved_at, alert.resolved_by = "resolved", utcnow(), by
    await session.flush()
    return alert
